"""A fault on one rank only (out of memory, a non-finite loss, a SIGTERM, a full disk) is agreed by every
rank: none waits forever in a collective the others left, all take the same decision, their weights stay
equal, and a run stopped that way resumes exactly."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import subprocess_overrides, torchrun_many


def overrides(root: Path, cache: Path, run_dir: Path, steps: int) -> list[str]:
    extra = [
        "model.dropout=0.0",  # rank 1's random stream is not in the checkpoint; with dropout it would matter
        "trainer.max_tokens=300",
        f"trainer.max_steps={steps}",
        "trainer.scheduler.warmup=5",
        "trainer.device=cpu",
    ]
    return subprocess_overrides(root, cache, run_dir, *extra)


def rank_lines(printed: str, pattern: str) -> tuple[str, str]:
    """What rank 0 and rank 1 printed after ``rank<r> `` on the line that matches ``pattern`` (not always at
    the start of a line: nmt's own prints on rank 0 may leave one open when rank 1 writes)."""
    found = [re.search(rf"rank{r} ({pattern}.*)$", printed, re.M) for r in (0, 1)]
    assert all(found), printed[-3000:]
    return found[0].group(1), found[1].group(1)


def test_a_fault_on_one_rank_is_agreed_by_all_ranks(tiny_root, cache_dir, tmp_path):
    """Rank 1 alone runs out of memory in step 2 (one run), or gets a NaN loss in step 2 and a SIGTERM in
    step 3 (another run, then resumed): both ranks skip the same step and stop after the same one. The two
    runs skip the same update, so they end with the same weights. Rank 0 alone meets a full disk (a third
    run): both ranks stop with its error. Rank 1 alone runs out of memory in the backward pass that all-reduces
    gradients (the last run): it cannot skip the step with the others, so it stops with an error that says
    so, and the command fails instead of hanging."""
    runs = {
        "oom": overrides(tiny_root, cache_dir, tmp_path / "oom", 4),
        "nan": overrides(tiny_root, cache_dir, tmp_path / "nan", 4),
        "resumed": overrides(tiny_root, cache_dir, tmp_path / "nan", 4),
        "full": overrides(tiny_root, cache_dir, tmp_path / "full", 1),
        "backward": overrides(tiny_root, cache_dir, tmp_path / "backward", 1),
    }
    faults = {
        "oom": [{"kind": "oom", "rank": 1, "step": 2}],
        "nan": [{"kind": "nan", "rank": 1, "step": 2}, {"kind": "sigterm", "rank": 1, "step": 3}],
        "full": [{"kind": "full_disk", "rank": 0, "step": 1}],
        "backward": [{"kind": "oom_backward", "rank": 1, "step": 1}],
    }
    printed = torchrun_many(runs, faults, port=29671, timeout=240, fails=True)

    for rank in (0, 1):
        assert f"rank{rank} step 2: out of memory" in printed, printed[-3000:]
        assert f"rank{rank} step 2: non-finite loss" in printed, printed[-3000:]
    oom, nan, resumed = (rank_lines(printed, f"{name} step=") for name in ("oom", "nan", "resumed"))
    assert oom[0] == oom[1] and oom[0].startswith("oom step=4 skipped=1 stop='reached trainer.max_steps=4'")
    assert nan[0] == nan[1] and nan[0].startswith("nan step=3 skipped=1 stop='interrupted by SIGTERM'")
    assert "interrupted nan" in printed and "rank0 resumed at step 3" in printed
    assert resumed[0] == resumed[1] and resumed[0].split()[1:] == oom[0].split()[1:]
    full = rank_lines(printed, "full failed: ")
    assert full[0] == full[1] and "best.pt: No space left on device" in full[0]
    assert "rank1 backward failed: step 1: out of memory in the backward pass of rank 1" in printed
