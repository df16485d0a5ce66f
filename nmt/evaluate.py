"""``nmt-evaluate``: decode a split with a checkpoint and score it with sacreBLEU BLEU and chrF.

    nmt-evaluate checkpoint=runs/multi30k_de_en_transformer_small/best.pt split=test2016 search.beam_size=5

Writes ``<split>.hyp`` (one detokenized hypothesis per source line, in order) and ``<split>.json``
(scores with sacrebleu signatures) to ``output_dir`` (default: ``eval/`` beside the checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmt.cli import report_user_errors, setup_cpu
from nmt.data.prepare import load_eval_set
from nmt.paths import CONFIG_DIR
from nmt.run_config import data_config_for
from nmt.scoring import evaluate_set, print_score
from nmt.translator import Translator, search_origin


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
@report_user_errors("nmt-evaluate")
def main(cfg: DictConfig) -> None:
    setup_cpu(int(cfg.threads))
    translator = Translator.from_checkpoint(cfg.checkpoint, cfg.search, cfg.device, int(cfg.max_tokens))
    print(f"decoding with {translator.search.describe()} {search_origin(cfg.search)}")
    data_cfg = data_config_for(translator.config, cfg.data_root)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(cfg.checkpoint).parent / "eval"
    splits = [cfg.split] if isinstance(cfg.split, str) else list(cfg.split)
    for split in splits:
        eval_set = load_eval_set(data_cfg, split, translator.src_tok, translator.tgt_tok)
        print_score(split, evaluate_set(translator, eval_set, out_dir, str(cfg.tokenize)))
    print(f"hypotheses and scores written to {out_dir}")


if __name__ == "__main__":
    main()
