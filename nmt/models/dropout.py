"""Inverted dropout with a cheaper mask on CPU.

The semantics of ``torch.nn.functional.dropout``, with ``p`` rounded to a multiple of 2^-16 on CPU (at
most 7.6e-6 away: 0.1 drops with probability 0.1000061). On CPU PyTorch draws the mask with
``bernoulli_``, one random number per element; here each 64-bit draw gives the 16-bit random numbers of
four elements, and the kept elements are scaled in the same pass that selects them. Every other device
(CUDA, MPS, XPU, ...) keeps PyTorch's own kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_LOWEST, _HIGHEST = -(2**63), 2**63 - 1  # random_'s default range is [0, 2^63): one lane would never be negative


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """Bool mask of ``shape``, each element True with probability 1 - p (p rounded to a multiple of 2^-16)."""
    n = shape.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(_LOWEST, _HIGHEST)
    lanes = draws.view(torch.int16)[:n].view(shape)  # uniform over [-2^15, 2^15)
    return lanes >= round(p * 65536) - 32768


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (training only)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return torch.where(keep_mask(x.shape, p, x.device), x * (1.0 / (1.0 - p)), 0.0)
