"""Learning-speed guard: does each CPU model config still learn as fast as recorded?

Trains every CPU model config (``configs/model/{transformer_small,rnnsearch,rnnencdec,luong}.yaml``) on
the real Multi30k de-en training data for a short fixed number of updates with a fixed seed, and compares
its validation NLL with the value recorded in ``tests/learning_speed.json``. A model that ends
``margin`` nats or more above its record learns markedly slower than it did: a change to a model default
or to the trainer slowed it down. The margin is far above what float rounding moves (other CPU kinds,
thread counts), far below what a real regression costs.

    python scripts/learning_speed.py                    # check every model against the record
    python scripts/learning_speed.py model.init=pytorch --models luong   # what-if: extra nmt-train overrides
    python scripts/learning_speed.py --record           # re-measure and write the record (commit it with the
                                                        # change that moved it, and say why)

The suite runs the check (tests/integration/test_learning_speed.py); the data root is ``$NMT_DATA_ROOT``
(a folder holding multi30k/) or the hub.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "tests" / "learning_speed.json"
MODELS = ("transformer_small", "rnnsearch", "rnnencdec", "luong")
# The run every model gets: the quickstart's CPU trainer on batches of half its size with a short warm-up
# (so that the four models fit in a few minutes of CI), stopped after STEPS updates and validated once.
# One thread per run, so the numbers do not depend on the core count; PARALLEL runs at a time.
STEPS = 80
WARMUP = 50
MAX_TOKENS = 2048
MARGIN = 0.1  # nats of validation NLL
PARALLEL = 2


def overrides(model: str, steps: int, run_dir: Path) -> list[str]:
    return [
        f"model={model}",
        "data=multi30k_de_en",
        "trainer=multi30k_cpu",
        f"trainer.max_tokens={MAX_TOKENS}",
        f"trainer.scheduler.warmup={WARMUP}",
        "trainer.threads=1",
        "trainer.max_minutes=0",
        f"trainer.max_steps={steps}",
        f"trainer.validate_every={steps}",
        "trainer.validate_bleu=false",
        "trainer.early_stopping.metric=loss",
        "trainer.seed=1",
        f"trainer.log_every={steps}",
        "data.test_splits=[]",
        "resume=false",
        f"run_dir={run_dir}",
    ]


def valid_nll(model: str, steps: int, extra: list[str], workdir: Path) -> float:
    """Train ``model`` for ``steps`` updates in a fresh run directory; its validation NLL at the end."""
    run_dir = workdir / model
    command = [sys.executable, "-m", "nmt.cli.train", *overrides(model, steps, run_dir), *extra]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    history = json.loads((run_dir / "metrics.json").read_text())
    return float(history[-1]["valid_loss"])


def measure(models: list[str], steps: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(PARALLEL) as pool:
        nlls = pool.map(lambda m: valid_nll(m, steps, extra, Path(workdir)), models)
        return dict(zip(models, nlls))


def check(measured: dict[str, float], record: dict) -> list[str]:
    """One line per model that learned markedly slower than recorded (empty when all are fine)."""
    slow = []
    for model, nll in measured.items():
        recorded = record["valid_nll"][model]
        if nll >= recorded + record["margin"]:
            slow.append(
                f"{model}: valid NLL {nll:.3f} after {record['steps']} updates, recorded {recorded:.3f} "
                f"(margin {record['margin']}): it learns markedly slower than before"
            )
    return slow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--record", action="store_true", help="write the measured values as the new record")
    parser.add_argument("overrides", nargs="*", help="extra nmt-train overrides (what-if checks only)")
    args = parser.parse_args()
    if args.record and (args.overrides or set(args.models) != set(MODELS)):
        parser.error("--record measures every model with the configs as they are: no overrides, no --models")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    measured = measure(args.models, STEPS, args.overrides)
    for model, nll in measured.items():
        print(f"{model}: valid NLL {nll:.4f} after {STEPS} updates")
    if args.record:
        RECORD.write_text(json.dumps({"steps": STEPS, "margin": MARGIN, "valid_nll": measured}, indent=1) + "\n")
        print(f"record written to {RECORD}")
        return 0
    slow = check(measured, json.loads(RECORD.read_text()))
    for line in slow:
        print(line)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
