"""Recurrent encoders over padded batches (packed sequences, so padding never enters the recurrence)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def run_packed(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """Run ``rnn`` (batch_first) over (B, S, E) inputs of the given lengths.

    Returns outputs (B, S, D * H) with zeros at padded positions, and the final state(s)
    (layers * D, B, H) taken at each sequence's real end.
    """
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, final = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, final


def reverse_padded(tokens: Tensor, lengths: Tensor, keep_last: int = 1) -> Tensor:
    """Reverse each row's first ``length - keep_last`` tokens in place of order (Sutskever et al. 2014's
    source reversal), leaving the final EOS (``keep_last``) and the padding where they are. tokens: (B, S)."""
    b, s = tokens.shape
    pos = torch.arange(s, device=tokens.device)[None, :].expand(b, s)
    span = (lengths - keep_last)[:, None]
    src_pos = torch.where(pos < span, span - 1 - pos, pos)
    return tokens.gather(1, src_pos)
