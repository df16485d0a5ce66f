"""RNNsearch (Bahdanau, Cho & Bengio 2014) and its no-attention baseline RNNencdec (Cho et al. 2014).

Both share the GRU decoder with a deep output layer (Bahdanau et al. Appendix A.2.2); they differ in
the encoder and in the context the decoder sees:

RNNsearch (``model.arch=rnnsearch``)
  encoder:   bidirectional GRU, annotations h_j = [fwd h_j; bwd h_j]                         (Sec. 3.2)
  init:      s_0 = tanh(W_s bwd h_1)                                                         (App. A.2.2)
  attention: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j), alpha_ij = softmax_j(e_ij),
             c_i = sum_j alpha_ij h_j                                                        (Eq. 5-6)
RNNencdec (``model.arch=rnnencdec``)
  encoder:   unidirectional GRU; one summary c = tanh(V h_T) of the whole source             (Cho et al. Sec. 2.2)
  init:      s_0 = tanh(V' c); the decoder sees the same c at every step (no attention)
Shared decoder
  state:     s_i = GRU(s_{i-1}, [E y_{i-1}; c_i])                                            (Eq. 4)
  output:    t~_i = U_o s_i + V_o E y_{i-1} + C_o c_i; t_i = maxout over pairs of t~_i;
             p(y_i) = softmax(W_o t_i)                                                        (App. A.2.2)
  The appendix writes U_o s_{i-1}; Eq. 4 conditions the output on s_i, which is what is used here.
  ``maxout: false`` replaces the maxout by tanh of a half-size layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models import register_model
from nmt.models.attention import AdditiveAttention, uniform_attention
from nmt.models.dropout import dropout
from nmt.models.initialization import bahdanau_init, initialize
from nmt.models.interface import EncoderOutput, Seq2SeqModel
from nmt.models.rnn_encoder import run_gru


@dataclass
class RNNEncDecConfig:
    """The shared decoder's sizes in the paper's notation: m (embedding), n (hidden), l (maxout). Values
    come from configs/model/*.yaml (the one place for defaults); every field is required."""

    embed_dim: int  # m
    hidden_dim: int  # n
    maxout_dim: int  # l: size of t_i
    maxout: bool  # false: t_i = tanh(...) instead of the maxout
    dropout: float  # on embeddings and t_i (not in the paper, which uses none)
    init: str  # paper: App. B.1 (orthogonal recurrent matrices, N(0, 0.01^2), ...) | pytorch: its defaults

    # Written by earlier versions into stored configs, dropped when those load (the unused attention size).
    RETIRED: ClassVar[tuple[str, ...]] = ("attention_dim",)

    def describe(self) -> str:
        return f"GRU {self.hidden_dim}, no attention"


@dataclass
class RNNSearchConfig(RNNEncDecConfig):
    attention_dim: int  # n': size of W_a s_{i-1} + U_a h_j (Eq. 6)

    RETIRED: ClassVar[tuple[str, ...]] = ()

    def describe(self) -> str:
        return f"bi-GRU {self.hidden_dim}, additive attention"


@dataclass
class GRUMemory(EncoderOutput):
    """What the shared decoder needs from either encoder: its initial state."""

    s0: Tensor  # (B, n) s_0


@dataclass
class RNNSearchMemory(GRUMemory):
    """RNNsearch's encoder output; states are the annotations h_j (B, S, 2n)."""

    keys: Tensor  # (B, S, n') U_a h_j, precomputed once for every decoding step


@dataclass
class RNNEncDecMemory(GRUMemory):
    """RNNencdec's encoder output; the decoder reads only the summary c (states serve the attention dumps)."""

    c: Tensor  # (B, n) the source summary c = tanh(V h_T)


@dataclass
class GRUState:
    """The shared decoder's state."""

    s: Tensor  # (B, n) s_{i-1}, the GRU state after the tokens decoded so far


GRUMemoryT = TypeVar("GRUMemoryT", bound=GRUMemory)


class GRUDecoderModel(Seq2SeqModel[GRUMemoryT, GRUState]):
    """The shared decoder; subclasses provide ``encode`` and the per-step context."""

    def __init__(self, cfg: RNNEncDecConfig, src_vocab_size: int, tgt_vocab_size: int, context_dim: int):
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab_size, cfg.embed_dim, padding_idx=self.pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, cfg.embed_dim, padding_idx=self.pad_id)
        self.context_dim = context_dim
        self.cell = nn.GRUCell(cfg.embed_dim + context_dim, cfg.hidden_dim)  # its weights; stepped by _gru_step
        out = 2 * cfg.maxout_dim if cfg.maxout else cfg.maxout_dim
        self.U_o = nn.Linear(cfg.hidden_dim, out)
        self.V_o = nn.Linear(cfg.embed_dim, out, bias=False)
        self.C_o = nn.Linear(context_dim, out, bias=False)
        self.W_o = nn.Linear(cfg.maxout_dim, tgt_vocab_size)

    @property
    def model_dim(self) -> int:
        return self.cfg.hidden_dim

    def init_state(self, memory: GRUMemoryT) -> GRUState:
        return GRUState(s=memory.s0)

    def context(self, s_prev: Tensor, memory: GRUMemoryT) -> tuple[Tensor, Tensor]:
        """c_i (B, C) and the attention weights (B, S) for decoder state s_{i-1} (B, n): the attention of a
        model whose ``fixed_context`` is None."""
        raise NotImplementedError(f"{type(self).__name__} attends: it must define context()")

    def fixed_context(self, memory: GRUMemoryT) -> Tensor | None:
        """The context (B, C) of a model without attention, the same at every step; None: see context()."""
        return None

    def _gru_step(self, gates_in: Tensor, s: Tensor) -> Tensor:
        """``nn.GRUCell`` with the input's share of the gates given, gates_in = W_ih x + b_ih (B, 3n):
        r, z = sigmoid(gates_in + W_hh s + b_hh), n = tanh(gates_in_n + r * (W_hh s + b_hh)_n),
        s' = (1 - z) n + z s (PyTorch's gate order r, z, n)."""
        gates_h = F.linear(s, self.cell.weight_hh, self.cell.bias_hh)  # (B, 3n)
        in_r, in_z, in_n = gates_in.chunk(3, dim=-1)
        h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
        r, z = torch.sigmoid(in_r + h_r), torch.sigmoid(in_z + h_z)
        n = torch.tanh(in_n + r * h_n)
        return n + z * (s - n)

    def deep_output(self, s: Tensor, emb: Tensor, ctx: Tensor) -> Tensor:
        """t~ = U_o s + V_o E y + C_o c; maxout (or tanh); logits W_o t. Works on (B, T, .) tensors; a
        context that is the same at every step may come as (B, 1, C)."""
        t = self.U_o(s) + self.V_o(emb) + self.C_o(ctx)
        t = t.view(*t.shape[:-1], self.cfg.maxout_dim, 2).amax(-1) if self.cfg.maxout else torch.tanh(t)
        return self.W_o(dropout(t, self.cfg.dropout, self.training))

    def decode(
        self, prev_tokens: Tensor, memory: GRUMemoryT, state: GRUState, need_attention: bool = False
    ) -> tuple[Tensor, GRUState, Tensor | None]:
        emb = dropout(self.tgt_embed(prev_tokens), self.cfg.dropout, self.training)  # (B, T, m)
        steps = prev_tokens.size(1)
        w_emb, w_ctx = self.cell.weight_ih.split([self.cfg.embed_dim, self.context_dim], dim=1)
        # What does not depend on s_{i-1} is computed for all steps in one product, out of the loop: the
        # embedding's share of the GRU input gates and, without attention, the context's share.
        gates_in = F.linear(emb, w_emb, self.cell.bias_ih)  # (B, T, 3n)
        fixed = self.fixed_context(memory)  # (B, C) or None
        if fixed is not None:
            gates_in = gates_in + F.linear(fixed, w_ctx)[:, None]
        s = state.s
        states, contexts, alphas = [], [], []
        # unbind: one backward node for all steps (indexing step i would give each step's gradient
        # the size of all steps)
        for gates in gates_in.unbind(1):  # (B, 3n)
            if fixed is None:
                c, alpha = self.context(s, memory)
                gates = gates + F.linear(c, w_ctx)
                contexts.append(c)
                alphas.append(alpha)
            s = self._gru_step(gates, s)
            states.append(s)
        ctx = fixed[:, None] if fixed is not None else torch.stack(contexts, 1)  # (B, T or 1, C)
        logits = self.deep_output(torch.stack(states, 1), emb, ctx)
        attention = None
        if need_attention:
            attention = torch.stack(alphas, 1) if fixed is None else uniform_attention(memory.mask, steps)
        return logits, GRUState(s=s), attention


@register_model("rnnsearch", RNNSearchConfig)
class RNNSearch(GRUDecoderModel[RNNSearchMemory]):
    """Bahdanau et al. (2014) RNNsearch: bidirectional GRU encoder + additive attention."""

    def __init__(self, cfg: RNNSearchConfig, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool):
        super().__init__(cfg, src_vocab_size, tgt_vocab_size, context_dim=2 * cfg.hidden_dim)
        self.encoder = nn.GRU(cfg.embed_dim, cfg.hidden_dim, batch_first=True, bidirectional=True)
        self.W_s = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.attention = AdditiveAttention(cfg.hidden_dim, 2 * cfg.hidden_dim, cfg.attention_dim)
        initialize(self, cfg.init, {"paper": bahdanau_init})

    def encode(self, src: Tensor, src_lengths: Tensor) -> RNNSearchMemory:
        emb = dropout(self.src_embed(src), self.cfg.dropout, self.training)
        annotations, _ = run_gru(self.encoder, emb, src_lengths)  # (B, S, 2n)
        backward_first = annotations[:, 0, self.cfg.hidden_dim :]  # bwd h_1: the backward RNN's last state
        s0 = torch.tanh(self.W_s(backward_first))
        keys = self.attention.project_keys(annotations)
        return RNNSearchMemory(annotations, src != self.pad_id, s0=s0, keys=keys)

    def context(self, s_prev: Tensor, memory: RNNSearchMemory) -> tuple[Tensor, Tensor]:
        return self.attention(s_prev, memory.keys, memory.states, memory.mask)


@register_model("rnnencdec", RNNEncDecConfig)
class RNNEncDec(GRUDecoderModel[RNNEncDecMemory]):
    """Cho et al. (2014) RNN Encoder-Decoder: a fixed-length summary c instead of attention.

    Its "attention" output is uniform over the real source positions (the decoder looks at all of the
    source equally, through c), so that dumps work for every model; ``has_attention`` keeps it out of plots.
    """

    has_attention = False

    def __init__(self, cfg: RNNEncDecConfig, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool):
        super().__init__(cfg, src_vocab_size, tgt_vocab_size, context_dim=cfg.hidden_dim)
        self.encoder = nn.GRU(cfg.embed_dim, cfg.hidden_dim, batch_first=True)
        self.V = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.V_init = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        initialize(self, cfg.init, {"paper": bahdanau_init})

    def encode(self, src: Tensor, src_lengths: Tensor) -> RNNEncDecMemory:
        emb = dropout(self.src_embed(src), self.cfg.dropout, self.training)
        states, h_last = run_gru(self.encoder, emb, src_lengths)
        c = torch.tanh(self.V(h_last[-1]))  # (B, n)
        return RNNEncDecMemory(states, src != self.pad_id, s0=torch.tanh(self.V_init(c)), c=c)

    def fixed_context(self, memory: RNNEncDecMemory) -> Tensor:
        return memory.c
