"""torchrun DDP on CPU (gloo): 2 ranks equal 1 rank with 2-batch accumulation (the sentence batch and the
loss normalisation are global), resume works under it, and every model trains under it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import TINY_MODELS, subprocess_overrides, tiny_overrides, torchrun_many

from nmt.training.checkpoint import load_checkpoint, step_checkpoints

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def args(root: Path, cache: Path, run_dir: Path, steps: int, accumulate: int) -> list[str]:
    extra = [
        "model.dropout=0.0",
        "trainer.max_tokens=300",
        "trainer.max_sentences=8",  # of one update: 4 per micro-batch either way
        "trainer.loss_norm=sentences",
        f"trainer.max_steps={steps}",
        f"trainer.accumulate={accumulate}",
        "trainer.checkpoint_every=4",
        "trainer.scheduler.warmup=5",
        "trainer.device=cpu",
    ]
    return subprocess_overrides(root, cache, run_dir, *extra)


def torchrun(*extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29613"]
    return subprocess.run([*cmd, "-m", "nmt.cli.train", *extra], env=ENV, capture_output=True, timeout=400)


def weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(step_checkpoints(run_dir)[0])
    assert ckpt["trainer"]["step"] == step
    return ckpt["model"]


def test_two_ranks_equal_accumulation_and_resume(tiny_root, cache_dir, tmp_path):
    single = tmp_path / "single"
    one = subprocess.run(
        [str(BIN / "nmt-train"), *args(tiny_root, cache_dir, single, 8, accumulate=2)],
        env=ENV,
        capture_output=True,
        timeout=400,
    )
    assert one.returncode == 0, one.stderr.decode()[-3000:]

    ddp = tmp_path / "ddp"
    first = torchrun(*args(tiny_root, cache_dir, ddp, 4, accumulate=1))
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    assert "effective batch: 300 tokens x 2 ranks x 1 accumulation = 600" in first.stderr.decode()
    assert "at most 4 x 2 = 8 sentences" in first.stderr.decode()
    resumed = torchrun(*args(tiny_root, cache_dir, ddp, 8, accumulate=1))  # continues from step 4
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert "resumed at step 4" in resumed.stderr.decode()

    a, b = weights(single, 8), weights(ddp, 8)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


LUONG_KINDS = {f"luong-{kind}": [f"model.attention.kind={kind}"] for kind in ("global", "local_m", "local_p")} | {
    "luong-none": ["model.attention.kind=none", "model.input_feed=false"]
}


def test_every_model_trains_under_ddp(tiny_root, cache_dir, tmp_path):
    """A parameter that gets no gradient (Luong's W_c without attention did) stops DDP at its second step."""
    variants = {name: [] for name in TINY_MODELS if name != "luong"} | LUONG_KINDS
    runs = {
        name: tiny_overrides(
            tiny_root,
            cache_dir,
            tmp_path / name,
            name.split("-")[0],
            [*extra, "trainer.max_steps=3", "trainer.max_tokens=300", "trainer.device=cpu", "data.test_splits=[]"],
        )
        for name, extra in variants.items()
    }
    printed = torchrun_many(runs)
    for name in runs:
        assert f"ok {name} 3 " in printed, printed
