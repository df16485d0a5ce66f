"""Greedy and beam search over the shared model interface (every architecture, no per-model copy).

Both searches are batched and drop sentences from the batch as soon as they are finished, so a batch
costs what its longest *unfinished* sentence costs. Beam search follows fairseq's bookkeeping: at each
step take the top 2k candidates, move those that end in EOS (within the top k) to the finished list
(keeping its k best), continue with the best k that do not, and stop a sentence once it has k finished
hypotheses or reaches its length limit. Finished hypotheses are ranked by log-probability divided by the
length penalty of Wu et al. (2016), lp(Y) = ((5 + |Y|) / 6) ** alpha (alpha = 0.6 in Vaswani et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.models.interface import Seq2SeqModel, select_rows


@dataclass
class Hypothesis:
    """One output: token ids without BOS/EOS, its (length-normalised) score, and optional attention.

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
    need_attention: bool = False


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """lp(Y) = ((5 + |Y|) / 6) ** alpha."""
    return ((5 + length) / 6) ** alpha


def _max_lengths(model: Seq2SeqModel, src_lengths: Tensor, cfg: SearchConfig) -> Tensor:
    """Per-sentence output limit a * |src| + b (EOS included), within the decoder's position limit."""
    limit = (cfg.max_len_a * src_lengths.float() + cfg.max_len_b).long().clamp(min=1)
    return limit.clamp(max=model.max_positions) if model.max_positions else limit


def _block_specials(logp: Tensor) -> None:
    logp[:, PAD_ID] = float("-inf")
    logp[:, BOS_ID] = float("-inf")


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
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
        _block_specials(logp)
        tok = logp.argmax(-1)
        tok = torch.where(t + 1 >= max_lens[rows], torch.full_like(tok, EOS_ID), tok)
        scores[rows] += logp.gather(1, tok[:, None]).squeeze(1)
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


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: Tensor, src_lengths: Tensor, cfg: SearchConfig) -> list[list[Hypothesis]]:
    """Batched beam search; returns the ``n_best`` hypotheses of each sentence, best first."""
    k, device = cfg.beam_size, src.device
    batch = src.size(0)
    memory = model.encode(src, src_lengths)
    memory = select_rows(memory, torch.arange(batch, device=device).repeat_interleave(k))
    state = model.init_state(memory)
    max_lens = _max_lengths(model, src_lengths, cfg)
    sents = torch.arange(batch, device=device)  # group -> sentence
    tokens = torch.full((batch * k, 1), BOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")
    att_hist = src.new_zeros((batch * k, 0, src.size(1)), dtype=torch.float) if cfg.need_attention else None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    ranks = torch.arange(2 * k, device=device)
    for t in range(int(max_lens.max())):
        n = sents.numel()
        logits, state, att = model.decode(tokens[:, -1:], memory, state, cfg.need_attention)
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (n*k, V)
        _block_specials(logp)
        vocab = logp.size(-1)
        at_max = (t + 1 >= max_lens[sents]).repeat_interleave(k)
        if at_max.any():  # sentences at their length limit may only end
            forced = torch.full_like(logp[at_max], float("-inf"))
            forced[:, EOS_ID] = logp[at_max, EOS_ID]
            logp[at_max] = forced
        cand = (scores.view(-1, 1) + logp).view(n, k * vocab)
        top_scores, top_idx = cand.topk(2 * k, dim=1)  # (n, 2k)
        origin, tok = top_idx // vocab, top_idx % vocab
        is_eos = tok == EOS_ID
        if att_hist is not None:
            att_hist = torch.cat([att_hist, att[:, -1:].float()], dim=1)
        # Finished hypotheses: EOS candidates ranked within the top k.
        fin = (is_eos & (ranks < k) & torch.isfinite(top_scores)).nonzero().tolist()
        for g, r in fin:
            row, s = g * k + int(origin[g, r]), int(sents[g])
            norm = float(top_scores[g, r]) / length_penalty(t + 1, cfg.length_penalty)
            if len(finished[s]) < k or norm > finished[s][-1].score:
                att = _trim_attention(att_hist[row] if att_hist is not None else None, t + 1, int(src_lengths[s]))
                finished[s] = sorted(
                    [*finished[s], Hypothesis(tokens[row, 1:].tolist(), norm, att)], key=lambda h: -h.score
                )[:k]
        # Continue with the best k candidates that did not end.
        sel = (is_eos.long() * 2 * k + ranks).argsort(dim=1)[:, :k]  # (n, k)
        new_scores = top_scores.gather(1, sel)
        rows = (torch.arange(n, device=device)[:, None] * k + origin.gather(1, sel)).view(-1)
        new_tok = tok.gather(1, sel).view(-1, 1)
        # A sentence is done once it has k finished hypotheses (fairseq's rule). A longer hypothesis could
        # in principle still win after length normalisation, but waiting until none can (best alive score
        # over lp(max_len)) runs nearly every sentence to its length limit and costs ~2x the decoding time.
        n_finished = torch.tensor([len(finished[s]) for s in sents.tolist()], device=device)
        done = (n_finished >= k) | (t + 1 >= max_lens[sents])
        if done.all():
            break
        keep_groups = (~done).nonzero().squeeze(1)
        keep_rows = (keep_groups[:, None] * k + torch.arange(k, device=device)).view(-1)
        rows = rows.view(n, k)[keep_groups].view(-1)
        if done.any():
            memory = select_rows(memory, keep_rows)
        state = select_rows(state, rows)
        tokens = torch.cat([tokens[rows], new_tok.view(n, k)[keep_groups].view(-1, 1)], dim=1)
        if att_hist is not None:
            att_hist = att_hist[rows]
        scores = new_scores[keep_groups]
        sents = sents[keep_groups]
    return [sorted(h, key=lambda h: -h.score)[: cfg.n_best] for h in finished]


def generate(model: Seq2SeqModel, src: Tensor, src_lengths: Tensor, cfg: SearchConfig) -> list[list[Hypothesis]]:
    """Greedy search for ``beam_size`` 1, beam search otherwise."""
    if cfg.beam_size <= 1:
        return greedy_search(model, src, src_lengths, cfg)
    return beam_search(model, src, src_lengths, cfg)
