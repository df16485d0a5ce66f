"""Fault injection: a training process killed (SIGKILL) or stopped (SIGTERM) at a random moment, then
rerun with the same command, ends with exactly the weights of an uninterrupted run; one whose disk fills up
stops with one line that says so, and the rerun resumes from the last checkpoint written."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import compose_train, subprocess_overrides

from nmt.training.checkpoint import load_checkpoint, step_checkpoints
from nmt.training.run import run

BIN = Path(sys.executable).parent
STEPS = 60


def train_cmd(root: Path, cache: Path, run_dir: Path) -> list[str]:
    extra = [
        "model.dropout=0.1",
        "trainer.max_tokens=500",
        f"trainer.max_steps={STEPS}",
        "trainer.checkpoint_every=3",
        "trainer.keep_last=2",
        "trainer.scheduler.warmup=10",
    ]
    return [str(BIN / "nmt-train"), *subprocess_overrides(root, cache, run_dir, *extra)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(step_checkpoints(run_dir)[0])
    assert ckpt["trainer"]["step"] == STEPS
    return ckpt["model"]


@pytest.fixture(scope="module")
def reference(tiny_root, cache_dir, tmp_path_factory) -> dict[str, torch.Tensor]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(train_cmd(tiny_root, cache_dir, run_dir), env=ENV, check=True, capture_output=True, timeout=300)
    return final_weights(run_dir)


def _newest_step(run_dir: Path) -> int:
    found = step_checkpoints(run_dir)
    return int(found[0].stem.split("_")[1]) if found else 0


def _interrupt_when_running(proc: subprocess.Popen, run_dir: Path, sig: int, seed: int) -> None:
    """Send ``sig`` as soon as a random checkpoint (step 3..30) is on disk, i.e. mid-run."""
    target = 3 * random.Random(seed).randint(1, 10)
    deadline = time.monotonic() + 240
    while _newest_step(run_dir) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=240)


@pytest.mark.parametrize("sig, seed", [(signal.SIGKILL, 1), (signal.SIGKILL, 2), (signal.SIGTERM, 3)])
def test_interrupted_run_resumes_to_the_same_weights(reference, tiny_root, cache_dir, tmp_path, sig, seed):
    cmd = train_cmd(tiny_root, cache_dir, tmp_path)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _interrupt_when_running(proc, tmp_path, sig, seed)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    else:
        assert proc.returncode == 130, proc.stderr.read().decode()[-2000:]
        assert b"rerun the same command to resume" in proc.stdout.read()
    assert 0 < _newest_step(tmp_path) < STEPS
    done = subprocess.run(cmd, env=ENV, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    got = final_weights(tmp_path)
    for k, v in reference.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


# nmt-train on a disk that fills up after the first two checkpoint files (best.pt and ckpt_1.pt at step 1)
FULL_DISK_TRAIN = (
    "from conftest import full_disk_after\n"
    "from nmt.training import checkpoint\n"
    "from nmt.cli.train import main\n"
    "checkpoint.open = full_disk_after(2)\n"
    "main()\n"
)


def test_a_full_disk_stops_the_run_with_one_line_and_the_rerun_resumes(tiny_root, cache_dir, tmp_path, caplog):
    extra = ["trainer.max_tokens=500", "trainer.max_steps=2", "trainer.validate_every=1"]
    overrides = subprocess_overrides(tiny_root, cache_dir, tmp_path, *extra)
    env = {**ENV, "PYTHONPATH": str(Path(__file__).parents[1])}
    full = subprocess.run(
        [sys.executable, "-c", FULL_DISK_TRAIN, *overrides], env=env, capture_output=True, timeout=300
    )
    errors = [line for line in full.stderr.decode().splitlines() if "error" in line.lower()]
    assert full.returncode == 2 and len(errors) == 1, full.stderr.decode()[-3000:]
    run_dir = re.escape(str(tmp_path))
    assert re.fullmatch(
        rf"nmt-train: error: could not write checkpoint {run_dir}/(best|ckpt_2)\.pt: No space left on device "
        r"\(it needs \d+\.\d MiB, \d+\.\d [MG]iB free there\); the checkpoints written before it are intact; free "
        r"some space \(or lower trainer.keep_last\) and rerun the same command to resume",
        errors[0],
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".pt", ".tmp")) == ["best.pt", "ckpt_1.pt"]
    assert load_checkpoint(tmp_path / "best.pt")["trainer"]["step"] == 1

    caplog.set_level("INFO")
    run(compose_train(overrides))  # the rerun, in this process
    assert "resumed at step 1" in caplog.text
    assert load_checkpoint(step_checkpoints(tmp_path)[0])["trainer"]["step"] == 2


@pytest.mark.parametrize("name", ["metrics.json", "train_log.jsonl"])
def test_a_full_disk_under_the_run_logs_stops_with_one_line_and_the_rerun_resumes(
    name, tiny_root, cache_dir, tmp_path, caplog
):
    """The validation record (metrics.json) and the training log (train_log.jsonl) meet the full disk as a
    checkpoint does: one line naming the file, exit 2, the earlier files whole, and a rerun resumes."""
    extra = ["trainer.max_tokens=500", "trainer.max_steps=2", "trainer.validate_every=1", "trainer.log_every=1"]
    overrides = subprocess_overrides(tiny_root, cache_dir, tmp_path, *extra)
    env = {**ENV, "PYTHONPATH": str(Path(__file__).parents[1])}
    script = FULL_DISK_TRAIN.replace("full_disk_after(2)", f"full_disk_for({name!r})").replace(
        "import full_disk_after", "import full_disk_for"
    )
    full = subprocess.run([sys.executable, "-c", script, *overrides], env=env, capture_output=True, timeout=300)
    errors = [line for line in full.stderr.decode().splitlines() if "error" in line.lower()]
    assert full.returncode == 2 and len(errors) == 1, full.stderr.decode()[-3000:]
    assert errors[0] == (
        f"nmt-train: error: could not write {tmp_path / name}: No space left on device; the checkpoints written "
        "before it are intact; free some space (or lower trainer.keep_last) and rerun the same command to resume"
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    caplog.set_level("INFO")
    run(compose_train(overrides))  # the rerun, in this process, on a disk with room again
    assert "resumed at step" in caplog.text or "step 2" in caplog.text
    assert [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()][-1] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())[-1]["step"] == 2
