"""Search details that the overfitting tests do not pin down."""

from __future__ import annotations

import torch

from nmt.data.batching import pad_sequences
from nmt.data.tokenizer import EOS_ID
from nmt.models import build_model
from nmt.search import SearchConfig, beam_search, greedy_search, length_penalty

MODEL = {"arch": "transformer", "d_model": 32, "ff_dim": 64, "heads": 4, "encoder_layers": 1, "decoder_layers": 1}


def _setup():
    torch.manual_seed(0)
    model = build_model(MODEL, 30, 30, shared_vocab=True).eval()
    seqs = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    return model, pad_sequences(seqs, suffix=3), torch.tensor([len(s) + 1 for s in seqs])


def test_length_penalty_is_wu_et_al():
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(10, 0.6) == ((5 + 10) / 6) ** 0.6
    assert length_penalty(10, 0.0) == 1.0


def test_beam_returns_sorted_nbest_within_length_limit():
    model, src, lengths = _setup()
    cfg = SearchConfig(beam_size=4, n_best=4, max_len_a=1.0, max_len_b=2)
    out = beam_search(model, src, lengths, cfg)
    for hyps, n in zip(out, lengths.tolist()):
        assert 1 <= len(hyps) <= 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert all(len(h.tokens) + 1 <= n + 2 for h in hyps)
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)


def test_beam_score_is_normalised_log_probability():
    model, src, lengths = _setup()
    cfg = SearchConfig(beam_size=3, n_best=1, length_penalty=0.6)
    hyp = beam_search(model, src[:1], lengths[:1], cfg)[0][0]
    tgt = torch.tensor([[2] + hyp.tokens])
    with torch.no_grad():
        logits, _ = model(src[:1], lengths[:1], tgt)
    logp = torch.log_softmax(logits[0].float(), -1)
    total = sum(float(logp[i, t]) for i, t in enumerate(hyp.tokens + [3]))
    assert abs(hyp.score - total / length_penalty(len(hyp.tokens) + 1, 0.6)) < 1e-4


def test_beam_of_one_is_greedy():
    model, src, lengths = _setup()
    greedy = greedy_search(model, src, lengths, SearchConfig(beam_size=1))
    beam = beam_search(model, src, lengths, SearchConfig(beam_size=1, length_penalty=0.0))
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]


def test_beam_stops_a_sentence_once_it_has_k_finished_hypotheses():
    """fairseq's stopping rule. The previous rule waited until no alive hypothesis could beat the finished
    ones after length normalisation, which ran nearly every sentence to its length limit."""
    model, src, lengths = _setup()
    real_decode, calls = model.decode, []

    def decode(prev, memory, state, need_attention=False):
        logits, state, att = real_decode(prev, memory, state, need_attention)
        scripted = torch.full_like(logits, -1e4)
        scripted[..., EOS_ID], scripted[..., 7], scripted[..., 8] = 0.0, -0.5, -0.7
        calls.append(prev.size(0))
        return scripted, state, att

    model.decode = decode
    cfg = SearchConfig(beam_size=2, n_best=2, length_penalty=1.0, max_len_b=50)
    hyps = beam_search(model, src[:1], lengths[:1], cfg)[0]
    # step 1: EOS is the best candidate (1 finished), 7 and 8 go on; step 2: both end in EOS -> done
    assert len(calls) == 2
    assert [h.tokens for h in hyps] == [[], [7]]
