"""The Transformer of Vaswani et al. (2017), "Attention Is All You Need".

Sinusoidal positions (Sec. 3.5), embeddings scaled by sqrt(d_model) (Sec. 3.4), multi-head attention
(Sec. 3.2.2) through ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels where the device has them), post-norm residual blocks as in the paper or pre-norm as an option,
and tied source / target / output embeddings over a joint vocabulary (Sec. 3.4).

Incremental decoding caches each decoder layer's self-attention keys and values in the state
(``TransformerState``); the encoder-side keys and values of every cross-attention are computed once in
``encode`` (``TransformerMemory``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.errors import ConfigError
from nmt.models import register_model
from nmt.models.dropout import dropout
from nmt.models.interface import EncoderOutput, Seq2SeqModel

KeysValues = tuple[Tensor, Tensor]  # keys (B, h, L, d_k) and values (B, h, L, d_v) of one attention


@dataclass
class TransformerConfig:
    """Sizes follow the paper's notation: d_model, d_ff, h, N. Values come from configs/model/transformer_*.yaml
    (the one place for defaults); every field is required."""

    d_model: int
    ff_dim: int  # d_ff
    heads: int  # h
    encoder_layers: int  # N
    decoder_layers: int
    dropout: float  # P_drop on sub-layer outputs and embedding sums (Sec. 5.4)
    attention_dropout: float  # on attention weights (not in the paper; fairseq's option)
    activation_dropout: float  # inside the feed-forward block
    pre_norm: bool  # False: the paper's post-norm LayerNorm(x + Sublayer(x))
    share_embeddings: bool  # one embedding for source and target (needs a joint vocabulary)
    tie_output: bool  # output projection = target embedding matrix
    max_positions: int  # longest source or target (EOS / BOS included)
    # sinusoidal (Sec. 3.5) | learned: a trained embedding per side (Table 3 row E). The defaults of these
    # two are for checkpoints written before the options existed.
    positions: str = "sinusoidal"
    # d_k, the size of each head's queries and keys (Table 3 row B); None: d_model / h. Values keep
    # d_v = d_model / h either way, as in the paper's row B.
    key_dim: int | None = None

    def describe(self) -> str:
        return f"Transformer {self.encoder_layers}+{self.decoder_layers} layers, d {self.d_model}"


@dataclass
class TransformerMemory(EncoderOutput):
    """The encoder output plus what every decoding step would otherwise recompute from it."""

    cross_kv: tuple[KeysValues, ...]  # per decoder layer: its cross-attention's keys and values (over S positions)


@dataclass
class LayerCache:
    """One decoder layer's self-attention keys and values of the target positions decoded so far.

    Beam search reorders the rows of the state at every step; this cache defers that to its next
    extension (``rows``), which copies the reordered keys and values once, straight into the longer
    tensor that also takes the new position, instead of once to reorder and again to append.
    """

    k: Tensor | None = None  # (B', h, T, d_k); None before the first position
    v: Tensor | None = None  # (B', h, T, d_v)
    rows: Tensor | None = None  # (B,) the rows of k and v that are this cache's rows; None: all, in order

    def select_rows(self, index: Tensor) -> LayerCache:
        """The cache of rows ``index`` (B,), reordered lazily (see :func:`nmt.models.interface.select_rows`)."""
        if self.k is None:  # no position yet: nothing to reorder
            return self
        return LayerCache(self.k, self.v, index if self.rows is None else self.rows.index_select(0, index))


def extend(past: Tensor | None, rows: Tensor | None, new: Tensor) -> Tensor:
    """Rows ``rows`` of ``past`` (B', h, T, d; None: all rows in order) followed by ``new`` (B, h, t, d)
    along the positions: (B, h, T + t, d), each of past's values copied once."""
    if past is None:
        return new
    if rows is not None and torch.is_grad_enabled():  # index_select(out=) records no gradient
        past, rows = past.index_select(0, rows), None
    if rows is None:
        return torch.cat([past, new], dim=2)
    out = new.new_empty(new.size(0), new.size(1), past.size(2) + new.size(2), new.size(3))
    torch.index_select(past, 0, rows, out=out[:, :, : past.size(2)])
    out[:, :, past.size(2) :] = new
    return out


@dataclass
class TransformerState:
    """Decoder state: the per-layer caches and the position the next token takes."""

    step: int  # target positions decoded so far (the sinusoid offset of the next token); not per row
    layers: list[LayerCache]  # one per decoder layer


def sinusoids(length: int, dim: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): (length, dim)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv)
    return table


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    Queries and keys have d_k = ``key_dim`` per head (default d_model / h), values d_v = d_model / h.
    """

    def __init__(self, d_model: int, heads: int, dropout: float, key_dim: int | None = None):
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"model.d_model={d_model} must be divisible by model.heads={heads}")
        if key_dim is not None and key_dim < 1:
            raise ConfigError(f"model.key_dim={key_dim}: give a positive size per head, or null for d_model / heads")
        self.heads, self.dropout = heads, dropout
        self.value_dim = d_model // heads  # d_v
        self.key_dim = key_dim or self.value_dim  # d_k
        self.q_proj = nn.Linear(d_model, heads * self.key_dim)
        self.kv_proj = nn.Linear(d_model, heads * (self.key_dim + self.value_dim))  # [W^K; W^V]
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, L, h * d) -> (B, h, L, d)."""
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def keys_values(self, x: Tensor) -> KeysValues:
        """Project (B, L, d_model) to keys (B, h, L, d_k) and values (B, h, L, d_v)."""
        k, v = self.kv_proj(x).split([self.heads * self.key_dim, self.heads * self.value_dim], dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def forward(
        self,
        x: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        causal: bool,
        need_weights: bool = False,
        step: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) queries; k, v: (B, h, S, d_k); mask: broadcastable to (B, h, T, S), True = attend.
        step: the queries are one decoding step's (one per row, or one per beam of a sentence).

        Returns (B, T, d_model) and, if asked, weights (B, T, S) averaged over heads.
        """
        q = self.split_heads(self.q_proj(x))
        drop = self.dropout if self.training else 0.0
        weights = None
        # A decoding step: two small matmuls beat the flash kernel's set-up on a CPU (15-25% faster at
        # beam-search sizes for one query per row; for a sentence's 5 beams over 16 / 30 source positions
        # 0.23 / 0.43 vs 0.24 / 0.51 ms, 55 sentences); causal masking is moot for one query.
        if need_weights or step or x.size(1) == 1:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.key_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(-1)
            weights = probs.mean(1) if need_weights else None
            out = dropout(probs, drop, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1)), weights


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 (Sec. 3.3)."""

    def __init__(self, d_model: int, ff_dim: int, activation_dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, ff_dim), nn.Linear(ff_dim, d_model)
        self.activation_dropout = activation_dropout

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(dropout(F.relu(self.fc1(x)), self.activation_dropout, self.training))


class Residual(nn.Module):
    """Post-norm LayerNorm(x + Dropout(f(x))) or pre-norm x + Dropout(f(LayerNorm(x)))."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm, self.dropout, self.pre_norm = nn.LayerNorm(d_model), dropout, pre_norm

    def forward(self, x: Tensor, sublayer) -> tuple[Tensor, Any]:
        out, extra = sublayer(self.norm(x) if self.pre_norm else x)
        y = x + dropout(out, self.dropout, self.training)
        return (y if self.pre_norm else self.norm(y)), extra


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, cfg.key_dim)
        self.ffn = FeedForward(cfg.d_model, cfg.ff_dim, cfg.activation_dropout)
        self.res_attn = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.res_ffn = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, S, d_model); mask: (B, 1, 1, S)."""
        x, _ = self.res_attn(x, lambda h: self.attn(h, *self.attn.keys_values(h), mask, causal=False))
        x, _ = self.res_ffn(x, lambda h: (self.ffn(h), None))
        return x


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, cfg.key_dim)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, cfg.key_dim)
        self.ffn = FeedForward(cfg.d_model, cfg.ff_dim, cfg.activation_dropout)
        self.res_self = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.res_cross = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.res_ffn = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)

    def _self_attention(self, h: Tensor, cache: LayerCache) -> tuple[Tensor, LayerCache]:
        """Masked self-attention over cached + new positions; returns the cache extended by the new ones."""
        k, v = self.self_attn.keys_values(h)
        k, v = extend(cache.k, cache.rows, k), extend(cache.v, cache.rows, v)
        cache = LayerCache(k, v)
        t, total = h.size(1), k.size(2)
        if t == 1:
            return self.self_attn(h, k, v, None, causal=False)[0], cache
        if t == total:
            return self.self_attn(h, k, v, None, causal=True)[0], cache
        mask = torch.ones(t, total, dtype=torch.bool, device=h.device).tril(total - t)
        return self.self_attn(h, k, v, mask, causal=False)[0], cache

    def _cross_attention(
        self, h: Tensor, cross_kv: KeysValues, src_mask: Tensor, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Attention over the source. h: (R, T, d_model) with R a multiple g of the n memory rows (beam
        search's g rows per sentence): each sentence's g * T queries go in as one row, so its keys and
        values are read once, not copied per beam. Returns (R, T, d_model) and, if asked, weights (R, T, S)."""
        rows, t, d = h.shape
        n = cross_kv[0].size(0)
        grouped = h.reshape(n, rows // n * t, d)
        out, weights = self.cross_attn(grouped, *cross_kv, src_mask, False, need_weights, step=t == 1)
        return out.view(rows, t, d), None if weights is None else weights.view(rows, t, -1)

    def forward(
        self, x: Tensor, cross_kv: KeysValues, src_mask: Tensor, cache: LayerCache, need_weights: bool
    ) -> tuple[Tensor, LayerCache, Tensor | None]:
        """x: (B, T, d_model) new positions; src_mask: (B, 1, 1, S). Returns the output, the extended
        cache and, if asked, the cross-attention weights (B, T, S)."""
        x, cache = self.res_self(x, lambda h: self._self_attention(h, cache))
        x, weights = self.res_cross(x, lambda h: self._cross_attention(h, cross_kv, src_mask, need_weights))
        x, _ = self.res_ffn(x, lambda h: (self.ffn(h), None))
        return x, cache, weights


@register_model("transformer", TransformerConfig)
class Transformer(Seq2SeqModel[TransformerMemory, TransformerState]):
    """Encoder-decoder Transformer implementing the shared encode / decode interface."""

    shares_memory_rows = True  # the memory is read only by the cross-attention (DecoderLayer._cross_attention)

    def __init__(self, cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool):
        super().__init__()
        if cfg.share_embeddings and not shared_vocab:
            raise ConfigError(
                "model.share_embeddings=true needs a joint vocabulary: set data.tokenizer.joint=true "
                "or model.share_embeddings=false"
            )
        self.cfg = cfg
        d = cfg.d_model
        self.max_positions = cfg.max_positions
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d, padding_idx=self.pad_id)
        self.src_embed = (
            self.tgt_embed if cfg.share_embeddings else nn.Embedding(src_vocab_size, d, padding_idx=self.pad_id)
        )
        if cfg.positions not in ("sinusoidal", "learned"):
            raise ConfigError(f"model.positions={cfg.positions!r}: use sinusoidal or learned")
        self.register_buffer("positions", sinusoids(cfg.max_positions, d), persistent=False)
        learned = cfg.positions == "learned"
        self.src_positions = nn.Embedding(cfg.max_positions, d) if learned else None
        self.tgt_positions = nn.Embedding(cfg.max_positions, d) if learned else None
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.encoder_norm = nn.LayerNorm(d) if cfg.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d) if cfg.pre_norm else nn.Identity()
        self.output_proj = None if cfg.tie_output else nn.Linear(d, tgt_vocab_size, bias=False)
        self.reset_parameters()

    @property
    def model_dim(self) -> int:
        return self.cfg.d_model

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        for emb in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(emb.weight, mean=0.0, std=self.cfg.d_model**-0.5)
            nn.init.zeros_(emb.weight[self.pad_id])
        for table in (self.src_positions, self.tgt_positions):
            if table is not None:  # as fairseq's learned positions: N(0, d^-1/2)
                nn.init.normal_(table.weight, mean=0.0, std=self.cfg.d_model**-0.5)

    def position_table(self, side: str) -> Tensor:
        """(max_positions, d_model) position encodings of the ``src`` or ``tgt`` side."""
        table = self.src_positions if side == "src" else self.tgt_positions
        return self.positions if table is None else table.weight

    def _embed(self, table: nn.Embedding, tokens: Tensor, offset: int, side: str) -> Tensor:
        """Scaled token embedding plus position encoding: (B, L) -> (B, L, d_model)."""
        length = tokens.size(1)
        if offset + length > self.cfg.max_positions:
            raise ValueError(
                f"sequence position {offset + length} exceeds model.max_positions={self.cfg.max_positions}"
            )
        x = table(tokens) * math.sqrt(self.cfg.d_model) + self.position_table(side)[offset : offset + length]
        return dropout(x, self.cfg.dropout, self.training)

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerMemory:
        mask = src != self.pad_id  # (B, S)
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, S)
        x = self._embed(self.src_embed, src, 0, "src")
        for layer in self.encoder_layers:
            x = layer(x, attn_mask)
        x = self.encoder_norm(x)
        # Contiguous once here: as views of the projection, every decoding step's attention products
        # would copy them again (the batched matmul cannot fold (B, h) of a head-split view).
        cross_kv = tuple(
            (k.contiguous(), v.contiguous())
            for k, v in (layer.cross_attn.keys_values(x) for layer in self.decoder_layers)
        )
        return TransformerMemory(states=x, mask=mask, cross_kv=cross_kv)

    def init_state(self, memory: TransformerMemory) -> TransformerState:
        return TransformerState(step=0, layers=[LayerCache() for _ in self.decoder_layers])

    def decode(
        self, prev_tokens: Tensor, memory: TransformerMemory, state: TransformerState, need_attention: bool = False
    ) -> tuple[Tensor, TransformerState, Tensor | None]:
        x = self._embed(self.tgt_embed, prev_tokens, state.step, "tgt")
        src_mask = memory.mask[:, None, None, :]
        weights, caches = None, []
        last = len(self.decoder_layers) - 1
        for i, (layer, cache, cross_kv) in enumerate(zip(self.decoder_layers, state.layers, memory.cross_kv)):
            x, cache, w = layer(x, cross_kv, src_mask, cache, need_attention and i == last)
            caches.append(cache)
            weights = w if w is not None else weights
        x = self.decoder_norm(x)
        proj = self.tgt_embed.weight if self.output_proj is None else self.output_proj.weight
        logits = F.linear(x, proj)
        return logits, TransformerState(step=state.step + prev_tokens.size(1), layers=caches), weights
