"""Inverted dropout with a cheaper mask on CPU.

Same semantics as ``torch.nn.functional.dropout``. On CPU PyTorch draws the mask with ``bernoulli_``,
which takes twice as long as ``rand_like(x) >= p``; with 17 dropout sites the masks were 8% of a
Transformer training step on 2 cores (measured with torch.profiler). CUDA keeps PyTorch's fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (training only)."""
    if not training or p == 0.0:
        return x
    if x.is_cuda or p >= 1.0:
        return F.dropout(x, p, True)
    keep = torch.rand_like(x) >= p
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))
