"""Per-row int8 quantization of a product's input and rescaling of its output, one pass each.

Why: eager PyTorch quantizes an input row by row in five memory-bound passes (abs, amax, div, round, cast)
and scales the int32 product back in four or five (cast, weight scales, input scales, bias, ReLU), each
with its own dispatch cost: ~30% of int8 greedy decoding time, more than the int8 products themselves.
``int8_kernels.c`` does each in one pass. It is compiled on first use with the system's C compiler
(``$CC`` or ``cc``, ~0.3 s, no PyTorch headers) into ``$XDG_CACHE_HOME/nmt`` (default ``~/.cache/nmt``)
under a hash of its source and flags, and called through ctypes, which releases the GIL, so decoding
threads run side by side. With no compiler, a failed build, or ``NMT_NATIVE_KERNELS=0``, the same
operations run eagerly; both paths make the same IEEE operations in the same order (the C file is built
without fused multiply-adds), so results are bit-identical either way, on every CPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int8_kernels.c")
FLAGS = ["-O3", "-ffp-contract=off", "-fPIC", "-shared"]
_TINY = torch.finfo(torch.float32).tiny
_lock = threading.Lock()
_loaded: list[ctypes.CDLL | None] = []  # empty until the first call tried to load the library


def _build(cc: str) -> Path:
    """The compiled library, built now unless the cache already holds this source's build."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, cc.encode(), platform.machine().encode(), *map(str.encode, FLAGS)]))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nmt"
    library = cache / f"int8_kernels-{key.hexdigest()[:16]}.so"
    if not library.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # built aside, then renamed: processes may race
            built = Path(tmp) / library.name
            subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(built)], check=True, capture_output=True, timeout=120)
            os.replace(built, library)
    return library


def library() -> ctypes.CDLL | None:
    """The C kernels, or None where they cannot be built (the eager operations are used then)."""
    if not _loaded:  # every product asks: the lock only guards the first load
        with _lock:
            if not _loaded:
                _loaded.append(_load())
    return _loaded[0]


def _load() -> ctypes.CDLL | None:
    if os.environ.get("NMT_NATIVE_KERNELS", "1") == "0":
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log.warning("no C compiler (cc or $CC): int8 decoding quantizes with eager PyTorch ops (slower)")
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        log.warning(
            "building %s failed (%s%s): int8 decoding quantizes with eager PyTorch ops (slower)",
            SOURCE.name,
            err,
            ": " + detail.decode(errors="replace")[-500:] if detail else "",
        )
        return None
    p, n = ctypes.c_void_p, ctypes.c_int64
    lib.nmt_quantize_rows.argtypes = [p, n, n, ctypes.c_float, p, p]
    lib.nmt_rescale_int32.argtypes = [p, n, n, p, p, p, ctypes.c_int, p]
    lib.nmt_rescale_rows.argtypes = [p, n, n, p, p, ctypes.c_int]
    for function in (lib.nmt_quantize_rows, lib.nmt_rescale_int32, lib.nmt_rescale_rows):
        function.restype = None
    return lib


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def quantize_rows(x: Tensor, levels: int = 127) -> tuple[Tensor, Tensor]:
    """x: (N, in) fp32 (a product's input, or a weight). Returns (N, in) int8 round(x / scale) and the
    (N, 1) scales max|row| / levels (levels <= 127)."""
    lib = library()
    if lib is None:
        scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=_TINY).div_(levels)
        return x.div(scale).round_().to(torch.int8), scale
    x = x.contiguous()
    q = torch.empty(x.shape, dtype=torch.int8)
    scale = torch.empty(x.size(0), 1)
    lib.nmt_quantize_rows(x.data_ptr(), x.size(0), x.size(1), levels, q.data_ptr(), scale.data_ptr())
    return q, scale


def rescale_int32(acc: Tensor, w_scale: Tensor, x_scale: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    """acc: (N, out) int32 product; w_scale: (out,); x_scale: (N, 1); bias: (out,) or None.
    Returns (N, out) fp32 acc * w_scale * x_scale + bias, through a ReLU if ``relu``."""
    lib = library()
    if lib is None:
        return _finish(acc.float().mul_(w_scale), x_scale, bias, relu)
    acc = acc.contiguous()  # the C loop walks rows by pointer (torch._int_mm's output already is)
    y = torch.empty(acc.shape)
    lib.nmt_rescale_int32(
        acc.data_ptr(),
        acc.size(0),
        acc.size(1),
        w_scale.data_ptr(),
        x_scale.data_ptr(),
        _pointer(bias),
        relu,
        y.data_ptr(),
    )
    return y


def rescale_rows(y: Tensor, x_scale: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    """y: (N, out) fp32 product with the weight scales applied, rescaled in place: y * x_scale + bias
    (then ReLU). Returns y."""
    lib = library()
    if lib is None or not y.is_contiguous():
        return _finish(y, x_scale, bias, relu)
    lib.nmt_rescale_rows(y.data_ptr(), y.size(0), y.size(1), x_scale.data_ptr(), _pointer(bias), relu)
    return y


def _finish(y: Tensor, x_scale: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    """The eager rescaling's common tail, in place on y: times the input scales, plus bias, ReLU."""
    y.mul_(x_scale)
    if bias is not None:
        y.add_(bias)
    return y.relu_() if relu else y
