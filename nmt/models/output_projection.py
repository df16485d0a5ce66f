"""The vocabulary projection logits = x W^T + b, with a faster layout when nothing needs gradients.

A (V, d) weight (``nn.Linear``'s layout, and the embedding matrix a tied output uses) multiplies as a
transposed operand. On a CPU, MKL ran that product 35-40% slower than the same product with a contiguous
(d, V) copy of the weight at decoding sizes (85-146 rows x 256 x 8000: 64-76 vs 87-106 GFLOP/s, 2
threads, AVX2; ``scripts/benchmark.py`` has the end-to-end effect). The projection is the largest product
of every decoding step, so search and evaluation on a CPU read a cached transposed copy; training keeps
``F.linear``, whose backward needs the weight as it is, and so does a GPU (measured only on CPUs).

The copy is used only inside :func:`fixed_weights` (``Translator`` enters it for each decoding call) and
dropped when the outermost such block ends. A cache that outlived the call and watched the weight's
version counter decoded stale weights: the trainer's fused Adam updates parameters in place without
bumping that counter, so every validation after the first decoded (and scored) the first one's output
layer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

# weight -> ((version, data pointer) it was copied at, its contiguous (d, V) transpose)
_TRANSPOSED = WeakIdKeyDictionary()
_open_blocks = 0  # fixed_weights blocks entered and not yet left, in any thread
_blocks_lock = threading.Lock()


@contextmanager
def fixed_weights() -> Iterator[None]:
    """A block in which no weight changes (one decoding call, and the threads it starts): the output
    projection may multiply by a cached transposed copy, which is dropped when the outermost block ends."""
    global _open_blocks
    with _blocks_lock:
        _open_blocks += 1
    try:
        yield
    finally:
        with _blocks_lock:
            _open_blocks -= 1
            if _open_blocks == 0:
                _TRANSPOSED.clear()


def _transposed(weight: Tensor) -> Tensor:
    """A contiguous (d, V) copy of ``weight`` (V, d), made once per version of the weight."""
    key = (weight._version, weight.data_ptr())
    cached = _TRANSPOSED.get(weight)
    if cached is None or cached[0] != key:
        cached = (key, weight.detach().t().contiguous())
        _TRANSPOSED[weight] = cached
    return cached[1]


def vocab_logits(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x: (..., d); weight: (V, d); bias: (V,) or None. Returns logits (..., V)."""
    if weight.device.type != "cpu" or not _open_blocks or (torch.is_grad_enabled() and weight.requires_grad):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.size(-1))  # (N, d)
    w_t = _transposed(weight)  # (d, V)
    logits = rows @ w_t if bias is None else torch.addmm(bias, rows, w_t)
    return logits.view(*x.shape[:-1], w_t.size(1))
