"""Run by the DDP tests under torchrun: train several configs one after another in one process group.

    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_runs.py RUNS [FAULTS]

RUNS is ``{"name": ["override", ...]}``. FAULTS, ``{"name": [{"kind": k, "rank": r, "step": s}, ...]}``, strike
one rank alone, once, in the forward pass of step s (after the model's forward, as a real out-of-memory in
the loss would): ``oom`` raises torch.OutOfMemoryError, ``oom_backward`` raises it in the backward pass
instead, ``nan`` makes the loss NaN, ``sigterm`` sends the rank's own process a SIGTERM, ``full_disk`` makes
its checkpoint writes from then on meet a full disk.

Rank 0 prints ``ok <name> <steps> <test scores>`` after a run and ``interrupted <name>`` after one that a
signal stopped; every rank prints ``rank<r> <name> failed: <message>`` after a run that stopped with a user
error. Either way the next run goes on (resuming the run if it has the same run_dir). Every rank prints
``rank<r> <name> step=.. skipped=.. stop=.. weights=<digest>`` when its training ends, and logs to stdout
with ``rank<r>`` in front. Collectives time out after a minute, so ranks that wait for each other forever
fail the command; any other failure fails it too.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import signal
import sys
from typing import Any, BinaryIO

import torch
import torch.distributed as dist
from conftest import FullDisk, compose_train

from nmt.errors import NmtError
from nmt.training import checkpoint
from nmt.training.distributed import init_distributed, shutdown
from nmt.training.run import train_and_evaluate
from nmt.training.trainer import Trainer, TrainState

RUN: dict[str, Any] = {"name": "", "faults": [], "disk_full": False}  # the run in progress, its faults to come
_forward_loss, _train = Trainer._forward_loss, Trainer.train


def out_of_memory(*_args: Any) -> None:
    raise torch.OutOfMemoryError("injected out of memory")


def faulty_forward_loss(self: Trainer, batch, model=None):
    """The real forward pass and loss, then the fault due on this rank at this step, if any."""
    loss, nll, ntok = _forward_loss(self, batch, model)
    for fault in [f for f in RUN["faults"] if (f["rank"], f["step"]) == (self.ctx.rank, self.state.step + 1)]:
        RUN["faults"].remove(fault)
        if fault["kind"] == "oom":
            out_of_memory()
        if fault["kind"] == "oom_backward":
            loss.register_hook(out_of_memory)
        if fault["kind"] == "nan":
            loss = loss * float("nan")
        if fault["kind"] == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        if fault["kind"] == "full_disk":
            RUN["disk_full"] = True
    return loss, nll, ntok


def checkpoint_open(path: str, mode: str) -> BinaryIO:
    return FullDisk(path, mode) if RUN["disk_full"] else open(path, mode)


def say(line: str) -> None:
    """Print ``line`` in one write, so that it does not interleave with the other rank's lines in their pipe."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def reporting_train(self: Trainer) -> TrainState:
    """Train, then print what this rank decided and a digest of its weights."""
    state = _train(self)
    digest = hashlib.sha256()
    for tensor in self.model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    say(
        f"rank{self.ctx.rank} {RUN['name']} step={state.step} skipped={state.skipped_steps} "
        f"stop={state.stop_reason!r} weights={digest.hexdigest()[:16]}"
    )
    return state


def main() -> None:
    runs: dict[str, list[str]] = json.loads(sys.argv[1])
    faults: dict[str, list[dict[str, Any]]] = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=f"rank{os.environ['RANK']} %(message)s")
    Trainer._forward_loss, Trainer.train = faulty_forward_loss, reporting_train
    checkpoint.open = checkpoint_open
    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=1))
    ctx = init_distributed("cpu")
    try:
        for name, overrides in runs.items():
            RUN.update(name=name, faults=list(faults.get(name, [])), disk_full=False)
            try:
                results = train_and_evaluate(compose_train(overrides), ctx)
            except NmtError as e:
                say(f"rank{ctx.rank} {name} failed: {e}")
                continue
            except SystemExit as e:
                if e.code != 130:  # 130: stopped by a signal, resumable
                    raise
                if ctx.is_main:
                    say(f"interrupted {name}")
                continue
            if ctx.is_main:
                say(f"ok {name} {results['steps']} {json.dumps(results['test'])}")
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    main()
