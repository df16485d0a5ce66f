"""Linear layers, y = x W^T + b, multiplied through oneDNN with prepacked weights while decoding on a CPU.

Training, GPUs and CPUs without oneDNN use ``F.linear`` (MKL's sgemm on an x86 CPU). While the weights
are fixed for a decoding call (inside :func:`fixed_weights`, which ``Translator`` enters), every linear
layer of every model on an x86 CPU runs ``torch.ops.mkldnn._linear_pointwise`` (the kernel PyTorch's
compiler uses for frozen CPU graphs) on a copy of its weight reordered once per call into oneDNN's
blocked layout, and a ReLU that follows runs inside the same kernel (the Transformer's feed-forward).

Why: at decoding sizes MKL's sgemm falls well short of what the CPU does. Multi30k Transformer shapes,
2 threads of an AMD EPYC (Zen 4), GFLOP/s of F.linear vs the prepacked oneDNN kernel: output projection
(160 rows x 256 x 8000) 157 vs 226 (AVX2 kernels: 128 vs 201), feed-forward (160 x 256 x 1024) 183 vs 217
(136 vs 199), linear + ReLU (160 x 256 x 8000) 95 vs 224; 2048^3: 197 vs 224. oneDNN's rows also do
not depend on how many rows share the product, as MKL's do at a few rows.

The packed copies are dropped when the outermost block ends. A cache that outlived the call and watched
the weight's version counter decoded stale weights: the trainer's fused Adam updates parameters in place
without bumping that counter, so every validation after the first decoded (and scored) the first one's
weights. Models that nothing trains (a ``Translator`` loaded from a checkpoint) are marked with
:func:`keep_packed` and keep their copies across calls: packing a Multi30k Transformer's weights takes
~16 ms, as long as decoding one short sentence, which is what a server or an interactive user asks for.

Optionally (:func:`quantize_int8`, a Translator's ``quantization=int8``) a model's linear layers decode
in int8 on a CPU: ``torch._int_mm`` multiplies 300 x 256 by 256 x 8000 in 3.0 ms where the packed fp32
kernel takes 12.3 ms (one thread, AMD Zen 4); with the quantizing and rescaling around it, 1.65x (output
projection) to 2.7x (feed-forward) per product.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from nmt.models import int8_kernels

# oneDNN's prepacked linear kernel (measured on x86 CPUs only; ARM builds route oneDNN through other kernels)
ONEDNN = (
    torch.backends.mkldnn.is_available()
    and platform.machine().lower() in ("x86_64", "amd64")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
)
# its int8 kernel with prepacked weights (per-channel weight scales fused; x86 CPUs, as above)
ONEDNN_INT8 = ONEDNN and hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(torch.ops.onednn, "qlinear_prepack")
PACK_ROWS = 256  # the row count oneDNN's weight layout is chosen for (a decoding step's rows; any count works)

# weight -> ((version, data pointer) it was packed at, its oneDNN copy)
_PACKED = WeakIdKeyDictionary()
_KEPT = WeakIdKeyDictionary()  # the same for the weights of keep_packed models (None until first packed)
# Weights use 7 bits (-63..63): without VNNI (AVX2, AVX-512 before Cascade Lake) oneDNN's int8 kernels
# add pairs of products in 16 bits, which saturate at full 8-bit weights (torch._int_mm then differs
# from the exact product by up to 1e5); at 63 they cannot, so every x86 CPU computes the same integers.
WEIGHT_LEVELS = 63
# weight of an int8 model (quantize_int8) -> None, or ((version, data pointer), (int8 (in, out), (out,) scales))
_INT8 = WeakIdKeyDictionary()
_INT8_PACKED = WeakIdKeyDictionary()  # the same weights' oneDNN int8 copies, for the products below
# Products with at least this many outputs (rows x out) take oneDNN's int8 kernel. Measured on an Intel
# Xeon with AMX, 2 threads, ms of torch._int_mm + scaling vs oneDNN: 300 x 256 x 8000 3.62 vs 1.39, 128 x
# 256 x 1024 0.25 vs 0.21, 300 x 256 x 256 0.13 vs 0.17; and one row x 8000: 0.17 vs 29 (not chosen here).
FUSED_INT8_OUTPUTS = 1 << 17
_open_blocks = 0  # fixed_weights blocks entered and not yet left, in any thread
_blocks_lock = threading.Lock()


@contextmanager
def fixed_weights() -> Iterator[None]:
    """A block in which no weight changes (one decoding call, and the threads it starts): linear layers on
    a CPU may multiply by cached packed copies of their weights, dropped when the outermost block ends."""
    global _open_blocks
    with _blocks_lock:
        _open_blocks += 1
    try:
        yield
    finally:
        with _blocks_lock:
            _open_blocks -= 1
            if _open_blocks == 0:
                _PACKED.clear()


def keep_packed(model: nn.Module) -> None:
    """Let the packed copies of ``model``'s weights outlive the decoding call that made them.

    Only for a model that is never trained, whose weights change only through ``load_state_dict`` or
    ``.to()``: those bump the version counter or move the data, and a changed weight is packed again.
    """
    for weight in model.parameters():
        _KEPT[weight] = _KEPT.get(weight)


def _cached(cache: WeakIdKeyDictionary, weight: Tensor, make: Callable[[Tensor], Any]) -> Any:
    """``make(weight)`` made once per version of the weight (version counter and data pointer), in ``cache``."""
    key = (weight._version, weight.data_ptr())
    cached = cache.get(weight)
    if cached is None or cached[0] != key:
        cached = (key, make(weight.detach()))
        cache[weight] = cached
    return cached[1]


def _packed(weight: Tensor) -> Tensor:
    """``weight`` (out, in) in oneDNN's blocked layout."""
    cache = _KEPT if weight in _KEPT else _PACKED
    return _cached(cache, weight, lambda w: torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS))


