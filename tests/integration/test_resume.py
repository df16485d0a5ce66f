"""Resuming continues the same run: step, learning rate, data position and weights."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from nmt.errors import ConfigError
from nmt.training.checkpoint import load_checkpoint, step_checkpoints
from nmt.training.config import TrainerConfig
from nmt.training.optim import learning_rate
from nmt.training.run import run

SCHEDULE = [
    "trainer.scheduler.kind=inverse_sqrt",
    "trainer.scheduler.warmup=10",
    "model.dropout=0.1",
    "trainer.max_tokens=600",
    "trainer.eval_max_tokens=2000",
]


def _final_weights(run_dir):
    return load_checkpoint(step_checkpoints(run_dir)[0])["model"]


def test_resume_equals_uninterrupted(tiny_root, cache_dir, tmp_path):
    straight = tmp_path / "straight"
    run(tiny_config(tiny_root, cache_dir, straight, "transformer", [*SCHEDULE, "trainer.max_steps=24"]))

    resumed = tmp_path / "resumed"
    run(tiny_config(tiny_root, cache_dir, resumed, "transformer", [*SCHEDULE, "trainer.max_steps=10"]))
    ckpt = load_checkpoint(step_checkpoints(resumed)[0])
    assert ckpt["trainer"]["step"] == 10
    assert 0 < ckpt["trainer"]["batch_in_epoch"]  # stopped inside an epoch (the tiny epoch has several batches)
    cfg = tiny_config(tiny_root, cache_dir, resumed, "transformer", [*SCHEDULE, "trainer.max_steps=24"])
    typed = TrainerConfig.from_cfg(cfg.trainer)
    lr_10 = learning_rate(10, typed.scheduler, typed.optimizer.lr, 64)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr_10)
    run(cfg)
    final = load_checkpoint(step_checkpoints(resumed)[0])
    assert final["trainer"]["step"] == 24
    a, b = _final_weights(straight), _final_weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_resume_refuses_other_model(tiny_root, cache_dir, tmp_path):
    run(tiny_config(tiny_root, cache_dir, tmp_path, "transformer", ["trainer.max_steps=2"]))
    with pytest.raises(ConfigError, match="different model or data config"):
        run(tiny_config(tiny_root, cache_dir, tmp_path, "rnnsearch", ["trainer.max_steps=4"]))
    with pytest.raises(ConfigError, match="rerun with resume=true"):
        run(tiny_config(tiny_root, cache_dir, tmp_path, "transformer", ["trainer.max_steps=4", "resume=false"]))


def test_damaged_newest_checkpoint_falls_back_to_previous(tiny_root, cache_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    extra = ["trainer.checkpoint_every=4", "trainer.keep_last=3"]
    run(tiny_config(tiny_root, cache_dir, tmp_path, "transformer", [*extra, "trainer.max_steps=8"]))
    newest = step_checkpoints(tmp_path)[0]
    assert newest.name == "ckpt_8.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a crash that truncated the file
    run(tiny_config(tiny_root, cache_dir, tmp_path, "transformer", [*extra, "trainer.max_steps=10"]))
    assert "ckpt_8.pt is truncated or corrupt" in caplog.text
    assert "resumed at step 4" in caplog.text
    assert load_checkpoint(step_checkpoints(tmp_path)[0])["trainer"]["step"] == 10


@pytest.mark.parametrize(
    ("which", "label", "value"),
    [("best", "best.pt", 10.0), ("last", "ckpt_30.pt", 3.0), ("average", "average of ckpt_30.pt, ckpt_20.pt", 2.5)],
)
def test_evaluation_checkpoint_follow_eval_checkpoint(tmp_path, which, label, value):
    """nmt-train's final evaluation and nmt-compare both evaluate the weights this one helper picks."""
    from nmt.training.checkpoint import evaluation_checkpoint, save_checkpoint

    for step, w in [(10, 1.0), (20, 2.0), (30, 3.0)]:
        save_checkpoint(tmp_path / f"ckpt_{step}.pt", {"model": {"w": torch.full((2,), w)}})
    save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.full((2,), 10.0)}})
    got_label, payload = evaluation_checkpoint(tmp_path, which, average_last=2)
    assert got_label == label and payload["model"]["w"].tolist() == [value, value]


def test_evaluation_checkpoint_without_checkpoints_or_with_a_bad_choice_say_so(tmp_path):
    from nmt.errors import CheckpointError
    from nmt.training.checkpoint import evaluation_checkpoint

    with pytest.raises(CheckpointError, match="no ckpt_<step>.pt checkpoint"):
        evaluation_checkpoint(tmp_path, "last")
    with pytest.raises(CheckpointError, match="eval.checkpoint='newest': use best, last or average"):
        evaluation_checkpoint(tmp_path, "newest")
