"""Luong, Pham & Manning (2015), "Effective Approaches to Attention-based Neural Machine Translation".

  encoder:   stacked LSTM over the (optionally reversed, Sec. 4.1) source; ``encoder=bidirectional`` is
             OpenNMT's brnn instead (beyond the paper): hidden_dim / 2 per direction, concatenated
  decoder:   stacked LSTM initialised with the encoder's final states; input feeding (Sec. 3.3)
             concatenates the previous attentional vector h~_{t-1} to the input embedding
  attention: from the current top decoder state h_t (Sec. 3; scores and kinds in LuongAttention)
  output:    h~_t = tanh(W_c [c_t; h_t]) (Eq. 5); p(y_t) = softmax(W_s h~_t) (Eq. 6)

``attention.kind=none`` is the paper's non-attentional baseline (p(y_t) = softmax(W_s h_t)), used for
the "base / + reverse / + dropout" rows of its Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.errors import ConfigError
from nmt.models import register_model
from nmt.models.attention import LuongAttention, uniform_attention
from nmt.models.dropout import dropout
from nmt.models.initialization import initialize, luong_init, uniform_weights_init
from nmt.models.interface import EncoderOutput, Seq2SeqModel
from nmt.models.rnn_encoder import LSTM, reverse_padded, run_packed


@dataclass
class LuongAttentionConfig:
    score: str  # dot | general | concat | location (Eq. 8)
    kind: str  # global | local_m | local_p (Sec. 3.1-3.2) | none (no attention)
    window: int  # D: local window [p_t - D, p_t + D]; sigma = D / 2
    max_src_len: int  # location score only: number of source positions W_loc can address


@dataclass
class LuongConfig:
    """Values come from configs/model/luong*.yaml (the one place for defaults); every field is required."""

    embed_dim: int
    hidden_dim: int
    layers: int
    dropout: float  # between LSTM layers and before the softmax (Sec. 4.1, Zaremba et al. 2015)
    reverse_source: bool
    input_feed: bool
    attention: LuongAttentionConfig
    # paper: every parameter uniform in [-0.1, 0.1] (Sec. 4.1) | uniform_weights: the same but for the
    # embeddings, which keep N(0, 1) | pytorch: PyTorch's defaults
    init: str
    # unidirectional (the paper) | bidirectional (OpenNMT's brnn, beyond the paper); the default is for
    # checkpoints written before the option existed
    encoder: str = "unidirectional"

    def describe(self) -> str:
        att = self.attention
        kind = "no attention" if att.kind == "none" else f"{att.kind} {att.score}"
        feed = ", input feeding" if self.input_feed and att.kind != "none" else ""
        bi = ", bidirectional encoder" if self.encoder == "bidirectional" else ""
        return f"LSTM {self.layers} layers, {kind}{feed}{bi}"


@dataclass
class LuongMemory(EncoderOutput):
    """The encoder output in source order (states (B, S, H) h_s) and what the decoder starts from."""

    h0: Tensor  # (B, L, H) the encoder's final hidden state of each layer, batch first
    c0: Tensor  # (B, L, H) its final cell state
    keys: Tensor  # (B, S, H) h_s projected once for the score function (h_s itself without attention)
    lengths: Tensor  # (B,) source lengths S, EOS included, that bound the local attention windows


@dataclass
class LuongState:
    """Decoder state after the tokens decoded so far."""

    h: Tensor  # (B, L, H) LSTM hidden state of each layer, batch first
    c: Tensor  # (B, L, H) LSTM cell state
    feed: Tensor  # (B, H) h~_{t-1}, fed to the next input (zeros before the first token)
    step: int  # target positions decoded so far (the position t of the next token); not per row


@register_model("luong", LuongConfig)
class LuongNMT(Seq2SeqModel[LuongMemory, LuongState]):
    def __init__(self, cfg: LuongConfig, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool):
        super().__init__()
        att = cfg.attention
        if att.kind == "none" and cfg.input_feed:
            raise ConfigError("model.input_feed=true needs attention; set model.attention.kind or input_feed=false")
        if att.kind != "none" and (att.kind not in LuongAttention.KINDS or att.score not in LuongAttention.SCORES):
            raise ConfigError(
                f"model.attention.kind={att.kind} / score={att.score}: kinds {', '.join(LuongAttention.KINDS)}, "
                f"none; scores {', '.join(LuongAttention.SCORES)}"
            )
        if cfg.encoder not in ("unidirectional", "bidirectional"):
            raise ConfigError(f"model.encoder={cfg.encoder!r}: use unidirectional (the paper) or bidirectional")
        bidirectional = cfg.encoder == "bidirectional"
        if bidirectional and cfg.hidden_dim % 2:
            raise ConfigError(
                f"model.encoder=bidirectional splits model.hidden_dim={cfg.hidden_dim} in two: use an even one"
            )
        self.cfg = cfg
        self.has_attention = att.kind != "none"
        h = cfg.hidden_dim
        drop_between = cfg.dropout if cfg.layers > 1 else 0.0
        self.src_embed = nn.Embedding(src_vocab_size, cfg.embed_dim, padding_idx=self.pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, cfg.embed_dim, padding_idx=self.pad_id)
        self.encoder = LSTM(
            cfg.embed_dim,
            h // 2 if bidirectional else h,
            cfg.layers,
            batch_first=True,
            dropout=drop_between,
            bidirectional=bidirectional,
        )
        dec_in = cfg.embed_dim + (h if cfg.input_feed else 0)
        self.decoder = LSTM(dec_in, h, cfg.layers, batch_first=True, dropout=drop_between)
        self.attention = (
            None if att.kind == "none" else LuongAttention(h, att.score, att.kind, att.window, att.max_src_len)
        )
        # Only built when used: a parameter that never gets a gradient stops DDP at its second step.
        self.W_c = nn.Linear(2 * h, h, bias=False) if self.attention is not None else None
        self.W_s = nn.Linear(h, tgt_vocab_size)
        initialize(self, cfg.init, {"paper": luong_init, "uniform_weights": uniform_weights_init})

    @property
    def model_dim(self) -> int:
        return self.cfg.hidden_dim

    def encode(self, src: Tensor, src_lengths: Tensor) -> LuongMemory:
        tokens = reverse_padded(src, src_lengths) if self.cfg.reverse_source else src
        emb = dropout(self.src_embed(tokens), self.cfg.dropout, self.training)
        states, (h, c) = run_packed(self.encoder, emb, src_lengths)  # states (B, S, H); h, c (L * D, B, H / D)
        if self.encoder.bidirectional:  # per layer [forward final; backward final]: (L, B, H)
            h, c = (x.view(self.cfg.layers, 2, *x.shape[1:]).transpose(1, 2).flatten(2) for x in (h, c))
        if self.cfg.reverse_source:  # back to source order, so attention weights index source positions
            index = reverse_padded(torch.arange(src.size(1), device=src.device).expand_as(src), src_lengths)
            states = states.gather(1, index[..., None].expand_as(states))
        keys = self.attention.project_keys(states) if self.attention is not None else states
        return LuongMemory(
            states, src != self.pad_id, h0=h.transpose(0, 1), c0=c.transpose(0, 1), keys=keys, lengths=src_lengths
        )

    def init_state(self, memory: LuongMemory) -> LuongState:
        feed = memory.states.new_zeros(memory.states.size(0), self.cfg.hidden_dim)
        return LuongState(h=memory.h0, c=memory.c0, feed=feed, step=0)

    def _attend(self, h_t: Tensor, memory: LuongMemory, steps: Tensor) -> tuple[Tensor, Tensor]:
        """h~_t = tanh(W_c [c_t; h_t]) (B, T, H) and a_t (B, T, S) for top-layer states h_t (B, T, H)."""
        if self.attention is None:
            return h_t, uniform_attention(memory.mask, h_t.size(1))
        ctx, a_t = self.attention(h_t, memory.keys, memory.states, memory.mask, memory.lengths, steps)
        return torch.tanh(self.W_c(torch.cat([ctx, h_t], dim=-1))), a_t

    def decode(
        self, prev_tokens: Tensor, memory: LuongMemory, state: LuongState, need_attention: bool = False
    ) -> tuple[Tensor, LuongState, Tensor | None]:
        emb = dropout(self.tgt_embed(prev_tokens), self.cfg.dropout, self.training)  # (B, T, E)
        step, length = state.step, prev_tokens.size(1)
        steps = torch.arange(step, step + length, device=prev_tokens.device)
        hc = (state.h.transpose(0, 1).contiguous(), state.c.transpose(0, 1).contiguous())
        feed = state.feed
        if not self.cfg.input_feed:  # the whole target runs through the LSTM in one call
            h_top, hc = self.decoder(emb, hc)
            h_tilde, a_t = self._attend(h_top, memory, steps)
            feed = h_tilde[:, -1]
        else:
            outs, atts = [], []
            for t in range(length):
                h_top, hc = self.decoder(torch.cat([emb[:, t], feed], dim=-1)[:, None], hc)
                h_t, a = self._attend(h_top, memory, steps[t : t + 1])
                feed = h_t[:, 0]
                outs.append(h_t)
                atts.append(a)
            h_tilde, a_t = torch.cat(outs, 1), torch.cat(atts, 1)
        logits = self.W_s(dropout(h_tilde, self.cfg.dropout, self.training))
        new_state = LuongState(h=hc[0].transpose(0, 1), c=hc[1].transpose(0, 1), feed=feed, step=step + length)
        return logits, new_state, (a_t if need_attention else None)
