"""One training run: data, model and trainer from a composed config, resume, train, then score the test
sets (``nmt-train``, the comparison's child runs, and the DDP test harness run it).

Rerunning the same config continues the run in ``run_dir`` from its newest checkpoint (``resume=true``,
the default); ``resume=false`` refuses to touch a run directory that already has checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from nmt.cli.startup import setup_cpu
from nmt.data.config import DataConfig
from nmt.data.prepare import TrainingData, load_eval_set, prepare_training_data
from nmt.data.tokenizer import checkpoint_tokenizers, shared_vocabulary
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import pick_device
from nmt.errors import ConfigError
from nmt.evaluation.split_scores import evaluate_set, print_score
from nmt.models import build_model, model_config
from nmt.training.checkpoint import evaluation_checkpoint, latest_checkpoint, step_checkpoints, write_run_file
from nmt.training.config import TrainerConfig
from nmt.training.distributed import DistContext, barrier, broadcast, init_distributed, shutdown
from nmt.training.run_config import comparable_config
from nmt.training.trainer import Trainer

log = logging.getLogger(__name__)


def resume_point(cfg: DictConfig, run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to continue from, or None for a fresh run; refuses mismatching runs."""
    if not step_checkpoints(run_dir):
        return None
    if not cfg.resume:
        raise ConfigError(
            f"{run_dir} already holds checkpoints; rerun with resume=true to continue that run, "
            "or pick another run_dir=... (or name=...)"
        )
    found = latest_checkpoint(run_dir)
    if found is None:
        raise ConfigError(f"no checkpoint in {run_dir} could be read; remove the damaged files or pick another run_dir")
    path, payload = found
    saved = yaml.safe_load(payload["config"])
    now = OmegaConf.to_container(cfg, resolve=True)
    if comparable_config(saved) != comparable_config(now):
        raise ConfigError(
            f"{run_dir} holds a run with a different model or data config; pick another run_dir=... "
            "(or name=...) for this one, or rerun with the original options to continue it"
        )
    return path, payload


def final_model(cfg: DictConfig, run_dir: Path, trainer: Trainer) -> str:
    """Load the weights to evaluate (``eval.checkpoint``: best, last or average) into the model."""
    which, payload = evaluation_checkpoint(run_dir, str(cfg.eval.checkpoint), int(cfg.eval.average_last))
    trainer.model.load_state_dict(payload["model"])
    return which


def evaluate_test_sets(cfg: DictConfig, trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    """Score every ``data.test_splits`` entry with beam search; returns the results summary."""
    which = final_model(cfg, run_dir, trainer)
    translator = dataclasses.replace(trainer.translator, search=SearchConfig.from_cfg(cfg.search))
    results: dict[str, Any] = {
        "checkpoint": which,
        "steps": trainer.state.step,
        "train_minutes": round(trainer.state.elapsed / 60, 2),
        "stop_reason": trainer.state.stop_reason,  # early stopping, or the budget that ended the run
        # what decoded eval/<split>.hyp, so nmt-compare can reuse those lines instead of decoding again
        "search": OmegaConf.to_container(cfg.search, resolve=True),
        "eval": OmegaConf.to_container(cfg.eval, resolve=True),
        "test": {},
    }
    print(f"evaluating {which} with {translator.search.describe()}")
    data_cfg = DataConfig.from_cfg(cfg.data)
    for split in data_cfg.test_splits:
        eval_set = load_eval_set(data_cfg, split, translator.src_tok, translator.tgt_tok)
        score = evaluate_set(translator, eval_set, run_dir / "eval", str(cfg.eval.tokenize))
        print_score(split, score)
        results["test"][split] = score.to_dict()
    return results


def _prepare_data(data_cfg: DataConfig, ctx: DistContext) -> TrainingData:
    """Rank 0 trains the tokenizer and writes the caches; the other ranks then read them."""
    if ctx.is_main:
        data = prepare_training_data(data_cfg)
    barrier(ctx)
    if not ctx.is_main:
        data = prepare_training_data(data_cfg)
    return data


def checked_config(cfg: DictConfig) -> tuple[TrainerConfig, DataConfig]:
    """The typed trainer and data sections, the model section checked too: an unknown, missing or mistyped
    option stops the run before any data is prepared."""
    model_config(cfg.model)
    return TrainerConfig.from_cfg(cfg.trainer), DataConfig.from_cfg(cfg.data)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (or continue) the configured run and evaluate it; returns the results summary (rank 0)."""
    trainer_cfg, _ = checked_config(cfg)
    setup_cpu(trainer_cfg.threads)
    ctx = init_distributed(trainer_cfg.device)
    try:
        return train_and_evaluate(cfg, ctx)
    finally:
        shutdown(ctx)


def train_and_evaluate(cfg: DictConfig, ctx: DistContext) -> dict[str, Any]:
    """``run`` inside a process group that is already set up (one rank of torchrun, or a single process)."""
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    trainer_cfg, data_cfg = checked_config(cfg)
    cfg.run_dir = broadcast(str(cfg.run_dir), ctx)  # one run directory even if it contains ${now:}
    run_dir = Path(cfg.run_dir)
    start = resume_point(cfg, run_dir)
    torch.manual_seed(trainer_cfg.seed)
    random.seed(trainer_cfg.seed)
    data = _prepare_data(data_cfg, ctx)
    model = build_model(
        cfg.model, len(data.src_tok), len(data.tgt_tok), shared_vocab=shared_vocabulary(data.src_tok, data.tgt_tok)
    )
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %.2fM parameters", cfg.model.arch, n_params / 1e6)
    device = pick_device(trainer_cfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    tokenizers = checkpoint_tokenizers(data.src_tok, data.tgt_tok)
    extra = {"config": OmegaConf.to_yaml(cfg, resolve=True), "tokenizers": tokenizers}
    trainer = Trainer(cfg, model, data, run_dir, device, extra, ctx)
    if start is not None:
        trainer.restore(start[1])
    state = trainer.train()
    if state.interrupted:
        if ctx.is_main:
            print(f"{state.stop_reason}: checkpoint saved at step {state.step}; rerun the same command to resume")
        raise SystemExit(130)
    if not ctx.is_main:
        return {}
    results = {"parameters": n_params, **evaluate_test_sets(cfg, trainer, run_dir)}
    write_run_file(run_dir / "results.json", json.dumps(results, indent=1))
    return results
