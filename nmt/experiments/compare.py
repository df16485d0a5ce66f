"""A comparison (``nmt-compare``): train every run with every seed, then report them side by side.

A comparison (``configs/experiment/*.yaml``) lists named runs, each a set of ``nmt-train`` overrides on
top of overrides shared by all of them, and the seeds every run is trained with. Each (run, seed) is an
ordinary ``nmt-train`` run in ``<sweep_dir>/<run>/seed<k>``, trained in its own process. As each one
finishes, what the report needs from it is kept in the repository (:mod:`nmt.experiments.kept_rows`, under
``<report_dir>/rows``); a kept row whose settings match is reused and never trained again, so a table
can be completed over many sittings, and ``compare.train=false`` reports what is kept, listing the
pending rows. :mod:`nmt.experiments.report` writes the tables, the claims' verdicts and the plots to ``report_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nmt.data.config import DataConfig
from nmt.data.corpus import load_split
from nmt.data.prepare import prepare_training_data
from nmt.decoding.translator import Translator
from nmt.errors import ConfigError, NmtError
from nmt.experiments.claims import EXPECTED_DROP
from nmt.experiments.kept_rows import ROW_FILE, KeptRow, fingerprint, keep_row, load_row, row_folder
from nmt.experiments.plots import AttentionExample
from nmt.experiments.report import Row, TestSet, write_report
from nmt.training.checkpoint import evaluation_checkpoint, latest_checkpoint
from nmt.training.config import TrainerConfig
from nmt.training.run_config import computed_settings

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One seed of one run of the comparison: the full ``nmt-train`` overrides and the composed config."""

    run: str
    seed: int
    overrides: list[str]
    cfg: DictConfig

    @property
    def name(self) -> str:
        return f"{self.run}/seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)


def compose_runs(cfg: DictConfig) -> list[RunSpec]:
    """Compose the ``nmt-train`` config of every run listed under ``compare.runs``."""
    c = cfg.compare
    if not c.runs:
        raise ConfigError("compare.runs is empty: pick a comparison, e.g. nmt-compare experiment=compare_multi30k")
    if c.baseline not in c.runs:
        raise ConfigError(f"compare.baseline={c.baseline!r} is not one of compare.runs: {', '.join(c.runs)}")
    reference = dict(c.reference or {})
    named = {"paper": set(c.paper or {}), "reference": set(reference) | set(reference.values())}
    for option, names in named.items():
        unknown = sorted(set(names) - set(c.runs))
        if unknown:
            raise ConfigError(
                f"compare.{option} names {', '.join(unknown)}, not among compare.runs: {', '.join(c.runs)}"
            )
    check_length_claims(c)
    seeds = [int(k) for k in c.seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"compare.seeds={list(c.seeds)}: give distinct seeds, e.g. [1, 2, 3]")
    specs = []
    for name, own in c.runs.items():
        for seed in seeds:
            overrides = [
                *c.common,
                *own,
                *c.extra,
                f"trainer.seed={seed}",
                f"name={c.name}_{name}_seed{seed}",
                f"run_dir={Path(c.sweep_dir) / name / f'seed{seed}'}",
            ]
            try:
                run_cfg = hydra.compose("train", overrides=overrides)
            except Exception as e:  # Hydra's own message names the bad override
                raise ConfigError(f"compare.runs.{name}: {e}") from e
            try:  # a mistyped option stops the comparison now, not when its run's turn comes
                TrainerConfig.from_cfg(run_cfg.trainer)
                DataConfig.from_cfg(run_cfg.data)
            except ConfigError as e:
                raise ConfigError(f"compare.runs.{name}: {e}") from e
            specs.append(RunSpec(str(name), seed, overrides, run_cfg))
    return specs


def check_length_claims(c: DictConfig) -> None:
    """compare.length_claims must name runs of the comparison and say drops or steady (before any training)."""
    spec = c.get("length_claims")
    if not spec:
        return
    for i, claim in enumerate(spec.get("claims") or []):
        where = f"compare.length_claims.claims[{i}]"
        for key in ("run", "against"):
            if claim.get(key) is not None and claim[key] not in c.runs:
                raise ConfigError(f"{where}.{key}={claim[key]!r} is not one of compare.runs: {', '.join(c.runs)}")
        if claim.get("run") is None or claim.get("expect") not in EXPECTED_DROP:
            raise ConfigError(f"{where}: give run and expect: one of {', '.join(EXPECTED_DROP)}")
    if spec.get("long_words") is None:
        raise ConfigError(
            "compare.length_claims.long_words: give the source length (words) beyond which a sentence is long"
        )


