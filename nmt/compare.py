"""``nmt-compare``: train every model of a comparison, then write one report that compares them.

    nmt-compare experiment=compare_multi30k

A comparison (``configs/experiment/compare_*.yaml``) lists named runs, each a set of ``nmt-train``
overrides on top of overrides shared by all of them. Every run is an ordinary ``nmt-train`` run in
``<sweep_dir>/<name>``, trained in its own process; a run that already finished under the same config
is reused, an interrupted one is resumed. Then each run's checkpoint decodes the same test split and
:mod:`nmt.report` writes the tables, significance tests and plots to ``report_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nmt.checkpoint import evaluation_checkpoint, latest_checkpoint
from nmt.claims import EXPECTED_DROP
from nmt.cli import report_user_errors, setup_cpu
from nmt.data.prepare import load_eval_set, prepare_training_data
from nmt.errors import ConfigError, NmtError
from nmt.paths import CONFIG_DIR
from nmt.plots import AttentionExample
from nmt.report import DecodedRun, run_overrides, write_report
from nmt.run_config import computed_settings
from nmt.translator import Translator

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One run of the comparison: its name, the full ``nmt-train`` overrides and the composed config."""

    name: str
    overrides: list[str]
    cfg: DictConfig

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
    specs = []
    for name, own in run_overrides(c).items():
        overrides = [
            *c.common,
            *own,
            *c.extra,
            f"name={c.name}_{name}",
            f"run_dir={Path(c.sweep_dir) / name}",
        ]
        try:
            run_cfg = hydra.compose("train", overrides=overrides)
        except Exception as e:  # Hydra's own message names the bad override
            raise ConfigError(f"compare.runs.{name}: {e}") from e
        specs.append(RunSpec(name, overrides, run_cfg))
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
    """True if the run directory holds a finished run (results.json) of exactly this config."""
    if not (spec.run_dir / "results.json").is_file():
        return False
    found = latest_checkpoint(spec.run_dir)
    if found is None:
        return False
    saved = yaml.safe_load(found[1]["config"])
    return computed_settings(saved) == computed_settings(OmegaConf.to_container(spec.cfg, resolve=True))


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
    command = [sys.executable, "-m", "nmt.train", *spec.overrides]
    if jobs == 1:
        return Child(spec, subprocess.Popen(command), spec.run_dir / "train.log", threads)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    log_file = spec.run_dir / "console.log"
    with open(log_file, "ab") as console:
        process = subprocess.Popen([*command, f"trainer.threads={threads}"], stdout=console, stderr=subprocess.STDOUT)
    return Child(spec, process, log_file, threads)


def train_runs(specs: list[RunSpec], jobs: int) -> None:
    """Train (or resume) each run with ``nmt-train`` in its own child process, ``jobs`` of them at a time.

    With ``jobs > 1`` each child gets ``cores // jobs`` threads and writes its console to
    ``<run_dir>/console.log``; the data caches are built first, here, so the children only read them.
    Why run several: the CPU models' matmuls are small and scale poorly over threads. On 2 cores two
    one-thread Luong runs trained 1,918 tgt tok/s each, one two-thread run 3,131 (1.23x more per second
    side by side). A run left training alone (nothing else running or waiting) would leave cores idle, so it
    is stopped with SIGTERM, which saves a checkpoint at the current step, and resumed with every core: the
    odd last run of a table trains about twice as fast. A failed run starts no new ones; those already
    training finish, then the error names it.
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
    return Translator.from_payload(payload, spec.cfg.search, device, int(spec.cfg.trainer.eval_max_tokens))


def heatmap_rows(sources: list[str], count: int, max_words: int) -> list[int]:
    """The first ``count`` test sentences of 5 to ``max_words`` words (fixed, so plots are comparable)."""
    return [i for i, s in enumerate(sources) if 5 <= len(s.split()) <= max_words][:count]


def saved_hypotheses(spec: RunSpec, split: str, sentences: int) -> list[str] | None:
    """The run's own translations of ``split`` (``eval/<split>.hyp``, written by ``nmt-train`` after training)
    if they were decoded with this comparison's search and eval settings, one per sentence; else None."""
    hyp_file = spec.run_dir / "eval" / f"{split}.hyp"
    if not hyp_file.is_file():
        return None
    results = json.loads((spec.run_dir / "results.json").read_text())
    settings = OmegaConf.to_container(spec.cfg, resolve=True)
    if split not in results.get("test", {}) or any(results.get(k) != settings[k] for k in ("search", "eval")):
        return None
    hyps = hyp_file.read_text(encoding="utf-8").split("\n")[:-1]
    return hyps if len(hyps) == sentences else None


