"""Greedy and beam search over the shared model interface (every architecture, no per-model copy).

Both searches are batched and drop sentences from the batch as soon as they are finished, so a batch
costs what its longest *unfinished* sentence costs. Beam search follows fairseq's bookkeeping: at each
step take the top 2k candidates, move those that end in EOS (within the top k) to the finished list,
and continue with the best k that do not. Finished hypotheses are ranked by log-probability divided by
the length penalty of Wu et al. (2016), lp(Y) = ((5 + |Y|) / 6) ** alpha (alpha = 0.6 in Vaswani et al.
2017; JoeyNMT and OpenNMT-py), or with ``length_normalization="length"`` by |Y| ** alpha (fairseq,
CTranslate2, Hugging Face); |Y| counts the EOS.

By default (``stopping="exact"``) a sentence stops only when no live hypothesis can still beat the
``n_best``-th best finished one (or at its length limit). Log-probabilities are <= 0, so a live score s
can only fall; its best possible normalised score is s / lp(L) for the most favourable final length L:
the length limit for alpha >= 0, the next step for alpha < 0. Stopping any earlier can return a
hypothesis that scores far below one the beam still held, e.g. worse than greedy search's.
``stopping="k_finished"`` is that earlier rule, the one fairseq and CTranslate2 (with a length penalty)
use: a sentence stops once k hypotheses have finished. It decodes fewer steps, most of all at large
alpha, where the exact bound stays loose until the length limit; it is there to reproduce those
toolkits' outputs and to compare decoding speed with them on equal search work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.errors import ConfigError
from nmt.models.interface import Seq2SeqModel, select_rows


@dataclass
class Hypothesis:
    """One output: token ids without BOS/EOS, its score, and optional attention.

    score: beam search's length-normalised log-probability; greedy search's plain sum of log-probabilities.

    attention: (len(tokens) + 1, S) weights over the real source positions, the last row for EOS.
    """

    tokens: list[int]
    score: float
    attention: Tensor | None = None


@dataclass
class SearchConfig:
    beam_size: int = 5
    length_penalty: float = 0.6  # alpha of Wu et al. 2016; 0 disables
    max_len_a: float = 1.5  # output length limit a * |src| + b
    max_len_b: int = 10
    n_best: int = 1
    stopping: str = "exact"  # beam search: "exact" (no live hypothesis can still win) or "k_finished"
    length_normalization: str = "wu"  # beam scores / ((5 + |Y|) / 6) ** alpha ("wu") or / |Y| ** alpha ("length")
    need_attention: bool = False

    STOPPING_RULES: ClassVar[tuple[str, ...]] = ("exact", "k_finished")
    LENGTH_NORMALIZATIONS: ClassVar[tuple[str, ...]] = ("wu", "length")

    # What a checkpoint's training config contributes: the set-up's own decoding (n_best is per use).
    STORED: ClassVar[tuple[str, ...]] = (
        "beam_size",
        "length_penalty",
        "max_len_a",
        "max_len_b",
        "stopping",
        "length_normalization",
    )

    @classmethod
    def from_cfg(cls, section: Mapping[str, Any] | None, stored: Mapping[str, Any] | None = None) -> SearchConfig:
        """The ``search`` section of an entry-point config over the settings ``stored`` in a checkpoint:
        a null (or absent) option keeps the stored value, which keeps the dataclass default."""
        values: dict[str, Any] = {k: v for k, v in (stored or {}).items() if k in cls.STORED and v is not None}
        values.update({k: v for k, v in (section or {}).items() if k in cls.__dataclass_fields__ and v is not None})
        types = {
            "beam_size": int,
            "n_best": int,
            "max_len_b": int,
            "length_penalty": float,
            "max_len_a": float,
            "stopping": str,
            "length_normalization": str,
        }
        cfg = cls(**{k: types.get(k, bool)(v) for k, v in values.items()})
        for option, choices in (("stopping", cls.STOPPING_RULES), ("length_normalization", cls.LENGTH_NORMALIZATIONS)):
            if getattr(cfg, option) not in choices:
                raise ConfigError(
                    f"search.{option}={getattr(cfg, option)}: give one of {', '.join(choices)} "
                    "(configs/search/default.yaml explains them)"
                )
        if cfg.beam_size < 1 or cfg.n_best < 1 or cfg.n_best > cfg.beam_size:
            raise ConfigError(
                f"search.n_best={cfg.n_best} and search.beam_size={cfg.beam_size}: need 1 <= n_best <= beam_size"
            )
        return cfg

    def output_limits(self, src_lengths: Tensor, max_positions: int | None = None) -> Tensor:
        """(B,) output length limits a * |src| + b (EOS included; |src| counts the source EOS), within the
        decoder's position limit."""
        limit = (self.max_len_a * src_lengths.float() + self.max_len_b).long().clamp(min=1)
        return limit.clamp(max=max_positions) if max_positions else limit

    def describe(self) -> str:
        search = "greedy" if self.beam_size == 1 else f"beam {self.beam_size}"
        if self.beam_size > 1 and self.stopping != "exact":
            search += f" (stopping: {self.stopping})"
        form = " (|Y|^alpha)" if self.length_normalization == "length" else ""
        return (
            f"{search}, length penalty alpha {self.length_penalty:g}{form}, "
            f"max output length {self.max_len_a:g} * source + {self.max_len_b}"
        )


