"""A checkpoint write that fails (a full disk) leaves no temporary file, keeps the checkpoints written before
it, and says what failed, where, and how much space the checkpoint needs."""

from __future__ import annotations

import pytest
import torch
from conftest import full_disk_after

from nmt.errors import CheckpointError
from nmt.training import checkpoint
from nmt.training.checkpoint import load_checkpoint, save_checkpoint


def test_a_full_disk_keeps_the_checkpoints_written_before_and_says_how_much_space_is_needed(tmp_path, monkeypatch):
    before, after = {"model": {"w": torch.ones(100_000)}}, {"model": {"w": torch.zeros(100_000)}}
    save_checkpoint(tmp_path / "elsewhere" / "ckpt_2.pt", after)
    needs = (tmp_path / "elsewhere" / "ckpt_2.pt").stat().st_size
    run_dir = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "open", full_disk_after(2), raising=False)
    save_checkpoint(run_dir / "ckpt_1.pt", before)
    save_checkpoint(run_dir / "best.pt", before)
    for name in ("ckpt_2.pt", "best.pt"):
        with pytest.raises(CheckpointError) as failed:
            save_checkpoint(run_dir / name, after)
        assert str(failed.value).startswith(
            f"could not write checkpoint {run_dir / name}: No space left on device (it needs {needs / 2**20:.1f} MiB, "
        )
        assert "free there); the checkpoints written before it are intact" in str(failed.value)
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "ckpt_1.pt"]  # no temporary file
    for name in ("ckpt_1.pt", "best.pt"):
        assert torch.equal(load_checkpoint(run_dir / name)["model"]["w"], before["model"]["w"])
