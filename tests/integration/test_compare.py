"""nmt-compare: every run trained once per seed, each finished seed kept as a row in the report folder and
never trained again, the report scored over seeds on every test split, the claims judged over seeds."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODELS, read_pairs, write_split
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

import nmt.experiments.compare
from nmt.errors import ConfigError, NmtError
from nmt.evaluation.metrics import corpus_scores
from nmt.experiments.claims import BELOW, HOLDS, MIXED, NOISE, NOT_CONVERGED, PENDING, REVERSED, UNKNOWN, welch
from nmt.experiments.compare import collect_rows, compose_runs, is_finished, run_comparison, train_runs
from nmt.experiments.kept_rows import fingerprint, load_row, row_folder
from nmt.experiments.report import Row, length_claims, row_claims, shared_setting
from nmt.experiments.report import TestSet as SplitText  # (not a test class)
from nmt.paths import CONFIG_DIR
from nmt.training.checkpoint import latest_checkpoint

SPLITS = ["test2016", "test2017"]
SEEDS = [1, 2]
RUNS = ("transformer", "rnnencdec")
PAPER = {"rnnencdec": 20.0, "transformer": 27.5}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 real training pairs as train, valid and test2016; test2017 half of them and half unseen pairs."""
    root = tmp_path_factory.mktemp("compare_data")
    de, en = read_pairs("train", 64)
    for stem in ("train", "valid", "test2016"):
        write_split(root / "multi30k", stem, de, en)
    more_de, more_en = read_pairs("train", 32, start=1000)
    write_split(root / "multi30k", "test2017", de[:32] + more_de, en[:32] + more_en)
    return root


def _compare_config(
    root: Path, cache: Path, tmp: Path, extra: list[str] | None = None, jobs: int = 2, seeds: list[int] = SEEDS
) -> DictConfig:
    """A two-run comparison of tiny models (30 steps; early stopping may end a run first) with paper numbers."""
    common = [
        f"data.root={root}",
        f"data.cache_dir={cache}",
        "data.tokenizer.vocab_size=400",
        "data.tokenizer.model_type=bpe",
        f"data.test_splits=[{','.join(SPLITS)}]",
        "trainer.max_tokens=2000",
        "trainer.optimizer.lr=3e-3",
        "trainer.scheduler.kind=constant",
        "trainer.scheduler.warmup=10",
        "trainer.max_steps=30",
        "trainer.validate_every=10",
        "trainer.early_stopping.patience=2",
        "trainer.log_every=10",
        "trainer.threads=1",
        "search.beam_size=2",
    ]
    cfg = compose(
        "compare",
        overrides=[
            "compare.name=tiny",
            f"compare.sweep_dir={tmp / 'runs'}",
            f"compare.report_dir={tmp / 'report'}",
            "compare.baseline=rnnencdec",
            "compare.heatmaps=2",
            "compare.length_buckets=[6,9,12]",  # every bucket holds sentences of the 64
            f"compare.jobs={jobs}",
            f"compare.seeds=[{','.join(map(str, seeds))}]",
        ],
    )
    with open_dict(cfg):
        cfg.compare.common = common
        cfg.compare.runs = {name: TINY_MODELS[name] for name in RUNS}
        cfg.compare.extra = extra or []
        cfg.compare.paper = dict(PAPER)
        cfg.compare.paper_source = "a paper's table"
    return cfg


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any nmt-train child process a test failure."""

    def refuse(spec, *args):
        raise AssertionError(f"{spec.name} was trained again")

    monkeypatch.setattr(nmt.experiments.compare, "start_child", refuse)


@pytest.fixture(scope="module")
def compared(data_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One comparison trained and reported: 2 tiny runs x 2 seeds (the only training of the shared tests)."""
    tmp = tmp_path_factory.mktemp("compare")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        run_comparison(_compare_config(data_root, cache_dir, tmp))
    return tmp


def _results(report: Path) -> tuple[dict, dict[str, dict]]:
    results = json.loads((report / "results.json").read_text())
    return results, {r["model"]: r for r in results["runs"]}