def is_finished(spec: RunSpec) -> bool:
    """True if the run directory holds a finished run of exactly this config (results.json), whose test
    translations were decoded with this config's search and evaluation settings, every test split.

    results.json must describe the newest checkpoint: a run that finished, was continued under other
    settings (a higher epoch cap) and stopped before finishing again keeps the earlier results.json."""
    results_file = spec.run_dir / "results.json"
    if not results_file.is_file():
        return False
    found = latest_checkpoint(spec.run_dir)
    if found is None:
        return False
    saved = yaml.safe_load(found[1]["config"])
    settings = OmegaConf.to_container(spec.cfg, resolve=True)
    if computed_settings(saved) != computed_settings(settings):
        return False
    results = json.loads(results_file.read_text())
    if results.get("steps") != found[1]["trainer"]["step"]:
        return False
    decoded = all(results.get(k) == settings[k] for k in ("search", "eval"))
    return decoded and all(split in results.get("test", {}) for split in spec.cfg.data.test_splits)


@dataclass
class Child:
    """One ``nmt-train`` process of :func:`train_runs`: its run, where its console goes, its CPU threads."""

    spec: RunSpec
    process: subprocess.Popen
    log_file: Path
    threads: int
    moving: bool = False  # stopped on purpose, to resume with every core


def start_child(spec: RunSpec, jobs: int, threads: int) -> Child:
    """Start ``nmt-train`` for ``spec`` (resuming it if it has checkpoints) with ``threads`` CPU threads."""
    print(f"[{spec.name}] nmt-train {' '.join(spec.overrides)}", flush=True)
    command = [sys.executable, "-m", "nmt.cli.train", *spec.overrides]
    if jobs == 1:
        return Child(spec, subprocess.Popen(command), spec.run_dir / "train.log", threads)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    log_file = spec.run_dir / "console.log"
    with open(log_file, "ab") as console:
        process = subprocess.Popen([*command, f"trainer.threads={threads}"], stdout=console, stderr=subprocess.STDOUT)
    return Child(spec, process, log_file, threads)


