"""Self-contained, atomically written checkpoints.

A checkpoint holds the weights, the resolved config (YAML text), the sentencepiece model(s) and, for
training checkpoints, the optimizer, trainer counters and RNG states (no scheduler: the learning rate is
a function of the step). Files are written to a temporary name, fsynced and renamed, so a crash never
leaves a half-written ``*.pt`` behind, and a failed write (a full disk) removes its temporary file and
leaves the checkpoints already there as they were; loading uses ``torch.load(weights_only=True)``. Training
keeps ``ckpt_<step>.pt`` (the last K) and ``best.pt``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import torch

from nmt.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"ckpt_(\d+)\.pt$")


class _Output:
    """Where torch.save writes: ``file``, or nowhere (None) to count the bytes only. It keeps the OSError
    of a failed write (a full disk), which torch.save itself reports as a RuntimeError about a zip record."""

    def __init__(self, file: BinaryIO | None = None):
        self.file, self.size, self.error = file, 0, None

    def write(self, data: bytes) -> int:
        if self.file is not None:
            try:
                self.file.write(data)
            except OSError as e:
                self.error = e
                raise
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def save(self, payload: dict[str, Any]) -> None:
        try:
            torch.save(payload, self)
        except RuntimeError:
            if self.error is None:
                raise
            raise self.error from None


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: temp file, fsync, rename, fsync of the directory. If that fails, the
    temp file is removed and a CheckpointError says why, where, and how much space the checkpoint needs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    payload = {"format_version": FORMAT_VERSION, **payload}
    try:
        with open(tmp, "wb") as f:
            _Output(f).save(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        needed = _Output()
        needed.save(payload)
        free = shutil.disk_usage(path.parent).free
        raise CheckpointError(
            f"could not write checkpoint {path}: {e.strerror or e} (it needs {_size(needed.size)}, "
            f"{_size(free)} free there); the checkpoints written before it are intact"
        ) from None


def write_run_file(path: str | Path, text: str, append: bool = False) -> None:
    """Write (or with ``append``, add to) one of a run's text files (metrics.json, train_log.jsonl). A
    rewrite goes through a temp file, so the previous version stays whole; a failed write (a full disk)
    becomes a CheckpointError that names the file, as a failed checkpoint does."""
    path = Path(path)
    target = path if append else path.with_name(f".{path.name}.tmp")
    try:
        with open(target, "ab" if append else "wb") as f:
            f.write(text.encode("utf-8"))
        if not append:
            os.replace(target, path)
    except OSError as e:
        if not append:
            target.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write {path}: {e.strerror or e}; the checkpoints written before it are intact"
        ) from None


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely, turning every kind of damage into a CheckpointError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, unexpected types
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, this nmt reads version {FORMAT_VERSION}; "
            "re-train or convert it with the nmt release that wrote it"
        )
    return payload


def step_checkpoints(run_dir: str | Path) -> list[Path]:
    """``ckpt_<step>.pt`` files of a run, newest first."""
    found = []
    for p in Path(run_dir).glob("ckpt_*.pt"):
        m = _STEP_FILE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest loadable step checkpoint; damaged ones are reported and skipped."""
    for path in step_checkpoints(run_dir):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            log.warning("%s; falling back to the previous checkpoint", e)
    return None


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints."""
    for path in step_checkpoints(run_dir)[keep_last:]:
        path.unlink(missing_ok=True)


def averaged_checkpoint(paths: list[Path]) -> dict[str, Any]:
    """The first checkpoint (config, tokenizers) with the element-wise mean of all their model weights
    (Vaswani et al. 2017, Sec. 6.1); read one at a time, so only one optimizer state is in memory."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first: dict[str, Any] = {}
    for path in paths:
        payload = load_checkpoint(path)
        first = first or {k: v for k, v in payload.items() if k not in ("optimizer", "rng")}
        for k, v in payload["model"].items():
            total[k] = total[k] + v.double() if k in total else v.double()
        del payload
    return {**first, "model": {k: (v / len(paths)).to(torch.float32) for k, v in total.items()}}


def evaluation_checkpoint(run_dir: str | Path, which: str, average_last: int = 5) -> tuple[str, dict[str, Any]]:
    """The checkpoint a run is evaluated with (``eval.checkpoint``) and a label saying which.

    ``best``: best.pt (the newest step checkpoint if the run never validated); ``last``: the newest
    step checkpoint; ``average``: the newest step checkpoint's config with the mean of the model weights
    of the newest ``average_last`` ones. The payload keeps the config and tokenizers, so it alone
    makes a Translator.
    """
    if which not in ("best", "last", "average"):
        raise CheckpointError(f"eval.checkpoint={which!r}: use best, last or average")
    run_dir = Path(run_dir)
    if which == "best" and (run_dir / "best.pt").is_file():
        return "best.pt", load_checkpoint(run_dir / "best.pt")
    steps = step_checkpoints(run_dir)
    if not steps:
        raise CheckpointError(f"{run_dir} has no ckpt_<step>.pt checkpoint to evaluate")
    if which == "average":
        chosen = steps[:average_last]
        return f"average of {', '.join(p.name for p in chosen)}", averaged_checkpoint(chosen)
    return steps[0].name, load_checkpoint(steps[0])
