"""Trainer behaviour that needs no full run: skipped steps on non-finite values and out-of-memory, loss
normalisation, the global sentence batch, the checkpoint cadence, best.pt and the stop conditions, the
JSON-lines rate log, and what becomes of the batches left over at the end of an epoch."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from nmt.data.prepare import prepare_training_data
from nmt.errors import ConfigError
from nmt.experiments.report import training_rates
from nmt.models import build_model
from nmt.training.checkpoint import load_checkpoint
from nmt.training.trainer import TRAIN_LOG, Trainer, TrainingDiverged


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


# ---- validation, best.pt and the stop conditions ---------------------------------------------------

FAST = "trainer.max_tokens=300"  # small batches: cheap steps for tests that only count them


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, trainer: Trainer, metric: str, values: list[float]) -> None:
    """Each validation measures the next of ``values``: the BLEU for metric bleu (loss fixed), else the loss."""
    scores = iter(values)
    if metric == "bleu":
        monkeypatch.setattr(trainer.translator, "translate", lambda sources: sources)
        monkeypatch.setattr("nmt.training.trainer.corpus_bleu", lambda _hyps, _refs: next(scores))
        monkeypatch.setattr(trainer, "valid_loss", lambda _valid: 1.0)
    else:
        monkeypatch.setattr(trainer, "valid_loss", lambda _valid: next(scores))


def _spy_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(file name, trainer step) of every checkpoint the trainer writes, in order."""
    from nmt.training import trainer as trainer_module

    written, save = [], trainer_module.save_checkpoint

    def spy(path, payload):
        written.append((Path(path).name, payload["trainer"]["step"]))
        save(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", spy)
    return written


@pytest.mark.parametrize(
    ("metric", "best_step", "best_score"), [("bleu", 2, 3.0), ("loss", 3, 1.0), ("ppl", 3, math.exp(1.0))]
)
def test_best_follows_the_metric_direction(metric, best_step, best_score, tiny_root, cache_dir, tmp_path, monkeypatch):
    """BLEU: higher is better; loss and perplexity: lower. best_score is the metric's own value."""
    extra = [f"trainer.early_stopping.metric={metric}", f"trainer.validate_bleu={metric == 'bleu'}"]
    trainer = _trainer(tiny_root, cache_dir, tmp_path, FAST, "trainer.max_steps=3", "trainer.validate_every=1", *extra)
    _scripted_validation(monkeypatch, trainer, metric, [2.0, 3.0, 1.0])
    state = trainer.train()
    assert (state.best_step, state.bad_validations) == (best_step, 3 - best_step)
    assert state.best_score == pytest.approx(best_score)
    saved = load_checkpoint(tmp_path / "best.pt")["trainer"]
    assert saved["step"] == best_step and saved["best_score"] == pytest.approx(best_score)


def test_best_pt_is_written_only_when_the_metric_improves(tiny_root, cache_dir, tmp_path, monkeypatch):
    trainer = _trainer(tiny_root, cache_dir, tmp_path, FAST, "trainer.max_steps=4", "trainer.validate_every=1")
    _scripted_validation(monkeypatch, trainer, "loss", [3.0, 3.0, 3.5, 2.0])  # a tie, a worse one, a better one
    written = _spy_checkpoints(monkeypatch)
    trainer.train()
    assert [step for name, step in written if name == "best.pt"] == [1, 4]
    assert [h["step"] for h in trainer.state.history] == [1, 2, 3, 4]


def test_patience_stops_after_that_many_validations_without_improvement(tiny_root, cache_dir, tmp_path, monkeypatch):
    extra = [FAST, "trainer.max_steps=50", "trainer.validate_every=1", "trainer.early_stopping.patience=2"]
    trainer = _trainer(tiny_root, cache_dir, tmp_path, *extra)
    _scripted_validation(monkeypatch, trainer, "loss", [3.0, 2.0, 2.5, 2.2, 1.0])
    state = trainer.train()
    assert state.stop_reason == "early stopping: no better valid loss in 2 validations"
    assert (state.step, state.best_step, state.interrupted) == (4, 2, False)
    assert [h["step"] for h in state.history] == [1, 2, 3, 4]  # the last one was the final weights'


def test_unknown_metric_or_bleu_without_validation_bleu_is_refused(tiny_root, cache_dir, tmp_path):
    with pytest.raises(ConfigError, match="metric='accuracy': use bleu, loss, ppl"):
        _trainer(tiny_root, cache_dir, tmp_path, "trainer.early_stopping.metric=accuracy")
    with pytest.raises(ConfigError, match="needs trainer.validate_bleu=true"):
        _trainer(tiny_root, cache_dir, tmp_path, "trainer.early_stopping.metric=bleu", "trainer.validate_bleu=false")


def test_max_minutes_stops_and_counts_the_time_of_earlier_sessions(tiny_root, cache_dir, tmp_path):
    trainer = _trainer(tiny_root, cache_dir, tmp_path / "a", FAST, "trainer.max_steps=50", "trainer.max_minutes=1e-6")
    state = trainer.train()
    assert state.stop_reason == "reached trainer.max_minutes=1e-06" and state.step == 1  # one step outlasts 60 µs
    assert not state.interrupted and [h["step"] for h in state.history] == [1]
    resumed = _trainer(tiny_root, cache_dir, tmp_path / "b", FAST, "trainer.max_steps=50", "trainer.max_minutes=1")
    resumed.state.elapsed = 61.0  # a minute spent by earlier sessions of the run
    assert resumed.train().stop_reason == "reached trainer.max_minutes=1" and resumed.state.step == 0


def test_a_signal_stops_as_interrupted_and_the_resumed_run_no_longer_says_so(tiny_root, cache_dir, tmp_path):
    """state.interrupted (not the wording of stop_reason) tells nmt-train to exit 130. Checkpoints of the
    resumed run describe a running run, not the stop of the session it came from (they did before)."""
    extra = [FAST, "trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.keep_last=10"]
    trainer = _trainer(tiny_root, cache_dir, tmp_path, *extra)
    step = trainer.train_step

    def step_then_sigterm(update):
        result = step(update)
        if trainer.state.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    trainer.train_step = step_then_sigterm
    state = trainer.train()
    assert (state.stop_reason, state.interrupted, state.step) == ("interrupted by SIGTERM", True, 1)
    assert state.history == []  # an unfinished run's weights are not validated as final
    assert load_checkpoint(tmp_path / "ckpt_1.pt")["trainer"]["interrupted"] is True

    resumed = _trainer(tiny_root, cache_dir, tmp_path, *extra)
    resumed.restore(load_checkpoint(tmp_path / "ckpt_1.pt"))
    state = resumed.train()
    assert (state.stop_reason, state.interrupted, state.step) == ("reached trainer.max_steps=3", False, 3)
    running = load_checkpoint(tmp_path / "ckpt_2.pt")["trainer"]
    assert (running["stop_reason"], running["interrupted"]) == (None, False)


def test_old_checkpoints_without_interrupted_and_with_a_negated_best_loss_resume(
    tiny_root, cache_dir, tmp_path, monkeypatch
):
    """Checkpoints written before TrainState.interrupted and METRICS lack the field and stored -loss as
    best_score; resuming one compares against the real loss."""
    trainer = _trainer(tiny_root, cache_dir, tmp_path / "a", FAST, "trainer.max_steps=1")
    best = trainer.train().best_score
    ckpt = load_checkpoint(tmp_path / "a" / "ckpt_1.pt")
    assert ckpt["trainer"]["interrupted"] is False and ckpt["trainer"]["best_score"] == best > 0
    old_state = {k: v for k, v in ckpt["trainer"].items() if k != "interrupted"}
    old = {**ckpt, "trainer": {**old_state, "best_score": -best}}

    resumed = _trainer(tiny_root, cache_dir, tmp_path / "b", FAST, "trainer.max_steps=3", "trainer.validate_every=1")
    resumed.restore(old)
    assert resumed.state.best_score == best and not resumed.state.interrupted
    _scripted_validation(monkeypatch, resumed, "loss", [best + 1, best / 2])
    state = resumed.train()
    assert (state.best_step, state.best_score, state.bad_validations) == (3, best / 2, 0)


# ---- the structured rate log ---------------------------------------------------------------------


def test_every_log_window_is_a_json_line_that_the_report_reads(tiny_root, cache_dir, tmp_path, caplog):
    caplog.set_level("INFO", logger="nmt.training.trainer")
    trainer = _trainer(tiny_root, cache_dir, tmp_path, FAST, "trainer.max_steps=3", "trainer.log_every=1")
    trainer.train()
    windows = [json.loads(line) for line in (tmp_path / TRAIN_LOG).read_text().splitlines()]
    assert [w["step"] for w in windows] == [1, 2, 3]
    keys = {"step", "epoch", "nll", "lr", "tgt_tokens", "seconds", "tgt_tokens_per_s", "elapsed_min"}
    for w in windows:
        assert set(w) == keys and w["tgt_tokens"] > 0 and w["nll"] > 0
        assert w["tgt_tokens_per_s"] == pytest.approx(w["tgt_tokens"] / w["seconds"])
    assert caplog.text.count("tgt tok/s") == 3  # the human log line stays
    assert training_rates(tmp_path) == [w["tgt_tokens_per_s"] for w in windows]

    resumed = _trainer(tiny_root, cache_dir, tmp_path, FAST, "trainer.max_steps=4", "trainer.log_every=1")
    resumed.restore(load_checkpoint(tmp_path / "ckpt_3.pt"))
    resumed.train()
    lines = (tmp_path / TRAIN_LOG).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]  # appended
    assert training_rates(tmp_path / "no_run") == []


