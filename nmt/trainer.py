"""The training loop: steps, validation, checkpoints, early stopping and exact resume.

One Trainer serves every architecture through the shared model interface. Everything that decides
what happens next (step, epoch, batch position inside the epoch, best score, patience, skipped steps,
elapsed time, RNG states, optimizer moments) is in the checkpoint, so a resumed run continues the run it
came from; the learning rate is a pure function of the step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from nmt.checkpoint import prune_checkpoints, save_checkpoint
from nmt.data.batching import Batch, TokenBatchSampler, batch_loader, lengths
from nmt.data.prepare import EvalSet, TrainingData
from nmt.distributed import DistContext, all_reduce_sum, barrier, broadcast
from nmt.errors import ConfigError, NmtError
from nmt.loss import label_smoothed_nll
from nmt.metrics import corpus_bleu
from nmt.models import Seq2SeqModel
from nmt.optim import build_optimizer, learning_rate
from nmt.search import SearchConfig
from nmt.translator import Translator

log = logging.getLogger(__name__)


class TrainingDiverged(NmtError):
    """Too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class TrainState:
    """Counters that make a run resumable; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0  # training seconds, summed over all sessions of the run
    best_score: float | None = None
    best_step: int = 0
    bad_validations: int = 0  # validations since the best one (early-stopping patience)
    skipped_steps: int = 0
    consecutive_bad: int = 0
    stop_reason: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)


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
        self.cfg, self.t = cfg, cfg.trainer
        if self.t.early_stopping.metric not in ("bleu", "loss", "ppl"):
            raise ConfigError(f"trainer.early_stopping.metric={self.t.early_stopping.metric!r}: use bleu, loss or ppl")
        if self.t.early_stopping.metric == "bleu" and not self.t.validate_bleu:
            raise ConfigError(
                "trainer.early_stopping.metric=bleu needs trainer.validate_bleu=true (or choose metric=loss)"
            )
        self.model, self.data, self.run_dir, self.device = model.to(device), data, Path(run_dir), device
        self.checkpoint_extra = checkpoint_extra  # config text and tokenizers, stored in every checkpoint
        self.ctx = dist_ctx or DistContext()
        self.train_model: torch.nn.Module = self.model
        if self.ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = build_optimizer(model.parameters(), self.t.optimizer)
        if str(self.t.loss_norm) not in ("tokens", "sentences"):
            raise ConfigError(f"trainer.loss_norm={self.t.loss_norm!r}: use tokens or sentences")
        self.batch_sentences = self._batch_sentences()
        src_lens, tgt_lens = lengths(data.train)
        self.sampler = TokenBatchSampler(
            src_lens,
            tgt_lens,
            int(self.t.max_tokens),
            shuffle=True,
            seed=int(self.t.seed),
            max_sentences=self.batch_sentences,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            rows=data.train_rows,
        )
        self.state = TrainState()
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.t.amp))
        if device.type != "cuda":
            self.autocast_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.translator = Translator(
            model,
            data.src_tok,
            data.tgt_tok,
            # the run's own search settings (length limit, penalty), at the validation beam width
            SearchConfig.from_cfg({"beam_size": int(self.t.valid_beam)}, cfg.search),
            max_tokens=int(self.t.eval_max_tokens),
            device=device,
        )
        self._stop_signal: str | None = None
        self.writer: SummaryWriter | None = None

    def _batch_sentences(self) -> int | None:
        """Sentences per micro-batch on this rank: ``trainer.max_sentences`` is the global batch of one
        update (the papers' "mini-batches of 128"), split evenly over ranks and accumulation steps."""
        if not self.t.max_sentences:
            return None
        total, parts = int(self.t.max_sentences), self.ctx.world_size * int(self.t.accumulate)
        if total % parts:
            raise ConfigError(
                f"trainer.max_sentences={total} is the sentences of one update; it must divide evenly over "
                f"{self.ctx.world_size} ranks x trainer.accumulate={self.t.accumulate}: choose a multiple of {parts}"
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
        if self.ctx.is_main:
            save_checkpoint(self.run_dir / f"ckpt_{self.state.step}.pt", self.payload())
            prune_checkpoints(self.run_dir, int(self.t.keep_last))
        barrier(self.ctx)

    # ---- steps ------------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = learning_rate(
            self.state.step + 1, self.t.scheduler, float(self.t.optimizer.lr), self.model.model_dim, self.state.epoch
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _forward_loss(self, batch: Batch, model: torch.nn.Module | None = None) -> tuple[Tensor, Tensor, int]:
        with torch.autocast(
            self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            logits, _ = (model or self.model)(batch.src, batch.src_lengths, batch.tgt_in)
        return label_smoothed_nll(logits, batch.tgt_out, float(self.t.label_smoothing))

    def _loss_denominator(self, batches: list[Batch]) -> float:
        """What the summed loss of one update is divided by: its target tokens or its sentences
        (``trainer.loss_norm``), counted over every micro-batch and every rank."""
        if str(self.t.loss_norm) == "sentences":
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
        """
        self.model.train()
        lr = self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.ctx.world_size / self._loss_denominator(batches)
        total_nll, total_tokens, finite = 0.0, 0, True
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            # DDP all-reduces gradients on the last micro-batch only.
            sync = i == len(batches) - 1 or not self.ctx.enabled
            try:
                with nullcontext() if sync else self.train_model.no_sync():
                    loss, nll, ntok = self._forward_loss(batch, self.train_model)
                    if not torch.isfinite(loss):
                        finite = False
                        break
                    self.scaler.scale(loss * scale).backward()
            except torch.OutOfMemoryError:
                self._skip_out_of_memory(batch)
                return None
            total_nll += float(nll)
            total_tokens += ntok
        if finite:
            self.scaler.unscale_(self.optimizer)
            clip = float(self.t.clip_norm)
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
            if self.state.consecutive_bad >= int(self.t.max_bad_steps):
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

    def _skip_out_of_memory(self, batch: Batch) -> None:
        """Drop the batch that did not fit, free its memory and go on; the run is not lost."""
        self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.state.skipped_steps += 1
        log.warning(
            "step %d: out of memory on a batch of source %s and target %s tokens; batch skipped. "
            "Lower trainer.max_tokens (now %d) or raise trainer.accumulate to keep the effective batch",
            self.state.step + 1,
            tuple(batch.src.shape),
            tuple(batch.tgt_out.shape),
            int(self.t.max_tokens),
        )

    # ---- validation -------------------------------------------------------------------------------
    @torch.no_grad()
    def valid_loss(self, eval_set: EvalSet) -> float:
        """Per-token NLL (no smoothing) of the references under teacher forcing."""
        self.model.eval()
        src_lens, tgt_lens = lengths(eval_set.encoded)
        sampler = TokenBatchSampler(src_lens, tgt_lens, int(self.t.eval_max_tokens), shuffle=False)
        total, count = 0.0, 0
        for batch in batch_loader(eval_set.encoded, sampler):
            batch = batch.to(self.device)
            _, nll, ntok = self._forward_loss(batch)
            total, count = total + float(nll), count + ntok
        return total / max(count, 1)

    def validate(self) -> dict[str, float] | None:
        """Validate on rank 0 (loss, perplexity, BLEU at trainer.valid_beam), keep best.pt (by
        trainer.early_stopping.metric); other ranks wait."""
        record = self._validate() if self.ctx.is_main else None
        barrier(self.ctx)
        return record

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
        if self.t.validate_bleu:
            hyps = self.translator.translate_text(valid.sources)
            record["valid_bleu"] = corpus_bleu(hyps, valid.references)
        metric = str(self.t.early_stopping.metric)
        key = {"bleu": "valid_bleu", "loss": "valid_loss", "ppl": "valid_ppl"}[metric]
        score = record[key] if metric == "bleu" else -record[key]
        improved = self.state.best_score is None or score > self.state.best_score
        if improved:
            self.state.best_score, self.state.best_step, self.state.bad_validations = score, self.state.step, 0
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
        (self.run_dir / "metrics.json").write_text(json.dumps(self.state.history, indent=1))
        return record

    # ---- the loop ---------------------------------------------------------------------------------
    def _stop_reason(self) -> str | None:
        t, s = self.t, self.state
        if self._stop_signal:
            return f"interrupted by {self._stop_signal}"
        if t.max_steps and s.step >= int(t.max_steps):
            return f"reached trainer.max_steps={t.max_steps}"
        if t.max_epochs and s.epoch >= int(t.max_epochs):
            return f"reached trainer.max_epochs={t.max_epochs}"
        if t.max_minutes and s.elapsed >= 60 * float(t.max_minutes):
            return f"reached trainer.max_minutes={t.max_minutes}"
        if t.early_stopping.patience and s.bad_validations >= int(t.early_stopping.patience):
            return f"early stopping: no better valid {t.early_stopping.metric} in {s.bad_validations} validations"
        return None

    def _checkpoint_due(self, last_save: float) -> bool:
        """``trainer.checkpoint_every_minutes`` of training time since the last checkpoint (rank 0's clock)."""
        minutes = float(self.t.get("checkpoint_every_minutes") or 0)
        return minutes > 0 and bool(broadcast(self.state.elapsed - last_save >= 60 * minutes, self.ctx))

    def _eta(self) -> dict[str, str]:
        """Minutes left under the wall-clock budget, for the progress bar (tqdm's own ETA needs max_steps)."""
        if not self.t.max_minutes:
            return {}
        return {"left_min": f"{max(float(self.t.max_minutes) - self.state.elapsed / 60, 0):.1f}"}

    def _agreed_stop(self) -> str | None:
        """Rank 0's stop decision, the same on every rank."""
        return broadcast(self._stop_reason(), self.ctx)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signal.Signals(signum).name
        signal.signal(signum, signal.SIG_DFL)  # a second signal stops at once

    def train(self) -> TrainState:
        """Train until a stop condition holds; always leaves a checkpoint of the final state."""
        t = self.t
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard")) if self.ctx.is_main else None
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        total = int(t.max_steps) if t.max_steps else None
        bar = tqdm(
            total=total,
            initial=self.state.step,
            disable=None if self.ctx.is_main else True,
            unit="step",
            dynamic_ncols=True,
        )
        log_every, validate_every = int(t.log_every), int(t.validate_every)
        checkpoint_every = int(t.checkpoint_every) or validate_every  # 0: only at the end
        parts = self.ctx.world_size * int(t.accumulate)
        sentences = self.batch_sentences
        log.info(
            "effective batch: %d tokens x %d ranks x %d accumulation = %d padded tokens per step%s",
            int(t.max_tokens),
            self.ctx.world_size,
            int(t.accumulate),
            int(t.max_tokens) * parts,
            f", at most {sentences} x {parts} = {sentences * parts} sentences" if sentences else "",
        )
        window_tokens, window_nll, window_start = 0, 0.0, time.monotonic()
        session_start, elapsed_before = time.monotonic(), self.state.elapsed
        last_save = self.state.elapsed
        try:
            while (reason := self._agreed_stop()) is None:
                self.sampler.set_epoch(self.state.epoch, self.state.batch_in_epoch)
                pending: list[Batch] = []
                for batch in batch_loader(self.data.train, self.sampler, int(t.num_workers)):
                    pending.append(batch)
                    if len(pending) < int(t.accumulate):
                        continue
                    self.state.batch_in_epoch += len(pending)
                    result = self.train_step(pending)
                    pending = []
                    self.state.elapsed = elapsed_before + time.monotonic() - session_start
                    if result is None:
                        continue
                    window_nll, window_tokens = window_nll + result[0], window_tokens + result[1]
                    bar.update(1)
                    step = self.state.step
                    if step % log_every == 0:
                        rate = window_tokens / max(time.monotonic() - window_start, 1e-9)
                        loss = window_nll / max(window_tokens, 1)
                        bar.set_postfix(
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
                            self.optimizer.param_groups[0]["lr"],
                            rate,
                            self.state.elapsed / 60,
                        )
                        if self.writer:
                            self.writer.add_scalar("train/nll", loss, step)
                            self.writer.add_scalar("train/tokens_per_s", rate, step)
                        window_tokens, window_nll, window_start = 0, 0.0, time.monotonic()
                    if validate_every and step % validate_every == 0:
                        self.validate()
                    if (checkpoint_every and step % checkpoint_every == 0) or self._checkpoint_due(last_save):
                        self.save()
                        last_save = self.state.elapsed
                    if self._agreed_stop() is not None:
                        break
                else:
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
            self.state.stop_reason = reason
            log.info("stopping: %s (step %d, %.1f min)", reason, self.state.step, self.state.elapsed / 60)
            interrupted = reason.startswith("interrupted")
            if not interrupted and not any(h["step"] == self.state.step for h in self.state.history):
                self.validate()
            self.save()
        finally:
            bar.close()
            if self.writer:
                self.writer.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.state