def length_penalty(length: int | Tensor, alpha: float, form: str = "wu") -> float | Tensor:
    """lp(Y) = ((5 + |Y|) / 6) ** alpha, or |Y| ** alpha for ``form="length"``; both grow with |Y| for
    alpha > 0."""
    return (length if form == "length" else (5 + length) / 6) ** alpha


def _max_lengths(model: Seq2SeqModel, src_lengths: Tensor, cfg: SearchConfig) -> Tensor:
    return cfg.output_limits(src_lengths, model.max_positions)


def _log_probs(logits: Tensor, must_end: Tensor) -> Tensor:
    """Next-token log-probabilities of the rows the search may extend.

    logits: (R, V) of the last position; must_end: (R,) rows at their length limit, which may only end
    (EOS keeps its log-probability, the rest -inf). PAD and BOS are never produced. Returns (R, V).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # normalised over the whole vocabulary
    logp[:, PAD_ID] = float("-inf")
    logp[:, BOS_ID] = float("-inf")
    if must_end.any():
        eos = logp[must_end, EOS_ID]
        logp[must_end] = float("-inf")
        logp[must_end, EOS_ID] = eos
    return logp


CHUNK = 64  # vocabulary columns per block of the candidate search (a multiple of the vector width)


def _top_candidates(logp: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best extensions of each sentence: top k of scores[i, r] + logp[i * g + r, v] over (r, v).

    logp: (n * g, V), g rows per sentence; scores: (n, g). Returns their values (n, k), best first, and
    flat indices r * V + v (n, k); k <= g * V.

    Same result as a top-k over all g * V sums (up to the order of ties), without writing those sums and
    without a top-k over whole vocabulary rows: ``torch.topk`` on a CPU keeps an (index, value) pair per
    element, 4.6 ms for 275 rows of 8,000 (5% of greedy and 9% of beam-5 decoding time in the profile),
    while a vectorised max over blocks of 64 columns takes 0.4 ms. A block holding one of the k best
    values has a maximum at least that high, so the k blocks with the highest maxima (plus the columns
    after the last whole block) hold all k best; the exact top-k then runs over those k * 64 values only.
    """
    rows, vocab = logp.shape
    n, g = scores.shape
    blocks_per_row = vocab // CHUNK
    if blocks_per_row * g < k:  # a vocabulary too small to split: the plain top-k
        return (scores.reshape(-1, 1) + logp).view(n, g * vocab).topk(k, dim=1)
    whole = blocks_per_row * CHUNK
    row_scores = scores.reshape(rows, 1)  # (n * g, 1)
    blocks = logp[:, :whole].view(rows, blocks_per_row, CHUNK)
    block_max = (blocks.amax(-1) + row_scores).view(n, g * blocks_per_row)
    best = block_max.topk(k, dim=1, sorted=False).indices  # (n, k) block ids r * blocks_per_row + b
    beam, block = best // blocks_per_row, best % blocks_per_row  # (n, k) each
    row = torch.arange(n, device=logp.device)[:, None] * g + beam  # (n, k) rows of logp
    values = blocks[row, block] + row_scores[row]  # (n, k, CHUNK)
    index = (beam * vocab + block * CHUNK)[..., None] + torch.arange(CHUNK, device=logp.device)
    values, index = values.view(n, k * CHUNK), index.view(n, k * CHUNK)
    if whole < vocab:  # the columns after the last whole block are always candidates
        tail = (logp[:, whole:] + row_scores).view(n, -1)  # (n, g * (V - whole))
        columns = torch.arange(whole, vocab, device=logp.device)
        tail_index = (torch.arange(g, device=logp.device)[:, None] * vocab + columns).view(1, -1).expand(n, -1)
        values, index = torch.cat([values, tail], 1), torch.cat([index, tail_index], 1)
    top, pick = values.topk(k, dim=1)
    return top, index.gather(1, pick)


