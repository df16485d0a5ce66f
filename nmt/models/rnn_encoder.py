"""Recurrent layers over padded batches; padding never enters the state of a real position.

Two ways: :func:`run_packed` (packed sequences; any ``nn.RNNBase``) and, for one GRU layer,
:func:`run_gru`, which runs each direction over the padded rows when training on a CPU. That is for
training speed: PyTorch's packed recurrence takes each step's rows as a slice of the whole input, and
its backward writes every step's gradient into a zero tensor the size of the whole input and adds these
up, work quadratic in the source length (rnnsearch / rnnencdec training +5-7%, README "Benchmark").
Without a gradient the packed run is the faster one (66 vs 78 ms for 186 x 22 tokens), so it is kept there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call
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


_GRU_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def run_gru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`run_packed` for a one-layer (bidirectional or not) batch_first ``nn.GRU``: on a CPU with a
    gradient recorded, :func:`run_gru_padded` (module docstring); otherwise packed (GPUs: cuDNN runs
    packed sequences in its own kernels)."""
    if torch.is_grad_enabled() and x.device.type == "cpu":
        return run_gru_padded(gru, x, lengths)
    out, final = run_packed(gru, x, lengths)
    assert isinstance(final, Tensor)  # a GRU has no cell state
    return out, final


def run_gru_padded(gru: nn.GRU, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`run_packed` for a one-layer (bidirectional or not) batch_first ``nn.GRU``, without packing.

    The forward direction runs over the padded rows as they are: padding comes after each sentence, so
    it only follows the real states. The backward direction runs forward over each sentence reversed in
    place (:func:`reverse_padded`, padding left at the end), with the GRU's ``_reverse`` weights, and its
    outputs are put back in source order. Same results as :func:`run_packed` up to float rounding; the
    padded positions are computed and then zeroed.

    x: (B, S, E); lengths: (B,). Returns outputs (B, S, D * H), zeros at padding, and the final states
    (D, B, H): the forward direction's at each sentence's last token, the backward one's at its first.
    """
    if gru.num_layers != 1 or not gru.batch_first:
        raise ValueError("run_gru_padded takes a one-layer batch_first nn.GRU")
    b, s, e = x.shape
    lengths = lengths.to(x.device)
    # A stand-in one-direction GRU without storage; functional_call runs it on this GRU's weights.
    # Made per call: functional_call swaps the stand-in's parameters, so it must not be shared by threads.
    shell = nn.GRU(gru.input_size, gru.hidden_size, bias=gru.bias, batch_first=True, device="meta")
    names = [n for n in _GRU_PARAMETERS if gru.bias or n.startswith("weight")]

    def direction(inputs: Tensor, suffix: str) -> Tensor:
        """The stand-in run on inputs (B, S, E) with one direction's weights (suffix "" or "_reverse")."""
        weights = {f"{n}_l0": getattr(gru, f"{n}_l0{suffix}") for n in names}
        return functional_call(shell, weights, (inputs,))[0]  # (B, S, H)

    forward = direction(x, "")
    positions = torch.arange(s, device=x.device).expand(b, s)
    last = (lengths - 1)[:, None, None].expand(-1, 1, gru.hidden_size)  # (B, 1, H)
    finals = [forward.gather(1, last)[:, 0]]
    outputs = [forward]
    if gru.bidirectional:
        flip = reverse_padded(positions, lengths, keep_last=0)  # (B, S): its own inverse
        reversed_x = x.gather(1, flip[..., None].expand(-1, -1, e))
        backward = direction(reversed_x, "_reverse")  # step j = source position length - 1 - j
        finals.append(backward.gather(1, last)[:, 0])
        outputs.append(backward.gather(1, flip[..., None].expand_as(backward)))
    real = (positions < lengths[:, None])[..., None]  # (B, S, 1)
    return torch.cat(outputs, -1) * real, torch.stack(finals)
