"""The training loop: steps, validation, checkpoints, early stopping and exact resume.

One Trainer serves every architecture through the shared model interface. Everything that decides
what happens next (step, epoch, batch position inside the epoch, best score, patience, skipped steps,
elapsed time, RNG states, optimizer moments) is in the checkpoint, so a resumed run continues the run it
came from; the learning rate is a pure function of the step. Every log window (trainer.log_every steps)
is also one JSON line of ``train_log.jsonl`` in the run directory (fairseq's json log format), which
reports read the training speed from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from nmt.data.batching import Batch, TokenBatchSampler, batch_loader, lengths
from nmt.data.prepare import EvalSet, TrainingData
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator
from nmt.errors import CheckpointError, ConfigError, NmtError
from nmt.evaluation.metrics import corpus_bleu
from nmt.models import Seq2SeqModel
from nmt.training.checkpoint import prune_checkpoints, save_checkpoint, write_run_file
from nmt.training.config import TrainerConfig, plain_number
from nmt.training.distributed import DistContext, all_reduce_max, all_reduce_sum, broadcast
from nmt.training.loss import label_smoothed_nll
from nmt.training.optim import build_optimizer, learning_rate

log = logging.getLogger(__name__)


class TrainingDiverged(NmtError):
    """Too many consecutive steps with a non-finite loss or gradient."""


class Fault(IntEnum):
    """What went wrong in a step on some rank; every rank acts on the largest of all ranks (``train_step``)."""

    NONE = 0
    NON_FINITE = 1  # a non-finite loss
    OUT_OF_MEMORY = 2


T = TypeVar("T")


TRAIN_LOG = "train_log.jsonl"  # the run directory's log windows, one JSON object per line (rank 0's tokens)


class Stop(NamedTuple):
    """Why training stops; ``interrupted`` (by a signal) means the run is unfinished and resumable."""

    reason: str
    interrupted: bool = False


@dataclass
class TrainState:
    """Counters that make a run resumable; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the epoch consumed by whole updates (see Trainer._updates)
    elapsed: float = 0.0  # training seconds, summed over all sessions of the run
    best_score: float | None = None  # the best validation value of trainer.early_stopping.metric
    best_step: int = 0
    bad_validations: int = 0  # validations since the best one (early-stopping patience)
    skipped_steps: int = 0
    consecutive_bad: int = 0
    stop_reason: str | None = None
    interrupted: bool = False  # stopped by a signal: rerun to resume (absent from older checkpoints)
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Window:
    """What the steps since the last log line trained on, and when the window began."""

    nll: float = 0.0
    tokens: int = 0
    start: float = field(default_factory=time.monotonic)

    def add(self, nll: float, tokens: int) -> None:
        self.nll, self.tokens = self.nll + nll, self.tokens + tokens


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of ``trainer.amp`` (None: fp32). ``auto`` is bf16 on CUDA and fp32
    elsewhere; ``bf16`` also runs on the CPU, slowly there, but through the same autocast regions, mixed
    precision loss and bf16 attention inputs as on a GPU (so the suite exercises them); ``fp16`` needs CUDA,
    for its loss scaling (GradScaler)."""
    choices = {"auto": torch.bfloat16 if device.type == "cuda" else None, "bf16": torch.bfloat16, "none": None}
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("trainer.amp=fp16 needs a CUDA device (loss scaling); use bf16, auto or none here")
        return torch.float16
    if amp not in choices:
        raise ConfigError(f"trainer.amp={amp!r}: use auto, bf16, fp16 or none")
    return choices[amp]


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The forward pass's mixed-precision region: autocast to ``dtype``, or off where it is None (fp32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


class Trainer:
    """Runs training for a model on prepared data, writing everything into ``run_dir``."""

    def __init__(
        self,
        cfg: DictConfig,
        model: Seq2SeqModel,
        data: TrainingData,
        run_dir: Path,
        device: torch.device,
        checkpoint_extra: dict[str, Any],
        dist_ctx: DistContext | None = None,
    ):
        self.cfg, self.tcfg = cfg, TrainerConfig.from_cfg(cfg.trainer)  # this loop's options, checked
        self.metric = self.tcfg.metric
        self.model, self.data, self.run_dir, self.device = model.to(device), data, Path(run_dir), device
        self.checkpoint_extra = checkpoint_extra  # config text and tokenizers, stored in every checkpoint
        self.ctx = dist_ctx or DistContext()
        self.train_model: torch.nn.Module = self.model
        if self.ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = build_optimizer(model.parameters(), self.tcfg.optimizer)
        self.batch_sentences = self._batch_sentences()
        src_lens, tgt_lens = lengths(data.train)
        self.sampler = TokenBatchSampler(
            src_lens,
            tgt_lens,
            self.tcfg.max_tokens,
            shuffle=True,
            seed=self.tcfg.seed,
            max_sentences=self.batch_sentences,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            rows=data.train_rows,
        )
        self.state = TrainState()
        self.autocast_dtype = autocast_dtype(self.tcfg.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.translator = Translator(
            model,
            data.src_tok,
            data.tgt_tok,
            # the run's own search settings (length limit, penalty), at the validation beam width
            SearchConfig.from_cfg({"beam_size": self.tcfg.valid_beam}, cfg.search),
            max_tokens=self.tcfg.eval_max_tokens,
            device=device,
        )
        self._signal = 0  # the number of a signal that asked this rank to stop
        self.writer: SummaryWriter | None = None
        # the running session's loop state, set by train()
        self._bar: tqdm | None = None
        self._window = _Window()
        self._session_start = self._elapsed_before = self._last_save = 0.0

    def _batch_sentences(self) -> int | None:
        """Sentences per micro-batch on this rank: ``trainer.max_sentences`` is the global batch of one
        update (the papers' "mini-batches of 128"), split evenly over ranks and accumulation steps."""
        if not self.tcfg.max_sentences:
            return None
        total, parts = self.tcfg.max_sentences, self.ctx.world_size * self.tcfg.accumulate
        if total % parts:
            raise ConfigError(
                f"trainer.max_sentences={total} is the sentences of one update; it must divide evenly over "
                f"{self.ctx.world_size} ranks x trainer.accumulate={self.tcfg.accumulate}: choose a multiple of {parts}"
            )
        return total // parts

    # ---- checkpoint state -------------------------------------------------------------------------
    def payload(self, with_training_state: bool = True) -> dict[str, Any]:
        payload = {**self.checkpoint_extra, "model": self.model.state_dict(), "trainer": dataclasses.asdict(self.state)}
        if with_training_state:
            payload["optimizer"] = self.optimizer.state_dict()
            payload["rng"] = {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate(),
            }
        return payload

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a training checkpoint: weights, optimizer, counters and RNG streams."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainState(**payload["trainer"])
        best = self.state.best_score
        if not self.metric.higher_is_better and best is not None and best < 0:
            # Checkpoints written before METRICS stored a loss or perplexity negated (so that higher was
            # always better); a real one is never negative.
            self.state.best_score = -best
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        self._set_lr()
        log.info(
            "resumed at step %d (epoch %d, batch %d)", self.state.step, self.state.epoch, self.state.batch_in_epoch
        )

    def save(self) -> None:
        self._on_main_rank(self._write_checkpoint)

    def _write_checkpoint(self) -> None:
        save_checkpoint(self.run_dir / f"ckpt_{self.state.step}.pt", self.payload())
        prune_checkpoints(self.run_dir, self.tcfg.keep_last)

    def _on_main_rank(self, write: Callable[[], T]) -> T | None:
        """``write`` (a checkpoint, a validation with best.pt, a line of the training log) on rank 0, while
        the others wait. A file that could not be written (a full disk) stops every rank, with the same
        error: training goes no further than its last checkpoint, and no rank waits for rank 0 in the next
        collective."""
        result, error = None, None
        if self.ctx.is_main:
            try:
                result = write()
            except CheckpointError as e:
                error = str(e)
        error = broadcast(error, self.ctx)
        if error is not None:
            raise CheckpointError(
                f"{error}; free some space (or lower trainer.keep_last) and rerun the same command to resume"
            )
        return result

    # ---- steps ------------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = learning_rate(
            self.state.step + 1,
            self.tcfg.scheduler,
            self.tcfg.optimizer.lr,
            self.model.model_dim,
            self.state.epoch,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _forward_loss(self, batch: Batch, model: torch.nn.Module | None = None) -> tuple[Tensor, Tensor, int]:
        with autocast(self.device, self.autocast_dtype):
            logits, _ = (model or self.model)(batch.src, batch.src_lengths, batch.tgt_in)
        return label_smoothed_nll(logits, batch.tgt_out, self.tcfg.label_smoothing)

    def _loss_denominator(self, batches: list[Batch]) -> float:
        """What the summed loss of one update is divided by: its target tokens or its sentences
        (``trainer.loss_norm``), counted over every micro-batch and every rank."""
        if self.tcfg.loss_norm == "sentences":
            count = sum(b.src.size(0) for b in batches)
        else:
            count = sum(b.ntokens for b in batches)
        return float(all_reduce_sum(count, self.ctx))

    def train_step(self, batches: list[Batch]) -> tuple[float, int] | None:
        """One optimizer step over ``batches`` (gradient accumulation); None if the step was skipped.

        The gradient is that of the summed loss of the whole update (all micro-batches, all ranks)
        divided by its tokens or sentences (``trainer.loss_norm``): per-token averaging as in fairseq for
        the Transformer; per-sentence as in Sutskever et al. (2014) and Luong et al. (2015), whose "divided
        by 128" with plain SGD at lr 1 only works with it. So accumulation over k batches equals k ranks.
        DDP averages gradients over ranks, hence the factor world_size.

        A batch out of memory or a non-finite loss on any rank skips the step on every rank: the ranks agree
        on it before each backward pass, since a rank that skipped alone would leave the others waiting in
        the gradient all-reduce, or update weights the others do not.
        """
        self.model.train()
        lr = self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.ctx.world_size / self._loss_denominator(batches)
        total_nll, total_tokens, fault, failed = 0.0, 0, Fault.NONE, None
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            # DDP all-reduces gradients in the backward pass of the last micro-batch only.
            sync = i == len(batches) - 1 or not self.ctx.enabled
            with nullcontext() if sync else self.train_model.no_sync():
                if not fault:  # else the previous backward pass ran out of memory
                    try:
                        loss, nll, ntok = self._forward_loss(batch, self.train_model)
                        fault = Fault.NONE if torch.isfinite(loss) else Fault.NON_FINITE
                    except torch.OutOfMemoryError:
                        fault, failed = Fault.OUT_OF_MEMORY, batch
                fault = Fault(all_reduce_max(fault, self.ctx))
                if fault:
                    break
                try:
                    self.scaler.scale(loss * scale).backward()
                except torch.OutOfMemoryError:
                    if self.ctx.enabled and sync:
                        raise self._out_of_memory_in_all_reduce() from None
                    fault, failed = Fault.OUT_OF_MEMORY, batch
            total_nll += float(nll)
            total_tokens += ntok
        if fault is Fault.OUT_OF_MEMORY:
            self._skip_out_of_memory(failed)
            return None
        finite = fault is Fault.NONE
        if finite:
            self.scaler.unscale_(self.optimizer)
            clip = self.tcfg.clip_norm
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf"))
            finite = bool(torch.isfinite(norm))
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_steps += 1
            self.state.consecutive_bad += 1
            log.warning(
                "step %d: non-finite loss or gradient, step skipped (%d in a row)",
                self.state.step + 1,
                self.state.consecutive_bad,
            )
            if self.state.consecutive_bad >= self.tcfg.max_bad_steps:
                raise TrainingDiverged(
                    f"{self.state.consecutive_bad} consecutive steps had a non-finite loss or gradient; "
                    "lower trainer.optimizer.lr, raise trainer.scheduler.warmup, or use trainer.amp=none"
                )
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.consecutive_bad = 0
        self.state.step += 1
        if self.writer:
            self.writer.add_scalar("train/lr", lr, self.state.step)
        return total_nll, total_tokens

    def _skip_out_of_memory(self, batch: Batch | None) -> None:
        """Drop the step whose ``batch`` did not fit (None: a batch of another rank), free its memory and go
        on; the run is not lost."""
        self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.state.skipped_steps += 1
        if batch is None:
            where = "another rank"
        else:
            where = f"a batch of source {tuple(batch.src.shape)} and target {tuple(batch.tgt_out.shape)} tokens"
        log.warning(
            "step %d: out of memory on %s; step skipped. Lower trainer.max_tokens (now %d) or raise "
            "trainer.accumulate to keep the effective batch",
            self.state.step + 1,
            where,
            self.tcfg.max_tokens,
        )

    def _out_of_memory_in_all_reduce(self) -> NmtError:
        """Out of memory in a backward pass that all-reduces gradients: the other ranks are in that all-reduce
        already, so the step cannot be skipped together; this rank stops, and torchrun stops the others."""
        return NmtError(
            f"step {self.state.step + 1}: out of memory in the backward pass of rank {self.ctx.rank}, while the "
            f"other ranks all-reduce gradients. Lower trainer.max_tokens (now {self.tcfg.max_tokens}) or raise "
            "trainer.accumulate, and rerun the same command to resume"
        )

    # ---- validation -------------------------------------------------------------------------------
    @torch.no_grad()
    def valid_loss(self, eval_set: EvalSet) -> float:
        """Per-token NLL (no smoothing) of the references under teacher forcing."""
        self.model.eval()
        src_lens, tgt_lens = lengths(eval_set.encoded)
        sampler = TokenBatchSampler(src_lens, tgt_lens, self.tcfg.eval_max_tokens, shuffle=False)
        total, count = 0.0, 0
        for batch in batch_loader(eval_set.encoded, sampler):
            batch = batch.to(self.device)
            _, nll, ntok = self._forward_loss(batch)
            total, count = total + float(nll), count + ntok
        return total / max(count, 1)

    def validate(self) -> dict[str, float] | None:
        """Validate on rank 0 (loss, perplexity, BLEU at trainer.valid_beam), keep best.pt (by
        trainer.early_stopping.metric); other ranks wait."""
        return self._on_main_rank(self._validate)

    def _validate(self) -> dict[str, float]:
        valid = self.data.valid
        started = time.monotonic()
        loss = self.valid_loss(valid)
        record = {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "elapsed_min": self.state.elapsed / 60,
            "valid_loss": loss,
            "valid_ppl": math.exp(min(loss, 50)),
        }
        if self.tcfg.validate_bleu:
            hyps = self.translator.translate(valid.sources)
            record["valid_bleu"] = corpus_bleu(hyps, valid.references)
        improved = self._improves(record[self.metric.key])
        if improved:
            self.state.best_score, self.state.best_step = record[self.metric.key], self.state.step
            self.state.bad_validations = 0
            save_checkpoint(self.run_dir / "best.pt", self.payload(with_training_state=False))
        else:
            self.state.bad_validations += 1
        self.state.history.append(record)
        log.info(
            "validation step %d: loss %.3f ppl %.2f%s%s (%.0fs)",
            self.state.step,
            loss,
            record["valid_ppl"],
            f" bleu {record['valid_bleu']:.2f}" if "valid_bleu" in record else "",
            " *best*" if improved else "",
            time.monotonic() - started,
        )
        if self.writer:
            for k, v in record.items():
                if k.startswith("valid_"):
                    self.writer.add_scalar(f"valid/{k[6:]}", v, self.state.step)
        write_run_file(self.run_dir / "metrics.json", json.dumps(self.state.history, indent=1))
        return record

    def _improves(self, score: float) -> bool:
        """Whether ``score`` of trainer.early_stopping.metric beats the best so far (ties do not)."""
        best = self.state.best_score
        if best is None:
            return True
        return score > best if self.metric.higher_is_better else score < best

    # ---- the loop ---------------------------------------------------------------------------------
    def _stop(self) -> Stop | None:
        """Why training should stop now (a budget, early stopping), or None to go on."""
        tc, s = self.tcfg, self.state
        if tc.max_steps and s.step >= tc.max_steps:
            return Stop(f"reached trainer.max_steps={tc.max_steps}")
        if tc.max_epochs and s.epoch >= tc.max_epochs:
            return Stop(f"reached trainer.max_epochs={tc.max_epochs}")
        if tc.max_minutes and s.elapsed >= 60 * tc.max_minutes:
            return Stop(f"reached trainer.max_minutes={plain_number(tc.max_minutes)}")
        if tc.early_stopping.patience and s.bad_validations >= tc.early_stopping.patience:
            return Stop(
                f"early stopping: no better valid {tc.early_stopping.metric} in {s.bad_validations} validations"
            )
        return None

    def _agreed_stop(self) -> Stop | None:
        """Whether to stop, the same on every rank: a signal to any rank stops them all, after the same step
        (``_finish`` saves a checkpoint to resume from); budgets and early stopping are judged on rank 0."""
        signum = all_reduce_max(self._signal, self.ctx)
        if signum:
            return Stop(f"interrupted by {signal.Signals(signum).name}", interrupted=True)
        return broadcast(self._stop(), self.ctx)

    def _checkpoint_due(self) -> bool:
        """``trainer.checkpoint_every_minutes`` of training time since the last checkpoint (rank 0's clock)."""
        minutes = self.tcfg.checkpoint_every_minutes
        return minutes > 0 and bool(broadcast(self.state.elapsed - self._last_save >= 60 * minutes, self.ctx))

    def _eta(self) -> dict[str, str]:
        """Minutes left under the wall-clock budget, for the progress bar (tqdm's own ETA needs max_steps)."""
        if not self.tcfg.max_minutes:
            return {}
        return {"left_min": f"{max(self.tcfg.max_minutes - self.state.elapsed / 60, 0):.1f}"}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signal = signum
        signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once

    def _updates(self) -> Iterator[list[Batch]]:
        """The rest of the current epoch, ``trainer.accumulate`` batches per update.

        An epoch whose batches do not divide by ``accumulate`` ends with fewer left over: those are
        skipped (never trained on, not counted in ``batch_in_epoch``) and the next epoch starts, as in
        an uninterrupted run; a resumed run skips the same ones, since ``batch_in_epoch`` only counts
        whole updates.
        """
        accumulate = self.tcfg.accumulate
        batches = len(self.sampler.epoch_batches(self.state.epoch))
        if batches < accumulate:
            raise ConfigError(
                f"epoch {self.state.epoch} has {batches} batches per rank ({self.ctx.world_size} ranks), fewer than "
                f"trainer.accumulate={accumulate}: no update is possible; lower trainer.accumulate or "
                "trainer.max_tokens"
            )
        self.sampler.set_epoch(self.state.epoch, self.state.batch_in_epoch)
        pending: list[Batch] = []
        for batch in batch_loader(self.data.train, self.sampler, self.tcfg.num_workers):
            pending.append(batch)
            if len(pending) == accumulate:
                yield pending
                pending = []

    def _tick(self) -> None:
        """Training time so far, summed over all sessions of the run."""
        self.state.elapsed = self._elapsed_before + time.monotonic() - self._session_start

    def _log_effective_batch(self) -> None:
        """The tokens (and sentences) of one update, which the learning rate was tuned for."""
        tc, parts, sentences = self.tcfg, self.ctx.world_size * self.tcfg.accumulate, self.batch_sentences
        log.info(
            "effective batch: %d tokens x %d ranks x %d accumulation = %d padded tokens per step%s",
            tc.max_tokens,
            self.ctx.world_size,
            tc.accumulate,
            tc.max_tokens * parts,
            f", at most {sentences} x {parts} = {sentences * parts} sentences" if sentences else "",
        )

    def _log_window(self) -> None:
        """Report the steps since the last log line (progress bar, log line, TensorBoard, and one line of
        ``train_log.jsonl``, on rank 0) and start a new window."""
        w, step, lr = self._window, self.state.step, self.optimizer.param_groups[0]["lr"]
        seconds = max(time.monotonic() - w.start, 1e-9)
        rate, loss = w.tokens / seconds, w.nll / max(w.tokens, 1)
        if self._bar is not None:
            self._bar.set_postfix(
                epoch=self.state.epoch,
                nll=f"{loss:.3f}",
                tok_s=f"{rate:.0f}",
                min=f"{self.state.elapsed / 60:.1f}",
                **self._eta(),
            )
        log.info(
            "step %d epoch %d nll %.3f lr %.2e tgt tok/s %.0f elapsed %.1f min",
            step,
            self.state.epoch,
            loss,
            lr,
            rate,
            self.state.elapsed / 60,
        )
        if self.writer:
            self.writer.add_scalar("train/nll", loss, step)
            self.writer.add_scalar("train/tokens_per_s", rate, step)
        record = {
            "step": step,
            "epoch": self.state.epoch,
            "nll": loss,
            "lr": lr,
            "tgt_tokens": w.tokens,
            "seconds": seconds,
            "tgt_tokens_per_s": rate,
            "elapsed_min": self.state.elapsed / 60,
        }
        self._on_main_rank(lambda: write_run_file(self.run_dir / TRAIN_LOG, json.dumps(record) + "\n", append=True))
        self._window = _Window()

    def _validate_and_save(self) -> None:
        """Validate every ``trainer.validate_every`` steps; write a checkpoint every ``checkpoint_every``
        steps (0: at each validation) or after ``checkpoint_every_minutes`` of training time."""
        step, validate_every = self.state.step, self.tcfg.validate_every
        checkpoint_every = self.tcfg.checkpoint_every or validate_every  # 0: at every validation
        if validate_every and step % validate_every == 0:
            self.validate()
        if (checkpoint_every and step % checkpoint_every == 0) or self._checkpoint_due():
            self.save()
            self._last_save = self.state.elapsed

    def _finish(self, stop: Stop) -> None:
        """Record why training stopped; validate the final weights (unless interrupted or just done) and
        write the final checkpoint."""
        self.state.stop_reason, self.state.interrupted = stop.reason, stop.interrupted
        log.info("stopping: %s (step %d, %.1f min)", stop.reason, self.state.step, self.state.elapsed / 60)
        if not stop.interrupted and not any(h["step"] == self.state.step for h in self.state.history):
            self.validate()
        self.save()

    def train(self) -> TrainState:
        """Train until a stop condition holds; always leaves a checkpoint of the final state."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard")) if self.ctx.is_main else None
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        total = self.tcfg.max_steps or None
        disable = None if self.ctx.is_main else True
        bar = self._bar = tqdm(total=total, initial=self.state.step, disable=disable, unit="step", dynamic_ncols=True)
        self._log_effective_batch()
        self._session_start, self._elapsed_before = time.monotonic(), self.state.elapsed
        self._last_save, self._window = self.state.elapsed, _Window()
        # A resumed run is running again: what its checkpoint said about the stop no longer holds.
        self.state.stop_reason, self.state.interrupted = None, False
        try:
            while (stop := self._agreed_stop()) is None:
                for update in self._updates():
                    self.state.batch_in_epoch += len(update)
                    result = self.train_step(update)
                    self._tick()
                    if result is None:
                        continue
                    bar.update(1)
                    self._window.add(*result)
                    if self.state.step % self.tcfg.log_every == 0:
                        self._log_window()
                    self._validate_and_save()
                    if self._agreed_stop() is not None:
                        break
                else:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
            self._finish(stop)
        finally:
            bar.close()
            self._bar = None
            if self.writer:
                self.writer.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.state
