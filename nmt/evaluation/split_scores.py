"""Score a translator on an evaluation set: decode every line, sacreBLEU BLEU / chrF, write both out.

Used by ``nmt-train`` (its test splits after training) and ``nmt-evaluate``, so both write the same
``<split>.hyp`` (line N translates source line N) and ``<split>.json`` (scores with their signatures).
"""

from __future__ import annotations

import json
from pathlib import Path

from nmt.data.prepare import EvalSet
from nmt.decoding.translator import Translator
from nmt.evaluation.metrics import MOSES_BLEU_LABEL, CorpusScore, corpus_scores, moses_tokenized_bleu


def evaluate_set(translator: Translator, eval_set: EvalSet, out_dir: Path, tokenize: str = "13a") -> CorpusScore:
    """Translate every line of ``eval_set``, score it, write hypotheses and scores, return the scores."""
    hyps = translator.translate(eval_set.sources)
    score = corpus_scores(hyps, eval_set.references, tokenize=tokenize)
    if translator.tgt_tok.pretokenizer is not None:  # a word-level set-up: also the papers' tokenized BLEU
        score.tokenized_bleu = moses_tokenized_bleu(hyps, eval_set.references, translator.tgt_tok.pretokenizer)
        score.tokenized_bleu_label = MOSES_BLEU_LABEL
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{eval_set.name}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (out_dir / f"{eval_set.name}.json").write_text(json.dumps(score.to_dict(), indent=1))
    return score


def print_score(split: str, score: CorpusScore) -> None:
    """The scores of one split, with both signatures, as the entry points print them."""
    print(f"{split}: BLEU = {score.bleu:.2f}  chrF = {score.chrf:.2f}  ({score.sentences} sentences)")
    print(f"  {score.bleu_details}")
    print(f"  BLEU signature: {score.bleu_signature}")
    print(f"  chrF signature: {score.chrf_signature}")
    if score.tokenized_bleu is not None:
        print(f"  {score.tokenized_bleu_label}: {score.tokenized_bleu:.2f}")