def quantize_int8(model: nn.Module) -> None:
    """Decode ``model``'s linear layers in int8 on a CPU from now on (a model that is never trained).

    Dynamic quantization, as CTranslate2's int8: each weight row (output channel) and, at every product,
    each input row get their own scale (absolute maximum / 127); the int8 product accumulates exactly in
    int32 (``torch._int_mm``) and is scaled back to fp32. Per-row input scales keep a row's result
    independent of the rows beside it. The embeddings and everything else stay fp32.
    """
    for weight in model.parameters():
        if weight.dim() == 2:
            _INT8[weight] = _INT8.get(weight)


def _quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``weight`` (out, in) as 7-bit integers in int8 (in, out) and its (out,) fp32 scales."""
    w8, scale = int8_kernels.quantize_rows(weight, WEIGHT_LEVELS)
    return w8.t().contiguous(), scale.view(-1)


def _int8_linear(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    """:func:`linear` with int8 operands: x (..., in) quantized per row, the weight per output row.

    Large products (the vocabulary projection) run oneDNN's int8 kernel on a packed copy of the weight,
    which applies the weight's scales in the same pass; the others ``torch._int_mm``, then the scales.
    Both give the same exact integers, scaled in the same order, so a row's result does not depend on
    which kernel its batch took. The input's scale is per row, which oneDNN's kernel does not take.
    """
    w8, w_scale = _cached(_INT8, weight, _quantize_weight)  # (in, out), (out,)
    x8, x_scale = int8_kernels.quantize_rows(x.reshape(-1, x.size(-1)))  # (N, in), (N, 1)
    if ONEDNN_INT8 and x8.size(0) * w8.size(1) >= FUSED_INT8_OUTPUTS:
        packed, zero_points = _cached(_INT8_PACKED, weight, lambda _: _pack_int8(w8))
        y = torch.ops.onednn.qlinear_pointwise(
            x8, 1.0, 0, packed, w_scale, zero_points, None, 1.0, 0, torch.float32, "none", [], ""
        )  # (N, out): the int32 products times the weight scales
        y = int8_kernels.rescale_rows(y, x_scale, bias, relu)
    else:
        y = int8_kernels.rescale_int32(torch._int_mm(x8, w8), w_scale, x_scale, bias, relu)
    return y.view(*x.shape[:-1], y.size(-1))


def _pack_int8(w8: Tensor) -> tuple[Tensor, Tensor]:
    """int8 weights (in, out) in oneDNN's packed layout, and the (out,) zero points its kernel asks for."""
    return torch.ops.onednn.qlinear_prepack(w8.t().contiguous(), None), torch.zeros(w8.size(1), dtype=torch.long)


def _fixed(x: Tensor, weight: Tensor) -> bool:
    """Whether this product may use a cached form of its weight: fixed fp32 weights on a CPU, nothing
    needing gradients and no autocast (which would compute it in another dtype)."""
    return (
        _open_blocks > 0
        and weight.device.type == "cpu"
        and weight._base is None  # a view (a slice of a weight) is made anew each call: nothing to cache
        and weight.dtype == x.dtype == torch.float32
        and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
        and not torch.is_autocast_enabled("cpu")
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """x: (..., in); weight: (out, in); bias: (out,) or None. Returns (..., out), through a ReLU if ``relu``."""
    if _fixed(x, weight):
        if weight in _INT8:
            return _int8_linear(x, weight, bias, relu)
        if ONEDNN:
            return torch.ops.mkldnn._linear_pointwise(x, _packed(weight), bias, "relu" if relu else "none", [], "")
    y = F.linear(x, weight, bias)
    return F.relu(y) if relu else y


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict) that decodes through :func:`linear`."""

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        return linear(x, self.weight, self.bias, relu)