def decode_run(spec: RunSpec, split: str, device: str, c: DictConfig) -> DecodedRun:
    """Translate ``split`` with the run's model and search settings (or reuse the run's own translations
    of it, decoded with the same settings at the end of training); attention for a few sentences."""
    translator = load_run_translator(spec, device)
    eval_set = load_eval_set(spec.cfg.data, split, translator.src_tok, translator.tgt_tok)
    hyps = saved_hypotheses(spec, split, len(eval_set.sources)) or translator.translate(eval_set.sources)
    examples = []
    if translator.model.has_attention and c.heatmaps > 0:
        rows = heatmap_rows(eval_set.sources, int(c.heatmaps), int(c.heatmap_max_words))
        translator.search = dataclasses.replace(translator.search, need_attention=True)
        src_ids = translator.src_tok.encode([eval_set.sources[i] for i in rows])
        for ids, nbest in zip(src_ids, translator.translate_ids(src_ids)):
            hyp = nbest[0]
            examples.append(
                AttentionExample(
                    translator.src_tok.pieces(ids) + ["</s>"],
                    translator.tgt_tok.pieces(hyp.tokens) + ["</s>"],
                    hyp.attention.numpy(),
                )
            )
    return DecodedRun(spec.name, spec.cfg, eval_set.sources, eval_set.references, hyps, examples)


def run_comparison(cfg: DictConfig) -> Path:
    """Train what is missing, decode every run, write the report; returns the report directory."""
    c = cfg.compare
    specs = compose_runs(cfg)
    if int(c.jobs) < 1:
        raise ConfigError(f"compare.jobs={c.jobs}: give the number of runs to train at once (1 or more)")
    unfinished = []
    for spec in specs:
        if is_finished(spec):
            print(f"[{spec.name}] finished run found in {spec.run_dir}: not retraining", flush=True)
        else:
            unfinished.append(spec)
    train_runs(unfinished, int(c.jobs))
    split = c.split or specs[0].cfg.data.test_splits[0]
    decoded = []
    for spec in specs:
        print(f"[{spec.name}] decoding {split}", flush=True)
        decoded.append(decode_run(spec, split, str(cfg.device), c))
    first = decoded[0]
    for d in decoded[1:]:
        if d.references != first.references:
            raise ConfigError(
                f"runs {first.name!r} and {d.name!r} have different {split} references: compare on one dataset"
            )
    report_dir = Path(c.report_dir)
    write_report(report_dir, decoded, c, split, _command_line())
    print(f"report written to {report_dir / 'report.md'}")
    return report_dir


def _command_line() -> str:
    """The nmt-compare command that produced this report (its overrides as typed)."""
    try:
        return " ".join(["nmt-compare", *HydraConfig.get().overrides.task])
    except ValueError:  # called outside the command-line entry point
        return "nmt-compare (called from Python)"


@hydra.main(config_path=str(CONFIG_DIR), config_name="compare", version_base="1.3")
@report_user_errors("nmt-compare")
def main(cfg: DictConfig) -> None:
    setup_cpu(int(cfg.threads))
    run_comparison(cfg)


if __name__ == "__main__":
    main()
