"""Corpus-level BLEU and chrF with sacrebleu, reported with their signatures.

The headline is detokenized sacreBLEU (the ``13a`` tokenizer applied by sacrebleu itself to detokenized
output), which is comparable across papers and toolkits. Other sacrebleu tokenizers can be chosen for
languages that need them (e.g. ``zh``, ``ja-mecab``); the signature always says which one was used.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from nmt.data.pretokenize import MosesPretokenizer


@dataclass
class CorpusScore:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_details: str  # sacrebleu's one-line summary (n-gram precisions, brevity penalty, lengths)
    sentences: int
    tokenized_bleu: float | None = None  # word-level (Moses) set-ups: BLEU on Moses tokens, as the papers
    tokenized_bleu_label: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _check(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references: nothing may be dropped")


def corpus_bleu(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> float:
    """BLEU only (used for validation during training)."""
    _check(hypotheses, references)
    return BLEU(tokenize=tokenize).corpus_score(hypotheses, [references]).score


def corpus_scores(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> CorpusScore:
    """BLEU and chrF of detokenized hypotheses against one reference each, with signatures."""
    _check(hypotheses, references)
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return CorpusScore(
        bleu=round(b.score, 2),
        chrf=round(c.score, 2),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        bleu_details=str(b),
        sentences=len(hypotheses),
    )


def tokenized_bleu(hypotheses: list[str], references: list[str], lang: str) -> tuple[float, str]:
    """BLEU on tokenized text, the way the attention papers scored (for comparing with them only).

    Both sides are split with sacrebleu's 13a tokenizer (mteval-v13a, close to the Moses tokenizer the
    papers used) and, for German output, hyphenated compounds are split as in the Transformer paper's
    scoring script (``a-b`` -> ``a ##AT##-##AT## b``); BLEU is then computed on those tokens as
    multi-bleu.perl does. Returns the score and a label that says how it was computed.
    """
    _check(hypotheses, references)
    tok = Tokenizer13a()

    def prepare(line: str) -> str:
        out = tok(line.strip())
        return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", out) if lang == "de" else out

    bleu = BLEU(tokenize="none", force=True)
    score = bleu.corpus_score([prepare(h) for h in hypotheses], [[prepare(r) for r in references]]).score
    return round(score, 2), tokenized_bleu_label(lang)


def moses_tokenized_bleu(hypotheses: list[str], references: list[str], pretokenizer: MosesPretokenizer) -> float:
    """BLEU on Moses tokens of both sides, as multi-bleu.perl on the papers' tokenized text (for comparing
    with the word-level papers only; the headline stays sacreBLEU on detokenized text)."""
    _check(hypotheses, references)
    hyps = [pretokenizer.tokenize(h) for h in hypotheses]
    refs = [pretokenizer.tokenize(r) for r in references]
    return round(BLEU(tokenize="none", force=True).corpus_score(hyps, [refs]).score, 2)


MOSES_BLEU_LABEL = "tokenized BLEU (Moses tokens, multi-bleu.perl style; for comparing with papers only, not sacreBLEU)"


def tokenized_bleu_label(lang: str) -> str:
    """How :func:`tokenized_bleu` scores output in ``lang``, for tables and logs."""
    how = "13a tokens" + (", compounds split" if lang == "de" else "")
    return f"tokenized BLEU ({how}; for comparing with papers only, not sacreBLEU)"


_COMPOUND = re.compile(r"(\S)-(\S)")


def bleu_by_length(
    sources: list[str], hypotheses: list[str], references: list[str], edges: list[int]
) -> list[dict[str, Any]]:
    """Corpus BLEU of the sentences in each source-length bucket (Bahdanau et al. 2014, Fig. 2).

    Lengths are whitespace words of the source; ``edges`` [10, 20] gives buckets 1-10, 11-20 and 21+.
    Every sentence falls in exactly one bucket; empty buckets are reported with 0 sentences and no BLEU.
    """
    _check(hypotheses, references)
    bounds = [0, *sorted(edges), None]
    lengths = [len(s.split()) for s in sources]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = [i for i, n in enumerate(lengths) if n > lo and (hi is None or n <= hi)]
        label = f"{lo + 1}-{hi}" if hi is not None else f"{lo + 1}+"
        bleu = corpus_bleu([hypotheses[i] for i in idx], [references[i] for i in idx]) if idx else None
        out.append({"bucket": label, "sentences": len(idx), "bleu": None if bleu is None else round(bleu, 2)})
    return out


@dataclass
class LengthDrop:
    """How much BLEU one system loses from short to long test sentences, with its bootstrap samples."""

    short_bleu: float  # corpus BLEU of the sentences of at most ``long_words`` source words
    long_bleu: float  # ... of the longer ones
    samples: np.ndarray  # (n,) the drop on each bootstrap resample of the test set (shared by all systems)

    @property
    def drop(self) -> float:
        return self.short_bleu - self.long_bleu


def long_sentences(sources: list[str], long_words: int) -> np.ndarray:
    """(N,) True for the sources of more than ``long_words`` whitespace words: the long side of a length claim."""
    return np.array([len(s.split()) > long_words for s in sources])


def length_drops(
    sources: list[str],
    systems: dict[str, list[str]],
    references: list[str],
    long_words: int,
    samples: int = 1000,
    tokenize: str = "13a",
    seed: int = 12345,
) -> dict[str, LengthDrop]:
    """BLEU on short minus BLEU on long sentences (more than ``long_words`` source words) per system:
    the quantity behind Bahdanau et al.'s Fig. 2 claim that the encoder-decoder degrades on long
    sentences. Every system is scored on the same bootstrap resamples of the test sentences (as
    sacrebleu's paired bootstrap, whose default seed this is), so drops of two systems can be compared
    sample by sample (:func:`bootstrap_p`)."""
    long = long_sentences(sources, long_words)
    if long.all() or not long.any():
        raise ValueError(f"long_words={long_words} puts every test sentence on one side: no drop to measure")
    idx = np.random.default_rng(seed).choice(len(sources), size=(samples, len(sources)), replace=True)
    metric = BLEU(tokenize=tokenize)
    out = {}
    whole = np.arange(len(sources))[None]  # (1, N): the test set itself
    short_w, long_w = (~long).astype(np.float64), long.astype(np.float64)
    for name, hyps in systems.items():
        _check(hyps, references)
        stats = np.array(metric._extract_corpus_statistics(hyps, [references]), dtype=np.float64)  # (N, k)
        out[name] = LengthDrop(
            float(_subset_bleu(metric, stats, whole, short_w)[0]),
            float(_subset_bleu(metric, stats, whole, long_w)[0]),
            _subset_bleu(metric, stats, idx, short_w) - _subset_bleu(metric, stats, idx, long_w),
        )
    return out


def _subset_bleu(metric: BLEU, stats: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Corpus BLEU of each resample (rows: (n, N) sentence indices; stats: (N, k) sacrebleu sufficient
    statistics per sentence) over the sentences whose ``weights`` (N,) is 1: (n,)."""
    totals = (stats[rows] * weights[rows][..., None]).sum(1)  # (n, k)
    return np.array([metric._compute_score_from_stats(list(t)).score for t in totals])


def bootstrap_p(samples: np.ndarray, observed: float) -> float:
    """Two-sided bootstrap p-value of ``observed`` against zero: how often the resampled statistic,
    centred on its mean, lies as far from it (sacrebleu's recipe, with its +1 correction)."""
    centred = np.abs(samples - samples.mean())
    return float((np.sum(centred >= abs(observed)) + 1) / (len(samples) + 1))


@dataclass
class SystemSignificance:
    """Bootstrap statistics of one system's test scores; p-values against the baseline (None for it)."""

    bleu_mean: float
    bleu_ci: float
    bleu_p: float | None
    chrf_mean: float
    chrf_ci: float
    chrf_p: float | None


def paired_bootstrap(
    systems: dict[str, list[str]], references: list[str], baseline: str, samples: int = 1000, tokenize: str = "13a"
) -> tuple[dict[str, SystemSignificance], str]:
    """sacrebleu's paired bootstrap resampling (Koehn 2004) of BLEU and chrF against ``baseline``.

    Gives each system its bootstrap mean and 95% confidence half-width, and the p-value of the
    difference to the baseline. Returns those and the BLEU signature extended with the test settings.
    """
    if baseline not in systems:
        raise ValueError(f"baseline {baseline!r} is not one of the systems {sorted(systems)}")
    for hyps in systems.values():
        _check(hyps, references)
    names = [baseline, *(n for n in systems if n != baseline)]
    test = PairedTest(
        [(n, systems[n]) for n in names],
        {"BLEU": BLEU(tokenize=tokenize), "chrF": CHRF()},
        [references],
        test_type="bs",
        n_samples=samples,
    )
    signatures, results = test()
    bleu_key, chrf_key = (k for k in results if k != "System")
    out = {}
    for i, name in enumerate(names):
        b, c = results[bleu_key][i], results[chrf_key][i]
        out[name] = SystemSignificance(
            round(float(b.mean), 2),
            round(float(b.ci), 2),
            None if b.p_value is None else float(b.p_value),
            round(float(c.mean), 2),
            round(float(c.ci), 2),
            None if c.p_value is None else float(c.p_value),
        )
    return out, str(signatures[bleu_key])
