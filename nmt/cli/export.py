"""``nmt-export``: a Transformer checkpoint as a CTranslate2 model directory (nmt.decoding.export).

nmt-export checkpoint=runs/quickstart/best.pt output=exported/quickstart quantization=int8
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmt.cli.startup import report_user_errors
from nmt.decoding.export import export_ctranslate2
from nmt.paths import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="export", version_base="1.3")
@report_user_errors("nmt-export")
def main(cfg: DictConfig) -> None:
    out = export_ctranslate2(str(cfg.checkpoint), str(cfg.output), str(cfg.quantization))
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    print(f"CTranslate2 model ({cfg.quantization}, {size:.1f} MiB) written to {out}")


if __name__ == "__main__":
    main()