def _trim_attention(att: Tensor | None, length: int, src_len: int) -> Tensor | None:
    return None if att is None else att[:length, :src_len].clone()


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, src_lengths: Tensor, cfg: SearchConfig) -> list[list[Hypothesis]]:
    """Arg-max decoding; returns one hypothesis per sentence (score = sum of log-probs)."""
    batch = src.size(0)
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    max_lens = _max_lengths(model, src_lengths, cfg)
    longest = int(max_lens.max())
    out = torch.full((batch, longest), PAD_ID, dtype=torch.long, device=src.device)
    att_out = src.new_zeros((batch, longest, src.size(1)), dtype=torch.float) if cfg.need_attention else None
    scores = torch.zeros(batch, device=src.device)
    lengths = torch.full((batch,), longest, dtype=torch.long, device=src.device)
    rows = torch.arange(batch, device=src.device)  # current row -> sentence
    prev = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=src.device)
    for t in range(longest):
        logits, state, att = model.decode(prev, memory, state, cfg.need_attention)
        logp = _log_probs(logits[:, -1], t + 1 >= max_lens[rows])
        logp, tok = (x[:, 0] for x in _top_candidates(logp, scores.new_zeros(len(rows), 1), 1))
        scores[rows] += logp
        out[rows, t] = tok
        if att_out is not None:
            att_out[rows, t] = att[:, -1].float()
        done = tok == EOS_ID
        if done.any():
            lengths[rows[done]] = t
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            memory, state, rows, tok = select_rows(memory, keep), select_rows(state, keep), rows[keep], tok[keep]
        prev = tok[:, None]
    result = []
    for i in range(batch):
        n = int(lengths[i])
        att = _trim_attention(att_out[i] if att_out is not None else None, n + 1, int(src_lengths[i]))
        result.append([Hypothesis(out[i, :n].tolist(), float(scores[i]), att)])
    return result


