"""``nmt-train``: build data, model and trainer from the Hydra config, train, then score the test sets.

    nmt-train experiment=quickstart            # Transformer on Multi30k de-en, then test2016 BLEU
    nmt-train model=transformer_base data=multi30k_en_de trainer.max_minutes=60

Rerunning the same command continues the run (nmt.training.run).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.cli.startup import report_user_errors
from nmt.paths import CONFIG_DIR
from nmt.training.run import run


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
@report_user_errors("nmt-train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
