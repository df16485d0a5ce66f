"""``nmt-evaluate``: decode a split with a checkpoint and score it with sacreBLEU BLEU and chrF.

    nmt-evaluate checkpoint=runs/multi30k_de_en_transformer_small/best.pt split=test2016 search.beam_size=5
    nmt-evaluate checkpoint=runs/quickstart/best.pt source=newstest2014.de reference=newstest2014.en
    nmt-evaluate checkpoint=[a/best.pt,b/best.pt] split=test2016          # an ensemble
    nmt-evaluate checkpoint=exported/quickstart split=test2016            # a CTranslate2 export

Writes ``<split>.hyp`` (one detokenized hypothesis per source line, in order) and ``<split>.json``
(scores with sacrebleu signatures) to ``output_dir`` (default: ``eval/`` beside the checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmt.cli.startup import report_user_errors, setup_cpu
from nmt.data.prepare import EvalSet, eval_set_from_files, load_eval_set
from nmt.decoding.backend import translator_from_cfg
from nmt.decoding.translator import Translator, search_origin
from nmt.errors import ConfigError
from nmt.evaluation.split_scores import evaluate_set, print_score
from nmt.paths import CONFIG_DIR
from nmt.training.run_config import data_config_for


def eval_sets(cfg: DictConfig, translator: Translator) -> list[EvalSet]:
    """The parallel files ``source`` / ``reference`` if given, else the ``split`` list of the checkpoint's dataset."""
    if cfg.source or cfg.reference:
        if not (cfg.source and cfg.reference):
            raise ConfigError("give both source=FILE and reference=FILE (or neither, to score split=...)")
        return [eval_set_from_files(cfg.source, cfg.reference, translator.src_tok, translator.tgt_tok)]
    data_cfg = data_config_for(translator.config, cfg.data_root)
    splits = [cfg.split] if isinstance(cfg.split, str) else list(cfg.split)
    return [load_eval_set(data_cfg, split, translator.src_tok, translator.tgt_tok) for split in splits]


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
@report_user_errors("nmt-evaluate")
def main(cfg: DictConfig) -> None:
    setup_cpu(int(cfg.threads))
    translator = translator_from_cfg(cfg)
    print(f"decoding with {translator.search.describe()} {search_origin(cfg.search)}")
    first = cfg.checkpoint if isinstance(cfg.checkpoint, str) else cfg.checkpoint[0]
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(first).parent / "eval"
    for eval_set in eval_sets(cfg, translator):
        print_score(eval_set.name, evaluate_set(translator, eval_set, out_dir, str(cfg.tokenize)))
    print(f"hypotheses and scores written to {out_dir}")


if __name__ == "__main__":
    main()
