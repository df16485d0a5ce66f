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
from nmt.errors import ConfigError
from nmt.metrics import CorpusScore, corpus_scores
from nmt.paths import CONFIG_DIR
from nmt.search import SearchConfig
from nmt.translator import Translator, load_translator


def search_config(cfg: DictConfig) -> SearchConfig:
    """SearchConfig from the ``search`` section of any entry-point config."""
    s = cfg.search
    beam, n_best = int(s.beam_size), int(s.get("n_best", 1))
    if beam < 1 or n_best < 1 or n_best > beam:
        raise ConfigError(f"search.n_best={n_best} and search.beam_size={beam}: need 1 <= n_best <= beam_size")
    return SearchConfig(
        beam_size=beam,
        length_penalty=float(s.length_penalty),
        max_len_a=float(s.max_len_a),
        max_len_b=int(s.max_len_b),
        n_best=n_best,
    )


def evaluate_set(translator: Translator, eval_set: EvalSet, out_dir: Path, tokenize: str = "13a") -> CorpusScore:
    """Translate every line of ``eval_set``, score it, write hypotheses and scores, return the scores."""
    hyps = translator.translate_text(eval_set.sources)
    score = corpus_scores(hyps, eval_set.references, tokenize=tokenize)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{eval_set.name}.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (out_dir / f"{eval_set.name}.json").write_text(json.dumps(score.to_dict(), indent=1))
    return score


def print_score(split: str, score: CorpusScore) -> None:
    print(f"{split}: BLEU = {score.bleu:.2f}  chrF = {score.chrf:.2f}  ({score.sentences} sentences)")
    print(f"  {score.bleu_details}")
    print(f"  BLEU signature: {score.bleu_signature}")
    print(f"  chrF signature: {score.chrf_signature}")


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
    translator, train_cfg = load_translator(cfg.checkpoint, search_config(cfg), cfg.device, int(cfg.max_tokens))
    data_cfg = data_config_for(train_cfg, cfg.data_root)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(cfg.checkpoint).parent / "eval"
    splits = [cfg.split] if isinstance(cfg.split, str) else list(cfg.split)
    for split in splits:
        eval_set = load_eval_set(data_cfg, split, translator.src_tok, translator.tgt_tok)
        print_score(split, evaluate_set(translator, eval_set, out_dir, str(cfg.tokenize)))
    print(f"hypotheses and scores written to {out_dir}")


if __name__ == "__main__":
    main()
