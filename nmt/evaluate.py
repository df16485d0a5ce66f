"""``nmt-evaluate``: decode a split with a checkpoint and score it with sacreBLEU BLEU and chrF.

    nmt-evaluate checkpoint=runs/multi30k_de_en_transformer_small/best.pt split=test2016 beam_size=5

Writes ``<split>.hyp`` (one detokenized hypothesis per source line, in order) and ``<split>.json``
(scores with sacrebleu signatures) to ``output_dir`` (default: ``eval/`` beside the checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from nmt.cli import report_user_errors, setup_cpu
from nmt.data.prepare import EvalSet, load_eval_set
from nmt.metrics import MOSES_BLEU_LABEL, CorpusScore, corpus_scores, moses_tokenized_bleu
from nmt.paths import CONFIG_DIR
from nmt.translator import Translator, load_translator, search_origin


def evaluate_set(translator: Translator, eval_set: EvalSet, out_dir: Path, tokenize: str = "13a") -> CorpusScore:
    """Translate every line of ``eval_set``, score it, write hypotheses and scores, return the scores."""
    hyps = translator.translate_text(eval_set.sources)
    score = corpus_scores(hyps, eval_set.references, tokenize=tokenize)
    if translator.tgt_tok.pretokenizer is not None:  # a word-level set-up: also the papers' tokenized BLEU
        score.tokenized_bleu = moses_tokenized_bleu(hyps, eval_set.references, translator.tgt_tok.pretokenizer)
        score.tokenized_bleu_label = MOSES_BLEU_LABEL
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{eval_set.name}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (out_dir / f"{eval_set.name}.json").write_text(json.dumps(score.to_dict(), indent=1))
    return score


def print_score(split: str, score: CorpusScore) -> None:
    print(f"{split}: BLEU = {score.bleu:.2f}  chrF = {score.chrf:.2f}  ({score.sentences} sentences)")
    print(f"  {score.bleu_details}")
    print(f"  BLEU signature: {score.bleu_signature}")
    print(f"  chrF signature: {score.chrf_signature}")
    if score.tokenized_bleu is not None:
        print(f"  {score.tokenized_bleu_label}: {score.tokenized_bleu:.2f}")


def data_config_for(train_cfg: dict[str, Any], data_root: str | None) -> DictConfig:
    """The dataset config stored in a checkpoint, pointed at this machine's data root."""
    data = OmegaConf.create(train_cfg["data"])
    if data_root:
        data.root = data_root
    return data


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
@report_user_errors("nmt-evaluate")
def main(cfg: DictConfig) -> None:
    setup_cpu(int(cfg.threads))
    translator, train_cfg = load_translator(cfg.checkpoint, cfg.search, cfg.device, int(cfg.max_tokens))
    print(f"decoding with {translator.search.describe()} {search_origin(cfg.search)}")
    data_cfg = data_config_for(train_cfg, cfg.data_root)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(cfg.checkpoint).parent / "eval"
    splits = [cfg.split] if isinstance(cfg.split, str) else list(cfg.split)
    for split in splits:
        eval_set = load_eval_set(data_cfg, split, translator.src_tok, translator.tgt_tok)
        print_score(split, evaluate_set(translator, eval_set, out_dir, str(cfg.tokenize)))
    print(f"hypotheses and scores written to {out_dir}")


if __name__ == "__main__":
    main()
