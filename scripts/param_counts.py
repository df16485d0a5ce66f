"""Print the parameter count of every shipped model config (the README's model table).

python scripts/param_counts.py [--vocab 8000]
"""

from __future__ import annotations

import argparse

from hydra import compose, initialize_config_dir

from nmt.models import build_model
from nmt.paths import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=8000, help="joint vocabulary size")
    args = parser.parse_args()
    names = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    for name in names:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"model={name}"])
        model = build_model(cfg.model, args.vocab, args.vocab, shared_vocab=True)
        print(f"{name:20s} {sum(p.numel() for p in model.parameters()) / 1e6:8.2f}M")


if __name__ == "__main__":
    main()
