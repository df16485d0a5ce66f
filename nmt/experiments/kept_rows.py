"""The finished rows of a comparison, kept in the repository so that a table can be completed over many
sittings (one converged row takes about an hour on two CPU cores).

A row is one seed of one run of a comparison. When its ``nmt-train`` run has finished, what the report
needs from it is copied to ``<report_dir>/rows/<run>/seed<k>/``:

  row.json           fingerprint, commit, overrides, why training stopped, steps and minutes
  results.json       nmt-train's summary (test scores, the search settings that decoded them)
  metrics.json       every validation (the learning curve)
  train_log.jsonl    the training log windows (speed)
  <split>.hyp        the detokenized test translations, line N for source line N

``nmt-compare`` reuses a kept row whose fingerprint matches the row it would train (same model, data,
trainer, search and evaluation settings, :func:`fingerprint`) and trains only the missing ones. The
checkpoints are not kept: they are large, and the report needs only the translations.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.training.run_config import computed_settings

KEPT_FILES = ("results.json", "metrics.json", "train_log.jsonl")
ROW_FILE = "row.json"


def fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that decides a row's numbers: model, data, trainer (seed included), search and
    evaluation settings; not the folders, devices or thread counts of the machine that trained it."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    what = {**computed_settings(settings), "search": settings["search"], "eval": settings["eval"]}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def converged(stop_reason: str | None) -> bool:
    """A run converged when early stopping ended it; one that reached a step, epoch or time cap was still
    improving within its patience."""
    return bool(stop_reason) and stop_reason.startswith("early stopping")


def _commit() -> str | None:
    """The commit of the code that trained the row, ``-dirty`` if the package had uncommitted changes
    (None outside a git checkout)."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], capture_output=True, text=True, cwd=here, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


@dataclass
class KeptRow:
    """One finished seed of one run, read from its folder."""

    run: str
    seed: int
    folder: Path
    info: dict[str, Any]

    @property
    def converged(self) -> bool:
        return converged(self.info.get("stop_reason"))

    def hypotheses(self, split: str) -> list[str]:
        return (self.folder / f"{split}.hyp").read_text(encoding="utf-8").split("\n")[:-1]

    def history(self) -> list[dict[str, Any]]:
        return json.loads((self.folder / "metrics.json").read_text())

    def results(self) -> dict[str, Any]:
        return json.loads((self.folder / "results.json").read_text())


def row_folder(report_dir: Path, run: str, seed: int) -> Path:
    return Path(report_dir) / "rows" / run / f"seed{seed}"


def load_row(folder: Path, run: str, seed: int, expected: str | None = None) -> KeptRow | None:
    """The row kept in ``folder``, or None if there is none (or, with ``expected``, if it was trained under
    another fingerprint: its settings or the code's defaults changed since)."""
    row_file = folder / ROW_FILE
    if not row_file.is_file():
        return None
    info = json.loads(row_file.read_text())
    if expected is not None and info.get("fingerprint") != expected:
        return None
    return KeptRow(run, seed, folder, info)


def keep_row(run_dir: Path, folder: Path, cfg: DictConfig, run: str, seed: int, overrides: list[str]) -> KeptRow:
    """Copy a finished run's outputs into ``folder`` (replacing what was there) and describe it in row.json."""
    results = json.loads((run_dir / "results.json").read_text())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in KEPT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, folder / name)
    for split in cfg.data.test_splits:
        shutil.copy2(run_dir / "eval" / f"{split}.hyp", folder / f"{split}.hyp")
    info = {
        "run": run,
        "seed": seed,
        "fingerprint": fingerprint(cfg),
        "commit": _commit(),
        "overrides": overrides,
        "stop_reason": results.get("stop_reason"),
        "converged": converged(results.get("stop_reason")),
        "steps": results["steps"],
        "train_minutes": results["train_minutes"],
        "parameters": results["parameters"],
        "machine": f"{platform.machine()}, CPU capability {torch.backends.cpu.get_cpu_capability()}",
    }
    (folder / ROW_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return KeptRow(run, seed, folder, info)