def _references(root: Path, split: str) -> list[str]:
    return (root / "multi30k" / f"{split}.en").read_text(encoding="utf-8").splitlines()


def test_report_scores_every_split_over_seeds(compared: Path, data_root: Path) -> None:
    report = compared / "report"
    for name in ("report.md", "results.csv", "results.json", "bleu_by_length.png", "learning_curves.png"):
        assert (report / name).stat().st_size > 0, name
    assert (report / "attention_transformer.png").is_file()
    assert not (report / "attention_rnnencdec.png").exists()  # no attention to plot
    results, rows = _results(report)
    assert set(rows) == set(RUNS) and results["meta"]["seeds"] == SEEDS
    assert results["meta"]["splits"] == {s: 64 for s in SPLITS} and results["meta"]["pending"] == {}
    for name, row in rows.items():
        assert row["seeds_done"] == SEEDS and row["seeds_pending"] == []
        assert row["settings"] == " ".join(TINY_MODELS[name])  # the row's own overrides, not the common ones
        for split in SPLITS:
            refs = _references(data_root, split)
            scores = []
            for seed in SEEDS:
                hyps = load_row(row_folder(report, name, seed), name, seed).hypotheses(split)
                assert len(hyps) == len(refs)
                scores.append(corpus_scores(hyps, refs).bleu)
            bleu = row["bleu"][split]
            assert bleu["seeds"] == scores and bleu["n"] == 2
            assert bleu["mean"] == pytest.approx(statistics.fmean(scores))
            assert bleu["sd"] == pytest.approx(statistics.stdev(scores))
        assert row["tokenized_bleu"]["n"] == 2 and row["valid_bleu"]["n"] == 2 and row["parameters"] > 0
        assert row["tgt_tokens_per_s"]["n"] == 2 and row["tgt_tokens_per_s"]["mean"] > 0  # from the kept logs
        assert sum(b["sentences"] for b in results["bleu_by_length"][name]) == 64
        stuck = [s for s in SEEDS if not load_row(row_folder(report, name, s), name, s).converged]
        assert row["not_converged_seeds"] == stuck and row["converged"] == (not stuck)
        assert results["meta"]["not_converged"].get(name, []) == stuck
    # The paper table: transformer against the baseline, +7.5 in the paper, judged over both seeds.
    transformer = rows["transformer"]
    assert transformer["paper_bleu"] == 27.5 and transformer["paper_delta"] == 7.5
    assert transformer["reference"] == "rnnencdec" and rows["rnnencdec"]["verdict"] == "reference"
    for split in SPLITS:
        effect = welch(transformer["bleu"][split]["seeds"], rows["rnnencdec"]["bleu"][split]["seeds"])
        claim = transformer["claims"][split]
        assert claim["delta"] == pytest.approx(effect.delta)
        assert claim["interval"] == pytest.approx([effect.low, effect.high])
    if transformer["converged"] and rows["rnnencdec"]["converged"]:
        assert transformer["verdict"] in {HOLDS, REVERSED, NOISE, BELOW, MIXED}
    else:
        assert transformer["verdict"] == NOT_CONVERGED
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "nrefs:1" in md and "Welch" in md and "tokenized BLEU" in md and "None" not in md
    assert "## The paper's claims on this data" in md and "a paper's table" in md
    assert ("**Not converged**" in md) == bool(results["meta"]["not_converged"])
    transformer_line = next(line for line in md.splitlines() if line.startswith("| transformer |"))
    assert transformer_line.endswith("| 27.50 |") and "BLEU test2017" in md
    csv_lines = (report / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(RUNS) * len(SPLITS)


def test_each_finished_seed_is_kept_with_what_trained_it(compared: Path, data_root: Path, cache_dir: Path) -> None:
    """rows/<run>/seed<k>: the run's test translations, summary and history, and row.json saying which
    settings (fingerprint), code and stop reason produced them."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        specs = compose_runs(_compare_config(data_root, cache_dir, compared))
    assert [s.name for s in specs] == [f"{r}/seed{k}" for r in RUNS for k in SEEDS]
    for spec in specs:
        assert spec.run_dir == compared / "runs" / spec.run / f"seed{spec.seed}"
        folder = compared / "report" / "rows" / spec.run / f"seed{spec.seed}"
        for name in ("row.json", "results.json", "metrics.json", "train_log.jsonl", *(f"{s}.hyp" for s in SPLITS)):
            assert (folder / name).stat().st_size > 0, (spec.name, name)
        for split in SPLITS:
            own = (spec.run_dir / "eval" / f"{split}.hyp").read_text(encoding="utf-8")
            assert (folder / f"{split}.hyp").read_text(encoding="utf-8") == own
        info = json.loads((folder / "row.json").read_text())
        trained = json.loads((spec.run_dir / "results.json").read_text())
        assert info["run"] == spec.run and info["seed"] == spec.seed
        assert info["fingerprint"] == fingerprint(spec.cfg)
        assert info["stop_reason"] == trained["stop_reason"]
        assert info["converged"] == info["stop_reason"].startswith("early stopping")
        if not info["converged"]:
            assert info["stop_reason"] == "reached trainer.max_steps=30" and info["steps"] == 30
        assert info["steps"] == trained["steps"] <= 30 and info["parameters"] == trained["parameters"]
        assert f"trainer.seed={spec.seed}" in info["overrides"]
        assert not any(o.startswith(("run_dir=", "name=")) for o in info["overrides"])  # nothing of this machine
        assert info["commit"] is None or len(info["commit"].removesuffix("-dirty")) == 40


def test_an_empty_length_bucket_is_reported_without_bleu(
    compared: Path, data_root: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test sentence has more than 40 words: the 41+ bucket is empty, and has no BLEU."""
    _no_training(monkeypatch)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(data_root, cache_dir, compared)
        with open_dict(cfg):
            cfg.compare.report_dir = str(compared / "buckets")
            cfg.compare.length_buckets = [10, 40]
        run_comparison(cfg)
    results, _ = _results(compared / "buckets")
    assert results["bleu_by_length"]["transformer"][-1] == {"bucket": "41+", "sentences": 0, "bleu": None}


def test_rerun_reuses_kept_rows(
    compared: Path,
    data_root: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoints = {p: p.stat().st_mtime_ns for p in (compared / "runs").rglob("*.pt")}
    assert checkpoints
    _no_training(monkeypatch)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        run_comparison(_compare_config(data_root, cache_dir, compared))
        out = capsys.readouterr().out
        assert out.count("not retraining") == len(RUNS) * len(SEEDS)
        assert {p: p.stat().st_mtime_ns for p in (compared / "runs").rglob("*.pt")} == checkpoints
        # A changed training option: every row is to be trained again (its kept row stays until then).
        cfg = _compare_config(data_root, cache_dir, compared, ["trainer.max_steps=40"])
        kept, missing = collect_rows(compose_runs(cfg), compared / "report")
        assert kept == {} and [s.name for s in missing] == [f"{r}/seed{k}" for r in RUNS for k in SEEDS]
        assert capsys.readouterr().out.count("trained under other settings: training again") == 4
        assert not any(is_finished(s) for s in missing)
        # Nor does a changed search setting reuse a row: its translations were decoded otherwise.
        cfg = _compare_config(data_root, cache_dir, compared, ["search.length_penalty=0.3"])
        assert len(collect_rows(compose_runs(cfg), compared / "report")[1]) == 4


def test_a_finished_run_continued_and_stopped_is_not_finished(
    compared: Path, data_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """A run finished, was continued under a higher cap (new checkpoints, same settings as the comparison
    now) and stopped before finishing again: its earlier results.json no longer describes it."""
    shutil.copytree(compared / "runs", tmp_path / "runs")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        spec = compose_runs(_compare_config(data_root, cache_dir, tmp_path))[0]
    assert is_finished(spec)
    path, payload = latest_checkpoint(spec.run_dir)
    payload["trainer"]["step"] += 1
    torch.save(payload, path.with_name(f"ckpt_{payload['trainer']['step']}.pt"))
    assert not is_finished(spec)


def _new_session(
    compared: Path, tmp: Path, data_root: Path, cache_dir: Path, runs: dict[str, list[str]] | None = None
) -> DictConfig:
    """The comparison in a fresh checkout: the kept rows (as committed to the repository), no run directory."""
    shutil.copytree(compared / "report" / "rows", tmp / "report" / "rows")
    cfg = _compare_config(data_root, cache_dir, tmp)
    if runs:
        with open_dict(cfg):
            cfg.compare.runs.update(runs)
    return cfg


def test_a_table_is_reported_across_sessions_from_kept_rows_alone(
    compared: Path,
    data_root: Path,
    cache_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run directories deleted (another machine, another day): the kept rows are the table; nothing trains."""
    _no_training(monkeypatch)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        run_comparison(_new_session(compared, tmp_path, data_root, cache_dir))
    assert capsys.readouterr().out.count("not retraining") == 4
    assert not (tmp_path / "runs").exists()
    _, before = _results(compared / "report")
    _, after = _results(tmp_path / "report")
    for name in RUNS:
        assert after[name]["bleu"] == before[name]["bleu"] and after[name]["verdict"] == before[name]["verdict"]
    assert not list((tmp_path / "report").glob("attention_*.png"))  # kept rows carry no weights


def test_train_false_reports_kept_rows_and_lists_the_pending_ones(
    compared: Path, data_root: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_training(monkeypatch)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _new_session(compared, tmp_path, data_root, cache_dir, {"rnnsearch": TINY_MODELS["rnnsearch"]})
        with open_dict(cfg):
            cfg.compare.train = False
            cfg.compare.paper["rnnsearch"] = 25.0
        run_comparison(cfg)
        results, rows = _results(tmp_path / "report")
        assert results["meta"]["pending"] == {"rnnsearch": SEEDS}
        assert rows["rnnsearch"]["seeds_done"] == [] and rows["rnnsearch"]["bleu"]["test2016"]["n"] == 0
        assert rows["rnnsearch"]["verdict"] == PENDING and rows["rnnsearch"]["paper_delta"] == 5.0
        assert rows["transformer"]["bleu"]["test2016"]["n"] == 2
        md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
        assert "**Pending** (not trained yet; rerun the same command to train them): rnnsearch: seeds 1, 2." in md
        # With nothing kept at all there is nothing to report.
        with open_dict(cfg):
            cfg.compare.report_dir = str(tmp_path / "empty" / "report")
        with pytest.raises(ConfigError, match="no finished row to report"):
            run_comparison(cfg)


def test_a_row_kept_by_another_comparison_is_copied(
    compared: Path,
    data_root: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second comparison beside the first (its report folder in the same parent) that shares rows with
    it, here as an ablation without paper numbers: the shared rows are copied, not trained."""
    _no_training(monkeypatch)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(data_root, cache_dir, compared)
        with open_dict(cfg):
            cfg.compare.report_dir = str(compared / "ablation")
            cfg.compare.sweep_dir = str(compared / "ablation_runs")  # nothing trained there
            cfg.compare.paper, cfg.compare.paper_source = {}, None
        run_comparison(cfg)
    assert capsys.readouterr().out.count("copied") == 4
    for name in RUNS:
        for seed in SEEDS:
            copied, kept = row_folder(compared / "ablation", name, seed), row_folder(compared / "report", name, seed)
            assert (copied / "test2016.hyp").read_text() == (kept / "test2016.hyp").read_text()
    _, rows = _results(compared / "ablation")
    assert rows["transformer"]["paper_delta"] is None and rows["transformer"]["paper_bleu"] is None
    md = (compared / "ablation" / "report.md").read_text(encoding="utf-8")
    assert "## Each row against its reference row" in md and "## The paper's claims" not in md


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_run_is_named_and_the_runs_beside_it_are_kept(
    jobs: int, data_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """The runs train in parallel (jobs=2) or one by one; either way a run that fails is named with its
    log, no run starts after it, and a run that finished beside it is kept."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(data_root, cache_dir, tmp_path, ["trainer.max_steps=10"], jobs=jobs, seeds=[1])
        with open_dict(cfg):
            cfg.compare.runs = {
                "rnnencdec": TINY_MODELS["rnnencdec"],
                "broken": [*TINY_MODELS["rnnencdec"], "+model.bogus=1"],  # refused when nmt-train builds the model
                "transformer": TINY_MODELS["transformer"],
            }
        with pytest.raises(NmtError, match=r"run 'broken/seed1' \(exit status 2, log: .*broken.*\) stopped") as e:
            run_comparison(cfg)
    kept = {name: (row_folder(tmp_path / "report", name, 1) / "row.json").is_file() for name in cfg.compare.runs}
    assert kept == {"rnnencdec": True, "broken": False, "transformer": False}
    assert not (tmp_path / "runs" / "transformer").exists()  # never started
    if jobs == 2:
        console = tmp_path / "runs" / "broken" / "seed1" / "console.log"
        assert str(console) in str(e.value) and "bogus" in console.read_text()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to leave one idle")
def test_a_run_left_alone_resumes_with_every_core(
    data_root: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With jobs=2, once the short run finishes the long one would train on one thread beside an idle core:
    it is stopped (its checkpoint saved at that step) and resumed with all cores, losing no step. (The long
    run has a time budget, not a step budget, so that it outlasts the short one on a fast machine and
    ends soon on a loaded one.)"""
    quick = ["trainer.validate_every=0", "trainer.validate_bleu=false", "trainer.early_stopping.metric=loss"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(data_root, cache_dir, tmp_path, [*quick, "data.test_splits=[]"], jobs=2, seeds=[1])
        with open_dict(cfg):
            long = [
                "model.encoder_layers=1",
                "model.decoder_layers=1",
                "trainer.max_steps=0",
                "trainer.max_minutes=0.2",
            ]
            cfg.compare.runs = {
                "short": [*TINY_MODELS["transformer"], "trainer.max_steps=10"],
                "long": [*TINY_MODELS["transformer"], *long],
            }
            cfg.compare.baseline, cfg.compare.paper = "short", {}
        specs = compose_runs(cfg)
        finished: list[str] = []
        train_runs(specs, jobs=2, on_finish=lambda spec: finished.append(spec.name))
        assert all(is_finished(s) for s in specs)
    assert finished == ["short/seed1", "long/seed1"]
    assert f"[long/seed1] resuming alone with {os.cpu_count()} threads" in capsys.readouterr().out
    run_dir = tmp_path / "runs" / "long" / "seed1"
    console = (run_dir / "console.log").read_text()
    saved = int(re.search(r"interrupted by SIGTERM: checkpoint saved at step (\d+)", console).group(1))
    assert f"resumed at step {saved} " in console  # continued where it stopped
    results = json.loads((run_dir / "results.json").read_text())
    assert results["stop_reason"] == "reached trainer.max_minutes=0.2" and results["steps"] > saved
    log = (run_dir / "train_log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in log if "step" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] <= results["steps"]  # no step twice


def test_bad_comparisons_are_refused_before_training(data_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):

        def refused(match: str, **options) -> None:
            cfg = _compare_config(data_root, cache_dir, tmp_path)
            with open_dict(cfg):
                for key, value in options.items():
                    cfg.compare[key] = value
            with pytest.raises(ConfigError, match=match):
                compose_runs(cfg)

        refused("compare.baseline='rnnsearch' is not one of compare.runs", baseline="rnnsearch")
        refused("compare.reference names rnnsearch, not among compare.runs", reference={"transformer": "rnnsearch"})
        refused("compare.paper names rnnsearch, not among compare.runs", paper={"rnnsearch": 20.0})
        refused(r"compare.seeds=\[\]: give distinct seeds", seeds=[])
        refused(r"compare.seeds=\[1, 2, 1\]: give distinct seeds", seeds=[1, 2, 1])
        refused(
            r"length_claims.claims\[0\].run='rnnsearch' is not one of",
            length_claims={"long_words": 12, "claims": [{"run": "rnnsearch", "expect": "drops"}]},
        )
        refused(
            "expect: one of drops, steady",
            length_claims={"long_words": 12, "claims": [{"run": "transformer", "expect": "falls"}]},
        )
        refused(
            r"length_claims.claims\[0\].against='rnnsearch' is not one of",
            length_claims={
                "long_words": 12,
                "claims": [{"run": "transformer", "against": "rnnsearch", "expect": "drops"}],
            },
        )
        refused(
            "length_claims.long_words: give the source length",
            length_claims={"claims": [{"run": "transformer", "expect": "drops"}]},
        )
        cfg = _compare_config(data_root, cache_dir, tmp_path)
        cfg.compare.jobs = 0
        with pytest.raises(ConfigError, match="compare.jobs=0"):
            run_comparison(cfg)
    assert not (tmp_path / "runs").exists()


def test_report_refuses_runs_that_do_not_share_search_or_tokenization() -> None:
    """The report has one search / BLEU-tokenization line for the whole table: runs must agree on it."""

    def run(name: str, beam: int, tokenize: str) -> Row:
        return Row(name, OmegaConf.create({"search": {"beam_size": beam}, "eval": {"tokenize": tokenize}}), [], [], [])

    same = [run("a", 5, "13a"), run("b", 5, "13a")]
    assert shared_setting(same, "search", lambda r: OmegaConf.to_container(r.cfg.search)) == {"beam_size": 5}
    with pytest.raises(
        ConfigError, match=r"must share the search settings.*a: \{'beam_size': 5\}; b: \{'beam_size': 4\}"
    ):
        shared_setting([run("a", 5, "13a"), run("b", 4, "13a")], "the search settings", lambda r: dict(r.cfg.search))
    with pytest.raises(ConfigError, match="must share eval.tokenize"):
        shared_setting([run("a", 5, "13a"), run("b", 5, "intl")], "eval.tokenize", lambda r: r.cfg.eval.tokenize)


def _table_row(name: str, scores: dict[str, list[float]], pending=(), converged: bool = True) -> dict:
    """A row of report.score_rows' table: BLEU per split over the finished seeds."""
    n = len(next(iter(scores.values())))
    bleu = {
        split: {"mean": statistics.fmean(s), "sd": statistics.stdev(s), "n": len(s), "seeds": s}
        for split, s in scores.items()
    }
    return {
        "model": name,
        "seeds_done": list(range(1, n + 1)),
        "seeds_pending": list(pending),
        "converged": converged,
        "not_converged_seeds": [] if converged else [1],
        "bleu": bleu,
    }


BASE = [30.0, 30.5, 29.5]
UP = [34.0, 34.6, 33.4]


def _both(scores: list[float]) -> dict[str, list[float]]:
    return {"test2016": scores, "test2017": scores}


def test_paper_claims_compare_each_row_with_its_reference_row_over_seeds() -> None:
    """Synthetic seed scores through report.row_claims: each verdict, from Welch's interval per split and
    combined over the splits; no verdict from a row that did not converge or has seeds to train."""
    table = [
        _table_row("base", _both(BASE)),
        _table_row("plus", _both(UP)),  # +4 over base; paper +2: holds
        _table_row("minus", _both(BASE)),  # against plus: -4 where the paper says +1: reversed
        _table_row("small", _both([30.2, 29.7, 30.4])),  # paper +0.3, resolution about 1.3: below resolution
        _table_row("noise", _both([30.1, 29.8, 30.6])),  # paper +2.9: within noise
        _table_row("mixed", {"test2016": UP, "test2017": [30.1, 29.8, 30.6]}),  # holds on one split only
        _table_row("stuck", _both(UP), converged=False),
        _table_row("partial", _both(UP[:2]), pending=[3]),
        _table_row("after_partial", _both(UP)),  # its reference row has a seed to train
        _table_row("unreported", _both(UP)),  # no paper number
    ]
    c = OmegaConf.create(
        {
            "baseline": "base",
            "reference": {"minus": "plus", "after_partial": "partial"},
            "paper": {
                "base": 10.0,
                "plus": 12.0,
                "minus": 13.0,
                "small": 10.3,
                "noise": 12.9,
                "mixed": 12.0,
                "stuck": 12.0,
                "partial": 12.0,
                "after_partial": 13.0,
            },
            "paper_source": "a table",
            "scale_note": "smaller",
        }
    )
    claims = row_claims(table, c, ["test2016", "test2017"])
    assert claims == {"paper": True, "source": "a table", "scale_note": "smaller"}
    by = {r["model"]: r for r in table}
    verdicts = {name: r["verdict"] for name, r in by.items()}
    assert verdicts == {
        "base": "reference",
        "plus": HOLDS,
        "minus": REVERSED,
        "small": BELOW,
        "noise": NOISE,
        "mixed": MIXED,
        "stuck": NOT_CONVERGED,
        "partial": PENDING,
        "after_partial": PENDING,
        "unreported": UNKNOWN,
    }
    assert by["plus"]["paper_delta"] == 2.0 and by["plus"]["reference"] == "base" and by["base"]["claims"] == {}
    assert by["minus"]["reference"] == "plus" and by["minus"]["paper_delta"] == 1.0
    assert by["small"]["paper_delta"] == 0.3 and by["unreported"]["paper_delta"] is None
    effect = welch(UP, BASE)
    claim = by["plus"]["claims"]["test2016"]
    assert claim == {
        "delta": pytest.approx(4.0),
        "interval": [pytest.approx(effect.low), pytest.approx(effect.high)],
        "resolution": pytest.approx(effect.resolution),
        "verdict": HOLDS,
    }
    assert by["mixed"]["claims"]["test2016"]["verdict"] == HOLDS
    assert by["mixed"]["claims"]["test2017"]["verdict"] == NOISE
    assert by["stuck"]["claims"]["test2016"]["verdict"] == HOLDS  # measured, but not a verdict yet
    assert by["small"]["claims"]["test2016"]["resolution"] > 0.3

    # The same rows as an ablation (no paper numbers): better / worse / within noise against the reference.
    ablation = OmegaConf.create({"baseline": "base", "reference": {"minus": "plus"}})
    claims = row_claims(table, ablation, ["test2016", "test2017"])
    assert claims["paper"] is False
    assert [by[n]["verdict"] for n in ("plus", "minus", "noise", "mixed", "stuck", "partial")] == [
        "better",
        "worse",
        NOISE,
        MIXED,
        NOT_CONVERGED,
        PENDING,
    ]
    assert by["plus"]["paper_delta"] is None and by["plus"]["paper_bleu"] is None


def _kept_row(folder: Path, run: str, seed: int, hyps: dict[str, list[str]], converged: bool = True):
    """A kept row (row.json and test translations) written to ``folder``, read back as nmt-compare does."""
    folder.mkdir(parents=True)
    for split, lines in hyps.items():
        (folder / f"{split}.hyp").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    reason = "early stopping: no better valid BLEU in 2 validations" if converged else "reached trainer.max_steps=30"
    (folder / "row.json").write_text(json.dumps({"run": run, "seed": seed, "fingerprint": "x", "stop_reason": reason}))
    return load_row(folder, run, seed, "x")


def test_length_claims_measure_the_drop_on_long_sentences_per_seed(tmp_path: Path) -> None:
    """Fig. 2's claims on synthetic output, 3 seeds a row: a system that loses words only on long sentences
    "drops" (by a different amount each seed), one that is equally good everywhere is "steady", and the
    first drops more than the second; on two test sets, and no verdict from unconverged or pending rows."""
    sets = {}
    for split, start in (("test2016", 0), ("test2017", 300)):
        de, en = read_pairs("valid", 300, start)
        sets[split] = SplitText(de, en)
    long = {split: [len(s.split()) > 12 for s in ts.sources] for split, ts in sets.items()}
    assert all(30 < sum(mask) < 270 for mask in long.values())

    def damaged(split: str, every: int) -> list[str]:  # drops every n-th word of the long sentences
        return [
            " ".join(w for i, w in enumerate(r.split()) if i % every != 1 or not is_long)
            for r, is_long in zip(sets[split].references, long[split])
        ]

    def row(name: str, hyps, seeds=(1, 2, 3), pending=(), converged=True) -> Row:
        kept = [
            _kept_row(tmp_path / name / f"seed{k}", name, k, hyps(k), converged or k != 2)  # seed 2 unconverged
            for k in seeds
        ]
        return Row(name, OmegaConf.create({}), [], kept, list(pending))

    rows = [
        row("encdec", lambda k: {s: damaged(s, k + 1) for s in sets}),  # every 2nd / 3rd / 4th word
        row("search", lambda k: {s: sets[s].references for s in sets}),
        row("mixed", lambda k: {"test2016": damaged("test2016", k + 1), "test2017": sets["test2017"].references}),
        row("stuck", lambda k: {s: damaged(s, k + 1) for s in sets}, converged=False),
        row("partial", lambda k: {s: damaged(s, k + 1) for s in sets}, seeds=(1, 2), pending=[3]),
    ]
    table = [
        {"model": r.name, "seeds_done": [k.seed for k in r.kept], "seeds_pending": r.pending, "converged": r.converged}
        for r in rows
    ]
    claims = [
        {"claim": "encdec degrades", "run": "encdec", "expect": "drops"},
        {"claim": "search does not", "run": "search", "expect": "steady"},
        {"claim": "search is steadier", "run": "encdec", "against": "search", "expect": "drops"},
        {"claim": "search degrades", "run": "search", "expect": "drops"},
        {"claim": "encdec does not", "run": "encdec", "expect": "steady"},
        {"claim": "mixed degrades", "run": "mixed", "expect": "drops"},
        {"claim": "stuck degrades", "run": "stuck", "expect": "drops"},
        {"claim": "partial degrades", "run": "partial", "expect": "drops"},
    ]
    c = OmegaConf.create({"baseline": "encdec", "length_claims": {"long_words": 12, "claims": claims}})
    out = length_claims(rows, table, sets, c, "13a")
    assert out["long_sentences"] == {s: sum(mask) for s, mask in long.items()}
    assert out["sentences"] == {"test2016": 300, "test2017": 300}
    # encdec's drop on each seed: BLEU 100 on the short sentences (untouched) minus BLEU on the long ones.
    expected = {}
    for split in sets:
        short_refs = [r for r, is_long in zip(sets[split].references, long[split]) if is_long]
        expected[split] = [
            100.0
            - corpus_scores([h for h, is_long in zip(damaged(split, k + 1), long[split]) if is_long], short_refs).bleu
            for k in (1, 2, 3)
        ]
        assert expected[split][0] > expected[split][1] > expected[split][2] > 10
    first = out["claims"][0]["splits"]
    assert first["test2016"]["drop"] == pytest.approx(statistics.fmean(expected["test2016"]), abs=0.01)
    assert first["test2017"]["drop"] == pytest.approx(statistics.fmean(expected["test2017"]), abs=0.01)
    assert first["test2016"]["interval"][0] > 0 and out["mean_drop"]["search"] == 0.0
    assert [r["verdict"] for r in out["claims"]] == [
        HOLDS,
        HOLDS,
        HOLDS,
        NOISE,
        REVERSED,
        MIXED,
        NOT_CONVERGED,
        PENDING,
    ]
    assert out["claims"][5]["splits"]["test2016"]["verdict"] == HOLDS
    assert out["claims"][5]["splits"]["test2017"]["verdict"] == NOISE  # a drop of 0 on every seed
    assert out["claims"][2]["against"] == "search" and out["claims"][0]["against"] is None
    assert length_claims(rows, table, sets, OmegaConf.create({"baseline": "encdec"}), "13a") is None