# ---- gradient accumulation at the end of an epoch ------------------------------------------------

LEFT_OVER = [FAST, "trainer.accumulate=3"]  # 8 batches per epoch: 2 updates, 2 batches left over


def test_batches_left_over_at_the_end_of_an_epoch_are_skipped(tiny_root, cache_dir, tmp_path, monkeypatch):
    trainer = _trainer(tiny_root, cache_dir, tmp_path, *LEFT_OVER, "trainer.max_epochs=1", "trainer.max_steps=0")
    batches = [b.tolist() for b in trainer.sampler.epoch_batches(0)]
    assert len(batches) == 8
    trained, step = [], trainer.train_step

    def recording_step(update):
        trained.append([b.indices.tolist() for b in update])
        return step(update)

    monkeypatch.setattr(trainer, "train_step", recording_step)
    state = trainer.train()
    assert (state.step, state.epoch, state.batch_in_epoch) == (2, 1, 0)
    assert trained == [batches[0:3], batches[3:6]]  # never batches[6:]


def test_resume_before_the_left_over_batches_equals_the_uninterrupted_run(tiny_root, cache_dir, tmp_path):
    """Stopped after the last whole update of epoch 0, the resumed run skips the same left-over batches."""
    straight = _trainer(tiny_root, cache_dir, tmp_path / "straight", *LEFT_OVER, "trainer.max_steps=3")
    straight.train()
    first = _trainer(tiny_root, cache_dir, tmp_path / "resumed", *LEFT_OVER, "trainer.max_steps=2")
    first.train()
    ckpt = load_checkpoint(tmp_path / "resumed" / "ckpt_2.pt")
    assert (ckpt["trainer"]["epoch"], ckpt["trainer"]["batch_in_epoch"]) == (0, 6)  # two batches of epoch 0 left
    resumed = _trainer(tiny_root, cache_dir, tmp_path / "resumed", *LEFT_OVER, "trainer.max_steps=3")
    resumed.restore(ckpt)
    resumed.train()
    assert (
        (resumed.state.epoch, resumed.state.batch_in_epoch)
        == (1, 3)
        == (straight.state.epoch, straight.state.batch_in_epoch)
    )
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_an_epoch_with_fewer_batches_than_one_update_is_refused(tiny_root, cache_dir, tmp_path):
    """It could never make a step: with only max_steps or max_minutes as the limit it looped forever."""
    trainer = _trainer(tiny_root, cache_dir, tmp_path, "trainer.accumulate=3", "trainer.max_epochs=2")
    assert len(trainer.sampler.epoch_batches(0)) == 2
    with pytest.raises(ConfigError, match="epoch 0 has 2 batches per rank .* fewer than trainer.accumulate=3"):
        trainer.train()


