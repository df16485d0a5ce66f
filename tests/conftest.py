"""Shared fixtures: real Multi30k data (a small slice of it) and tiny configs for fast CPU training."""

from __future__ import annotations

import errno
import io
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nmt.paths import CONFIG_DIR, REPO_ROOT

torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ["HF_HUB_OFFLINE"] = "1"  # data.source=auto falls back to the hub: tests never reach out (nor wait)
os.environ.setdefault("PYTHONFAULTHANDLER", "1")  # a subprocess killed by a signal (a rank aborting) prints its stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/unit: seconds, no training; tests/integration: training, DDP, servers, browsers. Each test gets
    its tier's marker, so ``pytest -m unit`` selects as ``pytest tests/unit`` does."""
    for item in items:
        item.add_marker("integration" if "integration" in item.path.parts else "unit")


DATA_ROOT = Path(os.environ.get("NMT_DATA_ROOT") or REPO_ROOT.parent / "shared" / "data")
MULTI30K = DATA_ROOT / "multi30k"
N_PAIRS = 64


def read_pairs(split: str, n: int, start: int = 0) -> tuple[list[str], list[str]]:
    if not (MULTI30K / f"{split}.de").is_file():
        pytest.fail(f"Multi30k not found under {DATA_ROOT}: set NMT_DATA_ROOT to the folder holding multi30k/")
    de = (MULTI30K / f"{split}.de").read_text(encoding="utf-8").splitlines()[start : start + n]
    en = (MULTI30K / f"{split}.en").read_text(encoding="utf-8").splitlines()[start : start + n]
    return [s.strip() for s in de], [s.strip() for s in en]


