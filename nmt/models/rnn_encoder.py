"""Recurrent layers over padded batches (packed sequences, so padding never enters the recurrence)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


class LSTM(nn.LSTM):
    """``nn.LSTM`` that runs in fp32 under CPU autocast (``trainer.amp=bf16`` on a CPU).

    oneDNN has a bf16 LSTM kernel only on AVX-512 CPUs; with AVX2 kernels it fails with "could not
    create a primitive descriptor". fp32 on every CPU kind also keeps the two kinds' numerics alike, as
    autocast already does for ``nn.GRU``; the products around the LSTM stay in bf16. GPUs are untouched.
    """

    def forward(
        self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        on_cpu = (input.data if isinstance(input, PackedSequence) else input).is_cpu
        if not (on_cpu and torch.is_autocast_enabled("cpu")):
            return super().forward(input, hx)
        with torch.autocast("cpu", enabled=False):
            return super().forward(input.float(), None if hx is None else (hx[0].float(), hx[1].float()))


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