def train_runs(specs: list[RunSpec], jobs: int, on_finish: Callable[[RunSpec], None] = lambda spec: None) -> None:
    """Train (or resume) each run with ``nmt-train`` in its own child process, ``jobs`` of them at a time.

    With ``jobs > 1`` each child gets ``cores // jobs`` threads and writes its console to
    ``<run_dir>/console.log``; the data caches are built first, here, so the children only read them.
    Why run several: the CPU models' matmuls are small and scale poorly over threads. On 2 cores two
    one-thread Luong runs trained 1,918 tgt tok/s each, one two-thread run 3,131 (1.23x more per second
    side by side). A run left training alone (nothing else running or waiting) would leave cores idle, so it
    is stopped with SIGTERM, which saves a checkpoint at the current step, and resumed with every core: the
    odd last run of a table trains about twice as fast. A failed run starts no new ones; those already
    training finish, then the error names it. ``on_finish`` is called with each run that finished.
    """
    if jobs > 1:
        prepared: set[str] = set()
        for spec in specs:
            data_yaml = OmegaConf.to_yaml(spec.cfg.data)
            if data_yaml not in prepared:
                prepare_training_data(spec.cfg.data)
                prepared.add(data_yaml)
    cores = os.cpu_count() or 1
    threads = max(1, cores // jobs)
    pending, running, failed = list(specs), {}, []
    while running or (pending and not failed):
        while pending and not failed and len(running) < jobs:
            spec = pending.pop(0)
            alone = not pending and not running
            running[spec.name] = start_child(spec, jobs, cores if alone else threads)
        for name, child in list(running.items()):
            if child.process.poll() is None:
                continue
            del running[name]
            if child.process.returncode == 0:
                print(f"[{name}] finished", flush=True)
                on_finish(child.spec)
            elif child.moving:
                print(f"[{name}] resuming alone with {cores} threads", flush=True)
                running[name] = start_child(child.spec, jobs, cores)
            else:
                failed.append(f"{name!r} (exit status {child.process.returncode}, log: {child.log_file})")
        if not pending and not failed and len(running) == 1:
            lone = next(iter(running.values()))
            if lone.threads < cores and not lone.moving:
                lone.moving = True
                lone.process.terminate()
        if running:
            time.sleep(0.5)
    if failed:
        raise NmtError(f"run {', '.join(failed)} stopped; rerun the same nmt-compare command to resume it")


def load_run_translator(spec: RunSpec, device: str) -> Translator:
    """The weights ``eval.checkpoint`` selects (best / last / average), ready to decode."""
    eval_cfg = spec.cfg.eval
    _, payload = evaluation_checkpoint(spec.run_dir, str(eval_cfg.checkpoint), int(eval_cfg.average_last))
    max_tokens = TrainerConfig.from_cfg(spec.cfg.trainer).eval_max_tokens
    return Translator.from_payload(payload, spec.cfg.search, device, max_tokens)


def heatmap_rows(sources: list[str], count: int, max_words: int) -> list[int]:
    """The first ``count`` test sentences of 5 to ``max_words`` words (fixed, so plots are comparable)."""
    return [i for i, s in enumerate(sources) if 5 <= len(s.split()) <= max_words][:count]


def attention_examples(spec: RunSpec, sources: list[str], device: str, c: DictConfig) -> list[AttentionExample]:
    """Attention heatmaps of a few test sentences, drawn with the run's weights where its checkpoint is on
    this machine (kept rows carry no weights: a report from them alone has no heatmaps)."""
    if int(c.heatmaps) <= 0 or latest_checkpoint(spec.run_dir) is None:
        return []
    translator = load_run_translator(spec, device)
    if not translator.model.has_attention:
        return []
    translator.search = dataclasses.replace(translator.search, need_attention=True)
    rows = heatmap_rows(sources, int(c.heatmaps), int(c.heatmap_max_words))
    src_ids = translator.src_tok.encode([sources[i] for i in rows])
    examples = []
    for ids, nbest in zip(src_ids, translator.translate_ids(src_ids)):
        hyp = nbest[0]
        examples.append(
            AttentionExample(
                translator.src_tok.pieces(ids) + ["</s>"],
                translator.tgt_tok.pieces(hyp.tokens) + ["</s>"],
                hyp.attention.numpy(),
            )
        )
    return examples


def keep(spec: RunSpec, report_dir: Path) -> KeptRow:
    """Keep a finished run's row in the report folder (its overrides without this machine's run_dir)."""
    overrides = [o for o in spec.overrides if not o.startswith(("run_dir=", "name="))]
    return keep_row(spec.run_dir, row_folder(report_dir, spec.run, spec.seed), spec.cfg, spec.run, spec.seed, overrides)


def copy_kept_row(report_dir: Path, folder: Path, spec: RunSpec, expected: str) -> KeptRow | None:
    """The same row kept by another comparison beside this one (same fingerprint: the same training and
    decoding), copied into this comparison's folder; None if there is none."""
    for row_file in sorted(report_dir.parent.glob(f"*/rows/*/*/{ROW_FILE}")):
        if row_file.parent != folder and json.loads(row_file.read_text()).get("fingerprint") == expected:
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(row_file.parent, folder)
            print(f"[{spec.name}] the same row is kept in {row_file.parent}: copied", flush=True)
            return load_row(folder, spec.run, spec.seed, expected)
    return None


def collect_rows(specs: list[RunSpec], report_dir: Path) -> tuple[dict[str, KeptRow], list[RunSpec]]:
    """The rows already kept under these settings (a finished run directory is kept first), and the runs
    still to train."""
    kept, missing = {}, []
    for spec in specs:
        folder = row_folder(report_dir, spec.run, spec.seed)
        expected = fingerprint(spec.cfg)
        row = load_row(folder, spec.run, spec.seed, expected) or copy_kept_row(report_dir, folder, spec, expected)
        if row is None and is_finished(spec):
            row = keep(spec, report_dir)
        if row is not None:
            print(f"[{spec.name}] kept row found in {folder}: not retraining", flush=True)
            kept[spec.name] = row
            continue
        if load_row(folder, spec.run, spec.seed) is not None:
            print(f"[{spec.name}] the row kept in {folder} was trained under other settings: training again")
        missing.append(spec)
    return kept, missing


def test_sets(specs: list[RunSpec]) -> dict[str, TestSet]:
    """The comparison's test splits (``data.test_splits``, the same for every run), raw text."""
    first = DataConfig.from_cfg(specs[0].cfg.data)
    for spec in specs:
        data = DataConfig.from_cfg(spec.cfg.data)
        if data.test_splits != first.test_splits or data.name != first.name:
            raise ConfigError(
                f"run {spec.name!r} is tested on {data.name} {list(data.test_splits)}, "
                f"{specs[0].name!r} on {first.name} {list(first.test_splits)}: set data and data.test_splits "
                "in compare.common"
            )
    sets = {}
    for split in first.test_splits:
        raw = load_split(first, split)
        sets[split] = TestSet(list(raw["src"]), list(raw["tgt"]))
    return sets


def run_comparison(cfg: DictConfig) -> Path:
    """Train what is missing (unless ``compare.train=false``), keeping each row as it finishes, then
    write the report from the kept rows; returns the report directory."""
    c = cfg.compare
    specs = compose_runs(cfg)
    if int(c.jobs) < 1:
        raise ConfigError(f"compare.jobs={c.jobs}: give the number of runs to train at once (1 or more)")
    report_dir = Path(c.report_dir)
    sets = test_sets(specs)
    kept, missing = collect_rows(specs, report_dir)
    if c.train and missing:

        def finished(spec: RunSpec) -> None:
            kept[spec.name] = keep(spec, report_dir)

        train_runs(missing, int(c.jobs), finished)
    rows = []
    for name, own in c.runs.items():
        its = [s for s in specs if s.run == name]
        done = [kept[s.name] for s in its if s.name in kept]
        examples = attention_examples(its[0], next(iter(sets.values())).sources, str(cfg.device), c) if done else []
        rows.append(Row(str(name), its[0].cfg, list(own), done, [s.seed for s in its if s.name not in kept], examples))
    write_report(report_dir, rows, sets, c, _command_line())
    print(f"report written to {report_dir / 'report.md'}")
    return report_dir


def _command_line() -> str:
    """The nmt-compare command that produced this report (its overrides as typed)."""
    try:
        return " ".join(["nmt-compare", *HydraConfig.get().overrides.task])
    except ValueError:  # called outside the command-line entry point
        return "nmt-compare (called from Python)"
