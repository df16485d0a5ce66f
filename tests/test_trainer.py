"""Trainer behaviour that needs no full run: skipped steps on non-finite values and out-of-memory, loss
normalisation, the global sentence batch and the checkpoint cadence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from nmt.data.prepare import prepare_training_data
from nmt.errors import ConfigError
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


def _trainer(tiny_root: Path, cache_dir: Path, run_dir: Path, *extra: str) -> Trainer:
    cfg = tiny_config(tiny_root, cache_dir, run_dir, "transformer", list(extra))
    data = prepare_training_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(data.src_tok), len(data.tgt_tok), shared_vocab=True)
    return Trainer(cfg, model, data, run_dir, torch.device("cpu"), {"config": "", "tokenizers": {}})


def _batches(trainer: Trainer, n: int):
    from nmt.data.batching import batch_loader

    trainer.sampler.set_epoch(0)
    loader = iter(batch_loader(trainer.data.train, trainer.sampler))
    return [next(loader) for _ in range(n)]


@pytest.mark.parametrize("norm", ["sentences", "tokens"])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_gradient_is_the_summed_loss_over_the_update_divided_by_its_sentences_or_tokens(
    norm, accumulate, tiny_root, cache_dir, tmp_path
):
    """Luong et al. / Sutskever et al.: the gradient of the update's summed loss "divided by 128" (its sentences).
    With accumulation the micro-batches have different sizes; the division is by the whole update's count."""
    trainer = _trainer(
        tiny_root,
        cache_dir,
        tmp_path,
        f"trainer.loss_norm={norm}",
        "trainer.max_tokens=300",
        "model.dropout=0.0",
        "trainer.clip_norm=0",
    )
    batches = _batches(trainer, accumulate)
    assert accumulate == 1 or batches[0].src.size(0) != batches[1].src.size(0)  # unequal micro-batches
    monkey_step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: None  # keep the gradients of the step for inspection
    trainer.train_step(batches)
    trainer.optimizer.step = monkey_step
    got = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}

    trainer.model.zero_grad()
    total, count = 0.0, 0
    for b in batches:
        logits, _ = trainer.model(b.src, b.src_lengths, b.tgt_in)
        per_token = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=0, reduction="none"
        ).view_as(b.tgt_out)
        total = total + per_token.sum(1).sum()  # sum over sentences of each sentence's loss
        count += b.src.size(0) if norm == "sentences" else int((b.tgt_out != 0).sum())
    (total / count).backward()
    for n, p in trainer.model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_max_sentences_is_the_global_batch(tiny_root, cache_dir, tmp_path):
    trainer = _trainer(tiny_root, cache_dir, tmp_path, "trainer.max_sentences=8", "trainer.accumulate=2")
    assert trainer.batch_sentences == 4
    assert max(len(b) for b in trainer.sampler.epoch_batches(0)) == 4
    with pytest.raises(ConfigError, match=r"trainer.max_sentences=9 .* 1 ranks x trainer.accumulate=2.*multiple of 2"):
        _trainer(tiny_root, cache_dir, tmp_path, "trainer.max_sentences=9", "trainer.accumulate=2")


@pytest.mark.parametrize("minutes, expected", [(1e-9, [1, 2, 3, 4, 5, 6]), (1000.0, [6])])
def test_time_based_checkpoint_cadence(minutes, expected, tiny_root, cache_dir, tmp_path):
    """trainer.checkpoint_every_minutes: Vaswani et al. average checkpoints written every 10 minutes."""
    trainer = _trainer(
        tiny_root,
        cache_dir,
        tmp_path,
        "trainer.max_steps=6",
        "trainer.keep_last=10",
        "trainer.validate_every=0",
        f"trainer.checkpoint_every_minutes={minutes}",
    )
    trainer.train()
    assert sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("ckpt_*.pt")) == expected