@pytest.mark.parametrize("arch", ["transformer", "luong"])
def test_bf16_autocast_runs_on_the_cpu_close_to_fp32(arch, tiny_root, cache_dir, tmp_path):
    """trainer.amp=bf16 executes the mixed-precision path on a CPU too (autocast regions, the loss, SDPA /
    attention with bf16 inputs): a few steps give finite losses close to the fp32 run's, and the
    checkpoint it writes holds fp32 weights that load and decode. On AVX2 CPUs the luong case failed in
    oneDNN's LSTM (no bf16 kernel) and was skipped; its LSTMs now run in fp32 under CPU autocast."""
    from nmt.decoding.translator import Translator
    from nmt.training.run import run

    losses = {}
    for amp in ("none", "bf16"):
        cfg = tiny_config(tiny_root, cache_dir, tmp_path / amp, arch, [f"trainer.amp={amp}", "trainer.max_steps=4"])
        cfg.trainer.log_every = 1
        cfg.data.test_splits = []
        run(cfg)
        losses[amp] = [json.loads(line)["nll"] for line in (tmp_path / amp / TRAIN_LOG).read_text().splitlines()]
    assert len(losses["bf16"]) == 4 and all(math.isfinite(x) for x in losses["bf16"])
    assert losses["bf16"] != losses["none"]  # bf16 really ran
    for a, b in zip(losses["bf16"], losses["none"]):
        assert abs(a - b) < 0.05 * b
    weights = load_checkpoint(tmp_path / "bf16" / "best.pt")["model"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    assert len(Translator.from_checkpoint(tmp_path / "bf16" / "best.pt").translate(["Ein Hund."])) == 1


def test_amp_fp16_needs_cuda_and_unknown_modes_are_refused():
    from nmt.training.trainer import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("none", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    assert autocast_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError, match="trainer.amp=fp16 needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ConfigError, match="trainer.amp='fp32': use auto, bf16, fp16 or none"):
        autocast_dtype("fp32", cpu)