def write_split(folder: Path, stem: str, de: list[str], en: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.de").write_text("".join(s + "\n" for s in de), encoding="utf-8")
    (folder / f"{stem}.en").write_text("".join(s + "\n" for s in en), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root whose multi30k/ holds the first 64 real training pairs as every split."""
    root = tmp_path_factory.mktemp("data")
    de, en = read_pairs("train", N_PAIRS)
    for stem in ("train", "valid", "test2016"):
        write_split(root / "multi30k", stem, de, en)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


TINY_MODELS: dict[str, list[str]] = {
    "transformer": [
        "model=transformer_small",
        "model.d_model=64",
        "model.ff_dim=128",
        "model.heads=4",
        "model.encoder_layers=2",
        "model.decoder_layers=2",
        "model.dropout=0.0",
    ],
    "rnnsearch": [
        "model=rnnsearch",
        "model.embed_dim=64",
        "model.hidden_dim=64",
        "model.attention_dim=64",
        "model.maxout_dim=64",
        "model.dropout=0.0",
    ],
    "rnnencdec": [
        "model=rnnencdec",
        "model.embed_dim=64",
        "model.hidden_dim=128",
        "model.maxout_dim=64",
        "model.dropout=0.0",
    ],
    "luong": [
        "model=luong",
        "model.embed_dim=64",
        "model.hidden_dim=128",
        "model.layers=1",
        "model.dropout=0.0",
        "model.attention.window=4",
        "model.input_feed=true",
    ],
}


def is_comparison(experiment: str) -> bool:
    """An experiment for nmt-compare (it fills the ``compare`` block) rather than a set-up for nmt-train."""
    import yaml

    return "compare" in (yaml.safe_load((CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text()) or {})


def tiny_config(root: Path, cache: Path, run_dir: Path, model: str, extra: list[str] | None = None) -> DictConfig:
    """A full training config: tiny model, 64 real pairs, small subword vocabulary, fast settings."""
    return compose_train(tiny_overrides(root, cache, run_dir, model, extra))


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _tiny_data(root: Path, cache: Path, run_dir: Path) -> list[str]:
    """The data, cache and run directory of a tiny run, with a 400-piece BPE vocabulary."""
    return [
        f"data.root={root}",
        f"data.cache_dir={cache}",
        f"run_dir={run_dir}",
        "data.tokenizer.vocab_size=400",
        "data.tokenizer.model_type=bpe",
    ]


def tiny_overrides(root: Path, cache: Path, run_dir: Path, model: str, extra: list[str] | None = None) -> list[str]:
    """The overrides of :func:`tiny_config` (also for runs in a subprocess)."""
    return [
        *_tiny_data(root, cache, run_dir),
        "trainer.max_tokens=2000",
        "trainer.optimizer.lr=3e-3",
        "trainer.scheduler.kind=constant",
        "trainer.scheduler.warmup=20",
        "trainer.label_smoothing=0.0",
        "trainer.clip_norm=1.0",
        "trainer.validate_every=0",
        "trainer.validate_bleu=false",
        "trainer.early_stopping.metric=loss",
        "trainer.log_every=50",
        "trainer.max_steps=300",
        "search.beam_size=1",
        *TINY_MODELS[model.split(":")[0]],
        *(extra or []),
    ]


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a tiny Transformer that has memorised the 64 pairs."""
    from nmt.training.run import run

    run_dir = tmp_path_factory.mktemp("tiny_transformer")
    run(tiny_config(tiny_root, cache_dir, run_dir, "transformer"))
    return run_dir / "best.pt"


def subprocess_overrides(root: Path, cache: Path, run_dir: Path, *extra: str) -> list[str]:
    """Command-line overrides for a tiny 1+1-layer Transformer run in a subprocess (no validation, no
    test decoding); ``extra`` adds or overrides options."""
    return [
        *_tiny_data(root, cache, run_dir),
        "model.d_model=64",
        "model.ff_dim=128",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "trainer.validate_every=0",
        "trainer.validate_bleu=false",
        "trainer.early_stopping.metric=loss",
        "search.beam_size=1",
        "data.test_splits=[]",
        *extra,
    ]


def torchrun_many(
    runs: dict[str, list[str]],
    faults: dict[str, list[dict]] | None = None,
    port: int = 29614,
    timeout: int = 900,
    fails: bool = False,
) -> str:
    """Train each of ``runs`` (name -> nmt-train overrides) in turn under one 2-process gloo group
    (tests/ddp_runs.py, which also explains ``faults``); returns the ranks' output: rank 0's line
    ``ok <name> <steps> <test scores>`` per run, every rank's state and log lines. The command must succeed
    (or fail, if ``fails``); ranks still running after ``timeout`` seconds are killed, with torchrun, and
    the test fails."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    cmd += [str(Path(__file__).with_name("ddp_runs.py")), json.dumps(runs), json.dumps(faults or {})]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the ranks too, not only torchrun
        out, err = proc.communicate()
        pytest.fail(f"the ranks were still running after {timeout} s:\n{out.decode()[-3000:]}\n{err.decode()[-3000:]}")
    assert (proc.returncode != 0) == fails, out.decode()[-3000:] + err.decode()[-8000:]
    return out.decode()


class FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes of it: later writes raise ENOSPC."""

    room = 4096

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def full_disk_after(files: int) -> Callable[[str, str], BinaryIO]:
    """An ``open`` for nmt.training.checkpoint (set as its ``open``) under which the first ``files``
    checkpoints are written and every later one meets a full disk."""
    opened = itertools.count()

    def open_checkpoint(path: str, mode: str) -> BinaryIO:
        if not Path(path).name.endswith(".pt.tmp"):  # the run's logs: not counted, written
            return open(path, mode)
        return open(path, mode) if next(opened) < files else FullDisk(path, mode)

    return open_checkpoint


def full_disk_for(name: str) -> Callable[[str, str], BinaryIO]:
    """An ``open`` for nmt.training.checkpoint under which every file whose name contains ``name`` meets a
    full disk (and every other file is written)."""

    class NoRoom(FullDisk):
        room = 0

    def open_file(path: str, mode: str) -> BinaryIO:
        return NoRoom(path, mode) if name in Path(path).name else open(path, mode)

    return open_file


# The model configs whose values the model dataclasses used to default to (the papers' sizes): tests that
# build small models state only what they change.
PAPER_MODELS = {
    "transformer": "transformer_base",
    "rnnsearch": "rnnsearch_paper",
    "rnnencdec": "rnnencdec_paper",
    "luong": "luong_paper",
}


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_cfg(arch: str, **overrides) -> dict:
    """configs/model/<the paper config of ``arch``>.yaml as a dict, with ``overrides`` merged in (nested
    dicts merge key by key), ready for ``build_model``."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_train([f"model={PAPER_MODELS[arch]}"]).model)
    cfg.pop("name")
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return cfg


# build_model configs of tiny models of every architecture (unit tests and the benchmark's tests)
TINY = {
    "transformer": model_cfg("transformer", d_model=32, ff_dim=64, heads=4, encoder_layers=2, decoder_layers=2),
    "rnnsearch": model_cfg("rnnsearch", embed_dim=16, hidden_dim=24, attention_dim=20, maxout_dim=12),
    "rnnencdec": model_cfg("rnnencdec", embed_dim=16, hidden_dim=24, maxout_dim=12),
    "luong": model_cfg(
        "luong",
        embed_dim=16,
        hidden_dim=24,
        layers=2,
        input_feed=True,
        attention={"score": "concat", "kind": "local_p", "window": 2},
    ),
    "luong-nofeed": model_cfg("luong", embed_dim=16, hidden_dim=24, layers=2, input_feed=False),
    "luong-brnn": model_cfg("luong", embed_dim=16, hidden_dim=24, layers=2, encoder="bidirectional"),
    "transformer-learned-positions": model_cfg(
        "transformer", d_model=32, ff_dim=64, heads=4, encoder_layers=2, decoder_layers=2, positions="learned"
    ),
    "transformer-small-keys": model_cfg(
        "transformer", d_model=32, ff_dim=64, heads=4, encoder_layers=2, decoder_layers=2, key_dim=4
    ),
}
