"""Corpus-level BLEU and chrF with sacrebleu, reported with their signatures.

The headline is detokenized sacreBLEU (the ``13a`` tokenizer applied by sacrebleu itself to detokenized
output), which is comparable across papers and toolkits. Other sacrebleu tokenizers can be chosen for
languages that need them (e.g. ``zh``, ``ja-mecab``); the signature always says which one was used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class CorpusScore:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_details: str  # sacrebleu's one-line summary (n-gram precisions, brevity penalty, lengths)
    sentences: int

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
