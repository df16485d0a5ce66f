"""Metrics (nmt/metrics.py): tokenized BLEU beside the papers', BLEU by source length, paired bootstrap."""

from __future__ import annotations

from conftest import read_pairs

from nmt.evaluation.metrics import bleu_by_length, paired_bootstrap, tokenized_bleu


def test_tokenized_bleu_splits_german_compounds_and_says_so() -> None:
    refs = ["Ein Mann fährt ein Hochgeschwindigkeits-Boot ."]
    hyps = ["Ein Mann fährt ein Hochgeschwindigkeits-Schiff ."]
    de, label = tokenized_bleu(hyps, refs, "de")
    en, _ = tokenized_bleu(hyps, refs, "en")
    # Split, "Hochgeschwindigkeits ##AT##-##AT##" matches; unsplit, the whole compound is one wrong token.
    assert de > en
    assert "tokenized BLEU" in label and "compounds split" in label and "not sacreBLEU" in label


def test_bleu_by_length_puts_every_sentence_in_one_bucket() -> None:
    de, en = read_pairs("valid", 200)
    buckets = bleu_by_length(de, en, en, [10, 15])
    assert [b["bucket"] for b in buckets] == ["1-10", "11-15", "16+"]
    assert sum(b["sentences"] for b in buckets) == 200
    assert all(b["bleu"] == 100.0 for b in buckets if b["sentences"])


def test_paired_bootstrap_against_baseline() -> None:
    _, en = read_pairs("valid", 300)
    base = [" ".join(s.split()[:-1]) for s in en]  # the last word of every reference dropped
    close = [en[0], " ".join(en[1].split()[:-2]), *base[2:]]  # one line better, one worse than base
    worse = [" ".join(s.split()[:-2]) for s in en]
    results, signature = paired_bootstrap({"close": close, "base": base, "worse": worse}, en, "base", 200)
    assert results["base"].bleu_p is None  # the baseline has no p-value
    assert results["close"].bleu_p > 0.05  # a difference within the noise
    assert results["worse"].bleu_p < 0.05 and results["worse"].chrf_p < 0.05
    assert results["worse"].bleu_ci > 0
    assert "bs:200" in signature
