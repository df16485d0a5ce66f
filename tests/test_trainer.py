"""Trainer behaviour that needs no full run: skipped steps on non-finite values and out-of-memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from nmt.data.prepare import prepare_training_data
from nmt.models import build_model
from nmt.trainer import Trainer, TrainingDiverged


@pytest.fixture()
def trainer(tiny_root: Path, cache_dir: Path, tmp_path: Path) -> Trainer:
    cfg = tiny_config(tiny_root, cache_dir, tmp_path, "transformer", ["trainer.max_bad_steps=3"])
    data = prepare_training_data(cfg.data)
    model = build_model(cfg.model, len(data.src_tok), len(data.tgt_tok), shared_vocab=True)
    return Trainer(cfg, model, data, tmp_path, torch.device("cpu"), {"config": "", "tokenizers": {}})


def _batch(trainer: Trainer):
    trainer.sampler.set_epoch(0)
    from nmt.data.batching import batch_loader

    return next(iter(batch_loader(trainer.data.train, trainer.sampler)))


def test_non_finite_steps_are_skipped_then_training_stops(trainer):
    batch = _batch(trainer)
    assert trainer.train_step([batch]) is not None and trainer.state.step == 1
    with torch.no_grad():
        trainer.model.tgt_embed.weight[5:] = float("nan")
    for n in (1, 2):
        assert trainer.train_step([batch]) is None
        assert trainer.state.skipped_steps == n and trainer.state.step == 1
    with pytest.raises(TrainingDiverged, match="3 consecutive steps had a non-finite loss"):
        trainer.train_step([batch])


def test_out_of_memory_batch_is_skipped_with_advice(trainer, monkeypatch, caplog):
    batch = _batch(trainer)

    def boom(*_args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer, "_forward_loss", boom)
    assert trainer.train_step([batch]) is None
    assert trainer.state.skipped_steps == 1 and trainer.state.step == 0
    assert "Lower trainer.max_tokens" in caplog.text and str(tuple(batch.src.shape)) in caplog.text