def _best_reachable(alive: Tensor, next_len: int, max_lens: Tensor, alpha: float, form: str) -> Tensor:
    """Upper bound on the normalised score any continuation of a live hypothesis can finish with.

    alive: (n,) best live log-probability per sentence (<= 0); max_lens: (n,) length limits (EOS
    included). A continuation finishes with a log-probability <= ``alive`` at a length in
    [next_len, max_len], and s / lp(L) for s <= 0 is largest where lp(L) is largest.
    """
    lp = length_penalty(max_lens.float(), alpha, form).clamp(min=length_penalty(next_len, alpha, form))
    return alive / lp


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: Tensor, src_lengths: Tensor, cfg: SearchConfig) -> list[list[Hypothesis]]:
    """Batched beam search; returns the ``n_best`` hypotheses of each sentence, best first."""
    k, n_best, device = cfg.beam_size, cfg.n_best, src.device
    batch = src.size(0)
    memory = model.encode(src, src_lengths)
    # The first step decodes BOS once per sentence and its best 2k tokens seed the k beams (k identical
    # rows would cost k times the step for the same candidates); from the second step on, k rows each.
    state = model.init_state(memory)
    max_lens = _max_lengths(model, src_lengths, cfg)
    sents = torch.arange(batch, device=device)  # group -> sentence
    tokens = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(batch, 1, device=device)  # (n, rows per sentence)
    att_hist = src.new_zeros((batch, 0, src.size(1)), dtype=torch.float) if cfg.need_attention else None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    # (batch,) normalised score of each sentence's n_best-th best finished hypothesis (-inf: fewer yet)
    threshold = torch.full((batch,), float("-inf"), device=device)
    ended = torch.zeros(batch, dtype=torch.long, device=device)  # (batch,) hypotheses finished so far
    k_finished = cfg.stopping == "k_finished"
    ranks = torch.arange(2 * k, device=device)
    for t in range(int(max_lens.max())):
        n, g = scores.shape  # live sentences, rows per sentence (1 or k)
        logits, state, att = model.decode(tokens[:, -1:], memory, state, cfg.need_attention)
        at_max = (t + 1 >= max_lens[sents]).repeat_interleave(g)  # (n*g,) may only end
        logp = _log_probs(logits[:, -1], at_max)  # (n*g, V)
        vocab = logp.size(1)
        top_scores, top_idx = _top_candidates(logp, scores, min(2 * k, g * vocab))  # (n, 2k)
        if top_scores.size(1) < 2 * k:  # one row of a vocabulary under 2k tokens: -inf candidates fill up
            top_scores = F.pad(top_scores, (0, 2 * k - top_scores.size(1)), value=float("-inf"))
            top_idx = F.pad(top_idx, (0, 2 * k - top_idx.size(1)))
        origin, tok = top_idx // vocab, top_idx % vocab
        is_eos = tok == EOS_ID
        if att_hist is not None:
            att_hist = torch.cat([att_hist, att[:, -1:].float()], dim=1)
        # Finished hypotheses: EOS candidates ranked within the top k that enter their sentence's n-best.
        norm = top_scores / length_penalty(t + 1, cfg.length_penalty, cfg.length_normalization)
        ending = is_eos & (ranks < k) & torch.isfinite(top_scores)  # (n, 2k)
        if k_finished:
            ended[sents] += ending.sum(dim=1)
        entering = ending & (norm > threshold[sents][:, None])
        for grp, r in entering.nonzero().tolist():
            row, s = grp * g + int(origin[grp, r]), int(sents[grp])
            att = _trim_attention(att_hist[row] if att_hist is not None else None, t + 1, int(src_lengths[s]))
            hyp = Hypothesis(tokens[row, 1:].tolist(), float(norm[grp, r]), att)
            finished[s] = sorted([*finished[s], hyp], key=lambda h: -h.score)[:n_best]
            if len(finished[s]) == n_best:
                threshold[s] = finished[s][-1].score
        # Continue with the best k candidates that did not end.
        sel = (is_eos.long() * 2 * k + ranks).argsort(dim=1)[:, :k]  # (n, k)
        new_scores = top_scores.gather(1, sel)  # (n, k), best first
        rows = (torch.arange(n, device=device)[:, None] * g + origin.gather(1, sel)).view(-1)  # parent rows
        new_tok = tok.gather(1, sel).view(-1, 1)
        if k_finished:
            stop = ended[sents] >= k
        else:
            best = _best_reachable(
                new_scores[:, 0], t + 2, max_lens[sents], cfg.length_penalty, cfg.length_normalization
            )
            stop = best <= threshold[sents]
        done = stop | (t + 1 >= max_lens[sents])
        if done.all():
            break
        keep_groups = (~done).nonzero().squeeze(1)
        rows = rows.view(n, k)[keep_groups].view(-1)
        if model.shares_memory_rows:  # one memory row per sentence, however many beams
            if done.any():
                memory = select_rows(memory, keep_groups)
        elif g < k:  # the seeding step: k rows per sentence from here on
            memory = select_rows(memory, keep_groups.repeat_interleave(k))
        elif done.any():
            memory = select_rows(memory, (keep_groups[:, None] * k + torch.arange(k, device=device)).view(-1))
        state = select_rows(state, rows)
        tokens = torch.cat([tokens[rows], new_tok.view(n, k)[keep_groups].view(-1, 1)], dim=1)
        if att_hist is not None:
            att_hist = att_hist[rows]
        scores = new_scores[keep_groups]
        sents = sents[keep_groups]
    return finished


def generate(model: Seq2SeqModel, src: Tensor, src_lengths: Tensor, cfg: SearchConfig) -> list[list[Hypothesis]]:
    """Greedy search for ``beam_size`` 1, beam search otherwise."""
    if cfg.beam_size <= 1:
        return greedy_search(model, src, src_lengths, cfg)
    return beam_search(model, src, src_lengths, cfg)
