"""Run by test_distributed under torchrun: train several configs one after another in one process group.

    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_runs.py '{"name": ["override", ...]}'

Each rank prints ``ok <name> <steps>`` after a run; a failure in any run fails the whole command.
"""

from __future__ import annotations

import json
import sys

from conftest import compose_train

from nmt.training.distributed import init_distributed, shutdown
from nmt.training.run import train_and_evaluate


def main() -> None:
    runs: dict[str, list[str]] = json.loads(sys.argv[1])
    ctx = init_distributed("cpu")
    try:
        for name, overrides in runs.items():
            results = train_and_evaluate(compose_train(overrides), ctx)
            if ctx.is_main:
                print(f"ok {name} {results['steps']} {json.dumps(results['test'])}", flush=True)
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    main()
