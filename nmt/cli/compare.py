"""``nmt-compare``: train every run of a comparison with every seed, then report them side by side
(nmt.experiments.compare).

    nmt-compare experiment=bahdanau2014_table1 compare.jobs=2
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.cli.startup import report_user_errors, setup_cpu
from nmt.experiments.compare import run_comparison
from nmt.paths import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="compare", version_base="1.3")
@report_user_errors("nmt-compare")
def main(cfg: DictConfig) -> None:
    setup_cpu(int(cfg.threads))
    run_comparison(cfg)


if __name__ == "__main__":
    main()
