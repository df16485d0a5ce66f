"""Search: details the overfitting tests do not pin down, and properties that hold for any model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import model_cfg

from nmt.data.batching import pad_sequences
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.decoding import search
from nmt.decoding.search import SearchConfig, beam_search, greedy_search, length_penalty
from nmt.errors import ConfigError
from nmt.models import Seq2SeqModel, build_model

MODEL = model_cfg("transformer", d_model=32, ff_dim=64, heads=4, encoder_layers=1, decoder_layers=1)


def _setup():
    torch.manual_seed(0)
    model = build_model(MODEL, 30, 30, shared_vocab=True).eval()
    seqs = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    return model, pad_sequences(seqs, suffix=3), torch.tensor([len(s) + 1 for s in seqs])


def test_length_penalty_is_wu_et_al():
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(10, 0.6) == ((5 + 10) / 6) ** 0.6
    assert length_penalty(10, 0.0) == 1.0
    assert length_penalty(10, 0.6, "length") == 10**0.6  # fairseq's and CTranslate2's |Y| ** alpha


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


def _scripted(model: Seq2SeqModel, table: dict[tuple[int, ...], dict[int, float]]) -> list[int]:
    """Make ``model`` decode with fixed probabilities per target prefix; the state is the prefix itself.

    table maps a prefix (tokens after BOS) to {token: probability}; other tokens get ~0. Returns a list that
    records how many rows each decoder call saw.
    """
    calls: list[int] = []

    def decode(prev, memory, state, need_attention=False):
        state = torch.cat([state, prev], dim=1)  # (B, T) every token so far, BOS first
        logits = torch.full((prev.size(0), 1, 30), -1e4)
        for row, prefix in enumerate(state[:, 1:].tolist()):
            for tok, p in table.get(tuple(prefix), {}).items():
                logits[row, 0, tok] = math.log(p)
        calls.append(prev.size(0))
        return logits, state, None

    model.decode = decode
    model.init_state = lambda memory: torch.empty((memory.states.size(0), 0), dtype=torch.long)
    return calls


def test_beam_does_not_stop_on_k_poor_early_finishes():
    """The rule "stop at k finished hypotheses" returned the empty output (p 0.3) here: two early finishes
    filled the beam of 2 while the live hypothesis '6 7' went on to win with p 0.56."""
    model, src, lengths = _setup()
    table = {(): {EOS_ID: 0.3, 6: 0.7}, (6,): {EOS_ID: 0.2, 7: 0.8}, (6, 7): {EOS_ID: 1.0}}
    _scripted(model, table)
    hyps = beam_search(model, src[:1], lengths[:1], SearchConfig(beam_size=2, n_best=2, length_penalty=0.0))[0]
    assert [h.tokens for h in hyps] == [[6, 7], []]
    assert hyps[0].score == pytest.approx(math.log(0.56), abs=1e-5)


def test_beam_stops_once_no_live_hypothesis_can_win():
    """The search still ends as soon as it may. EOS first with p 0.6, then '7' (0.3) and '8' (0.1) live on."""
    model, src, lengths = _setup()
    calls = _scripted(model, {(): {EOS_ID: 0.6, 7: 0.3, 8: 0.1}, (7,): {EOS_ID: 1.0}, (8,): {EOS_ID: 1.0}})
    beam_search(model, src[:1], lengths[:1], SearchConfig(beam_size=2, length_penalty=0.0, max_len_b=50))
    assert len(calls) == 1  # alpha 0: a live score only falls, and log 0.3 < log 0.6
    calls.clear()
    # alpha 1: '7' could still win if it ran to the length limit (log 0.3 / lp(max) > log 0.6 / lp(1)), so
    # the search goes on until '7 EOS' has finished below the best.
    hyps = beam_search(model, src[:1], lengths[:1], SearchConfig(beam_size=2, length_penalty=1.0, max_len_b=50))
    assert len(calls) == 2 and hyps[0][0].tokens == []


def test_beam_decodes_the_first_step_once_per_sentence():
    """BOS starts all k beams alike: the first step runs one row per sentence and seeds the k beams from
    its best tokens; later steps run k rows per live sentence."""
    model, src, lengths = _setup()
    calls = _scripted(
        model, {(): {6: 0.5, 7: 0.3, 8: 0.2}, (6,): {EOS_ID: 1.0}, (7,): {EOS_ID: 1.0}, (8,): {EOS_ID: 1.0}}
    )
    hyps = beam_search(model, src[:2], lengths[:2], SearchConfig(beam_size=3, n_best=3, length_penalty=0.0))
    assert calls == [2, 6]
    assert [[h.tokens for h in sent] for sent in hyps] == [[[6], [7], [8]]] * 2
    assert [h.score for h in hyps[0]] == pytest.approx([math.log(p) for p in (0.5, 0.3, 0.2)], abs=1e-5)


ARCHS = {
    "transformer": MODEL,
    "rnnsearch": model_cfg("rnnsearch", embed_dim=16, hidden_dim=16, attention_dim=16, maxout_dim=16),
    "rnnencdec": model_cfg("rnnencdec", embed_dim=16, hidden_dim=16, maxout_dim=16),
    "luong": model_cfg("luong", embed_dim=16, hidden_dim=16, layers=1),
}


def _random_model(arch: str, seed: int, vocab: int) -> Seq2SeqModel:
    """A random model with peaked output distributions (weights scaled up), the hard case for search."""
    torch.manual_seed(seed)
    model = build_model({**ARCHS[arch], "dropout": 0.0}, vocab, vocab, shared_vocab=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _random_sources(seed: int, vocab: int, n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seqs = [
        torch.randint(4, vocab, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    return pad_sequences(seqs, suffix=EOS_ID), torch.tensor([len(s) + 1 for s in seqs])


def _normalised(
    model: Seq2SeqModel, src: torch.Tensor, length: torch.Tensor, tokens: list[int], alpha: float, form: str = "wu"
) -> float:
    """Teacher-forced log-probability of ``tokens`` + EOS divided by the length penalty."""
    tgt = torch.tensor([[BOS_ID, *tokens]])
    with torch.no_grad():
        logits, _ = model(src, length, tgt)
    logp = torch.log_softmax(logits[0].float(), -1)
    total = sum(float(logp[i, t]) for i, t in enumerate([*tokens, EOS_ID]))
    return total / length_penalty(len(tokens) + 1, alpha, form)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize(("alpha", "form"), [(0.0, "wu"), (0.6, "wu"), (1.0, "wu"), (1.0, "length")])
def test_stopping_early_never_changes_the_result(arch, alpha, form, monkeypatch):
    """On random models, for beam sizes 1-5: the search that stops early returns exactly what the same beam
    returns when every sentence runs to its length limit (nothing that could win is thrown away)."""
    for seed in range(3):
        model = _random_model(arch, seed, vocab=12)
        src, lengths = _random_sources(seed, vocab=12)
        for k in range(1, 6):
            cfg = SearchConfig(
                beam_size=k,
                n_best=min(k, 2),
                length_penalty=alpha,
                max_len_a=1.0,
                max_len_b=4,
                length_normalization=form,
            )
            early = beam_search(model, src, lengths, cfg)
            with monkeypatch.context() as m:
                m.setattr(search, "_best_reachable", lambda alive, *_: torch.zeros_like(alive))
                full = beam_search(model, src, lengths, cfg)
            for e, f in zip(early, full):
                assert [h.tokens for h in e] == [h.tokens for h in f], (arch, seed, k)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize(("alpha", "form"), [(0.0, "wu"), (0.6, "wu"), (1.0, "wu"), (1.0, "length")])
def test_wide_beam_equals_exhaustive_search(arch, alpha, form):
    """Tiny vocabulary (UNK, EOS and three words), outputs of at most 4 tokens with EOS: 85 possible outputs,
    all scored by a teacher-forced pass. A beam wide enough to hold every candidate must find the best."""
    vocab, max_len = 7, 4
    words = [UNK_ID, 4, 5, 6]
    model = _random_model(arch, 0, vocab)
    src, lengths = _random_sources(1, vocab, n=3)
    cfg = SearchConfig(beam_size=100, length_penalty=alpha, max_len_a=0.0, max_len_b=max_len, length_normalization=form)
    found = beam_search(model, src, lengths, cfg)
    for i, hyps in enumerate(found):
        one_src, one_len = src[i : i + 1, : int(lengths[i])], lengths[i : i + 1]
        outputs = [list(o) for n in range(max_len) for o in itertools.product(words, repeat=n)]
        best = max(_normalised(model, one_src, one_len, o, alpha, form) for o in outputs)
        assert hyps[0].score == pytest.approx(best, abs=1e-4)
        assert _normalised(model, one_src, one_len, hyps[0].tokens, alpha, form) == pytest.approx(best, abs=1e-4)


def test_search_settings_come_from_the_checkpoint_unless_given():
    """nmt-evaluate / nmt-translate decode as the checkpoint's experiment does (Vaswani et al.: beam 4,
    alpha 0.6, |x| + 50); options given on the command line win; n_best is never taken from the run."""
    stored = {"beam_size": 4, "length_penalty": 0.6, "max_len_a": 1.0, "max_len_b": 50, "n_best": 4}
    given = {"beam_size": None, "length_penalty": None, "max_len_a": None, "max_len_b": None, "n_best": 1}
    assert SearchConfig.from_cfg(given, stored) == SearchConfig(
        beam_size=4, length_penalty=0.6, max_len_a=1.0, max_len_b=50
    )
    given["length_penalty"] = 0.0
    assert SearchConfig.from_cfg(given, stored).length_penalty == 0.0
    assert SearchConfig.from_cfg(given, None) == SearchConfig(length_penalty=0.0)  # old checkpoints: defaults


@pytest.mark.parametrize(
    ("vocab", "g", "k"), [(8000, 5, 10), (8003, 5, 10), (8000, 1, 1), (130, 2, 4), (70, 1, 2), (30, 1, 2)]
)
def test_candidates_from_vocabulary_blocks_equal_a_topk_over_all_sums(vocab, g, k):
    """The block-maximum candidate search returns exactly the top k of every score + log-probability sum,
    with -inf rows (a length limit) and columns after the last whole block among them."""
    gen = torch.Generator().manual_seed(vocab + g + k)
    n = 7
    logp = torch.randn(n * g, vocab, generator=gen, dtype=torch.float64).float().log_softmax(-1)
    logp[3, :] = float("-inf")
    logp[3, EOS_ID] = -0.5
    logp[:, -1] = 1.0  # the best column sits after the last whole block where the vocabulary has such a tail
    scores = -torch.rand(n, g, generator=gen) * 3
    values, index = search._top_candidates(logp, scores, k)
    expected = (scores.reshape(-1, 1) + logp).view(n, g * vocab).topk(k, dim=1)
    assert torch.equal(values, expected.values)
    finite = torch.isfinite(expected.values)  # which of several -inf candidates comes first is arbitrary
    assert torch.equal(index[finite], expected.indices[finite])


def test_beams_reading_one_memory_row_per_sentence_equal_beams_with_their_own_copy():
    """A Transformer's beams read their sentence's memory row (no copy per beam): same hypotheses, scores
    and attention as with one memory row per beam, over sentences that finish at different steps."""
    model = _random_model("transformer", 0, vocab=12)
    src, lengths = _random_sources(2, vocab=12, n=6)
    cfg = SearchConfig(beam_size=4, n_best=2, length_penalty=0.6, max_len_a=1.0, max_len_b=4, need_attention=True)
    shared = beam_search(model, src, lengths, cfg)
    model.shares_memory_rows = False
    copied = beam_search(model, src, lengths, cfg)
    for a, b in zip(shared, copied, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
        for ha, hb in zip(a, b):
            torch.testing.assert_close(ha.attention, hb.attention)


def _fairseq_beam(
    model: Seq2SeqModel, src: torch.Tensor, length: torch.Tensor, k: int, alpha: float, form: str, max_len: int
):
    """fairseq's / CTranslate2's beam search for one sentence, written out plainly: each step the best 2k
    extensions of the k live hypotheses; those ending in EOS within the top k finish, the best k others
    live on; the sentence stops once k hypotheses have finished (or at its length limit)."""
    live, finished = [([], 0.0)], []
    for t in range(max_len):
        candidates = []
        for tokens, score in live:
            with torch.no_grad():
                logits, _ = model(src, length, torch.tensor([[BOS_ID, *tokens]]))
            logp = torch.log_softmax(logits[0, -1].float(), -1)
            logp[PAD_ID] = logp[BOS_ID] = float("-inf")
            if t + 1 >= max_len:  # at the limit only EOS may follow
                logp[torch.arange(logp.numel()) != EOS_ID] = float("-inf")
            candidates += [(score + float(logp[v]), tokens, v) for v in range(logp.numel()) if logp[v] > float("-inf")]
        candidates = sorted(candidates, key=lambda c: -c[0])[: 2 * k]
        finished += [(s / length_penalty(t + 1, alpha, form), toks) for s, toks, v in candidates[:k] if v == EOS_ID]
        live = [(toks + [v], s) for s, toks, v in candidates if v != EOS_ID][:k]
        if len(finished) >= k or t + 1 >= max_len:
            return [toks for _, toks in sorted(finished, key=lambda f: -f[0])]
    raise AssertionError("unreachable")


@pytest.mark.parametrize("arch", ["transformer", "rnnsearch"])
@pytest.mark.parametrize(("alpha", "form"), [(0.0, "wu"), (1.0, "wu"), (1.0, "length")])
def test_k_finished_stopping_is_fairseqs_rule(arch, alpha, form):
    """search.stopping=k_finished (fairseq's and CTranslate2's rule; with length_normalization=length,
    their search) returns what the plain one-sentence search above returns, for every sentence of a
    batch."""
    for seed in range(2):
        model = _random_model(arch, seed, vocab=12)
        src, lengths = _random_sources(seed, vocab=12)
        for k in (2, 4):
            cfg = SearchConfig(
                beam_size=k, n_best=2, length_penalty=alpha, max_len_a=1.0, max_len_b=4, length_normalization=form
            )
            batched = beam_search(model, src, lengths, SearchConfig(**{**vars(cfg), "stopping": "k_finished"}))
            limits = cfg.output_limits(lengths)
            for i, hyps in enumerate(batched):
                one_src, one_len = src[i : i + 1, : int(lengths[i])], lengths[i : i + 1]
                expected = _fairseq_beam(model, one_src, one_len, k, alpha, form, int(limits[i]))
                assert [h.tokens for h in hyps] == expected[:2], (arch, seed, k, i)


def test_stopping_rule_and_length_normalization_are_options_with_clear_errors():
    """search.stopping defaults to the exact rule, comes from the checkpoint's run unless given (as does
    search.length_normalization), and a value that does not exist names the option and the choices."""
    assert SearchConfig.from_cfg({}, None).stopping == "exact"
    stored = {"stopping": "k_finished", "length_normalization": "length"}
    assert SearchConfig.from_cfg({"stopping": None, "length_normalization": None}, stored) == SearchConfig(**stored)
    assert SearchConfig.from_cfg({"stopping": "exact"}, stored).stopping == "exact"
    assert SearchConfig.from_cfg({"stopping": "k_finished"}).stopping == "k_finished"
    assert "stopping: k_finished" in SearchConfig(stopping="k_finished").describe()
    with pytest.raises(ConfigError, match="search.stopping=first: give one of exact, k_finished"):
        SearchConfig.from_cfg({"stopping": "first"})
    assert "(|Y|^alpha)" in SearchConfig(length_normalization="length").describe()
    with pytest.raises(ConfigError, match="search.length_normalization=avg: give one of wu, length"):
        SearchConfig.from_cfg({"length_normalization": "avg"})
