"""nmt-compare: the sweep trains each run once, the report scores every test line, tests and plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY_MODELS, read_pairs
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from nmt.compare import compose_runs, is_finished, run_comparison, train_runs
from nmt.errors import ConfigError, NmtError
from nmt.metrics import corpus_scores
from nmt.paths import CONFIG_DIR


def _compare_config(root: Path, cache: Path, tmp: Path, extra: list[str] | None = None, jobs: int = 2) -> DictConfig:
    common = [
        f"data.root={root}",
        f"data.cache_dir={cache}",
        "data.tokenizer.vocab_size=400",
        "data.tokenizer.model_type=bpe",
        "trainer.max_tokens=2000",
        "trainer.optimizer.lr=3e-3",
        "trainer.scheduler.kind=constant",
        "trainer.scheduler.warmup=10",
        "trainer.max_steps=40",
        "trainer.validate_every=20",
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
            "compare.bootstrap_samples=100",
            f"compare.jobs={jobs}",
        ],
    )
    with open_dict(cfg):
        cfg.compare.common = common
        cfg.compare.runs = {"transformer": TINY_MODELS["transformer"], "rnnencdec": TINY_MODELS["rnnencdec"]}
        cfg.compare.extra = extra or []
    return cfg


@pytest.fixture(scope="module")
def compared(tiny_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("compare")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        run_comparison(_compare_config(tiny_root, cache_dir, tmp))
    return tmp


def test_report_scores_every_line_with_significance_and_plots(compared: Path, tiny_root: Path) -> None:
    report = compared / "report"
    for name in ("report.md", "results.csv", "results.json", "bleu_by_length.png", "learning_curves.png"):
        assert (report / name).stat().st_size > 0, name
    assert (report / "attention_transformer.png").is_file()
    assert not (report / "attention_rnnencdec.png").exists()  # no attention to plot
    refs = (tiny_root / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()
    results = json.loads((report / "results.json").read_text())
    rows = {r["model"]: r for r in results["runs"]}
    assert set(rows) == {"transformer", "rnnencdec"}
    for name, row in rows.items():
        hyps = (report / "hyps" / f"{name}.test2016.txt").read_text(encoding="utf-8").splitlines()
        assert len(hyps) == len(refs)
        assert row["bleu"] == corpus_scores(hyps, refs).bleu
        assert row["steps"] == 40 and row["parameters"] > 0 and row["tgt_tokens_per_s"] > 0
        assert row["valid_bleu"] is not None and row["tokenized_bleu"] is not None
        assert sum(b["sentences"] for b in results["bleu_by_length"][name]) == len(refs)
        assert row["settings"] == " ".join(TINY_MODELS[name])  # the row's own overrides, not the common ones
        assert isinstance(row["still_improving"], bool)
    assert rows["rnnencdec"]["bleu_p"] is None and 0 < rows["transformer"]["bleu_p"] <= 1
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "nrefs:1" in md and "paired bootstrap" in md and "tokenized BLEU" in md


def test_still_improving_means_the_best_validation_was_the_last() -> None:
    from nmt.report import still_improving

    def history(*bleus: float) -> list[dict]:
        return [{"step": 100 * i, "valid_bleu": b} for i, b in enumerate(bleus, 1)]

    assert still_improving(history(5.0, 7.0, 9.0))
    assert still_improving(history(5.0, 9.0, 9.0))  # a tie at the end: not yet past its best
    assert not still_improving(history(5.0, 9.0, 8.0))
    assert not still_improving(history(9.0))  # one validation says nothing about a trend
    assert not still_improving([{"step": 100, "valid_loss": 3.0}])


def test_rerun_reuses_finished_runs(
    compared: Path, tiny_root: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoints = {p: p.stat().st_mtime_ns for p in (compared / "runs").rglob("*.pt")}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        run_comparison(_compare_config(tiny_root, cache_dir, compared))
        assert capsys.readouterr().out.count("not retraining") == 2
        assert {p: p.stat().st_mtime_ns for p in (compared / "runs").rglob("*.pt")} == checkpoints
        # A changed training option makes a run unfinished again (nmt-train then resumes it).
        specs = compose_runs(_compare_config(tiny_root, cache_dir, compared, ["trainer.max_steps=60"]))
        assert not any(is_finished(s) for s in specs)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_run_is_named_and_the_runs_beside_it_finish(
    jobs: int, tiny_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """The runs train in parallel (jobs=2, the fixture above) or one by one; either way a run that fails is
    named with its log, no run starts after it, and a run training beside it is not lost."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(tiny_root, cache_dir, tmp_path, jobs=jobs)
        with open_dict(cfg):
            cfg.compare.runs = {
                "rnnencdec": TINY_MODELS["rnnencdec"],
                "broken": [*TINY_MODELS["rnnencdec"], "trainer.scheduler.kind=bogus"],
                "transformer": TINY_MODELS["transformer"],
            }
        with pytest.raises(NmtError, match=r"run 'broken' \(exit status 2, log: .*broken.*\) stopped") as e:
            run_comparison(cfg)
        finished = {s.name: is_finished(s) for s in compose_runs(cfg)}
    assert finished == {"rnnencdec": True, "broken": False, "transformer": False}
    if jobs == 2:
        assert str(tmp_path / "runs" / "broken" / "console.log") in str(e.value)
        assert "bogus" in (tmp_path / "runs" / "broken" / "console.log").read_text()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to leave one idle")
def test_a_run_left_alone_resumes_with_every_core(
    tiny_root: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With jobs=2, once the short run finishes the long one would train on one thread beside an idle core:
    it is stopped (its checkpoint saved at that step) and resumed with all cores, losing no step."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(tiny_root, cache_dir, tmp_path, jobs=2)
        with open_dict(cfg):
            cfg.compare.runs = {
                "rnnencdec": TINY_MODELS["rnnencdec"],
                "long": [*TINY_MODELS["rnnencdec"], "trainer.max_steps=120", "trainer.validate_every=60"],
            }
        train_runs(compose_runs(cfg), jobs=2)
        assert all(is_finished(s) for s in compose_runs(cfg))
    assert f"[long] resuming alone with {os.cpu_count()} threads" in capsys.readouterr().out
    log = (tmp_path / "runs" / "long" / "train_log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in log if "step" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == 120  # continued where it stopped, no step twice


def test_report_reuses_the_runs_own_test_translations_decoded_alike(
    compared: Path, tiny_root: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nmt-train already translated the test split with the same search: the report takes those lines
    instead of decoding them again; another search setting decodes again."""
    from nmt.translator import Translator

    calls: list[int] = []
    translate = Translator.translate
    monkeypatch.setattr(Translator, "translate", lambda self, lines: calls.append(len(lines)) or translate(self, lines))
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for extra, decoded in (([], 0), (["search.length_penalty=0.3"], 2)):
            cfg = _compare_config(tiny_root, cache_dir, compared, extra)
            with open_dict(cfg):
                cfg.compare.report_dir = str(compared / f"report_{decoded}")
            run_comparison(cfg)
            assert len(calls) == decoded, extra
            calls.clear()
    for name in ("transformer", "rnnencdec"):
        own = (compared / "runs" / name / "eval" / "test2016.hyp").read_text(encoding="utf-8")
        assert (compared / "report_0" / "hyps" / f"{name}.test2016.txt").read_text(encoding="utf-8") == own


def test_paper_table_report_shows_the_papers_numbers(compared: Path, tiny_root: Path, cache_dir: Path) -> None:
    """The same finished runs reported as a paper table: the paper's number in the main table (once, with
    no source the runs do not have) and a claims section with the verdict."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(tiny_root, cache_dir, compared)
        with open_dict(cfg):
            cfg.compare.report_dir = str(compared / "paper_report")
            cfg.compare.paper = {"rnnencdec": 20.0, "transformer": 27.5}
            cfg.compare.paper_source = "a paper's table"
        run_comparison(cfg)
    md = (compared / "paper_report" / "report.md").read_text(encoding="utf-8")
    transformer_row = next(line for line in md.splitlines() if line.startswith("| transformer |"))
    assert transformer_row.endswith("| 27.50 |") and "None" not in md
    assert "## The paper's claims on this data" in md and "a paper's table" in md
    improving = [
        r["model"]
        for r in json.loads((compared / "paper_report" / "results.json").read_text())["runs"]
        if r["still_improving"]
    ]
    assert ("Still improving when the budget ended" in md) == bool(improving)
    rows = {r["model"]: r for r in json.loads((compared / "paper_report" / "results.json").read_text())["runs"]}
    assert rows["transformer"]["paper_delta"] == 7.5 and rows["transformer"]["verdict"] in {
        "holds",
        "reversed",
        "within noise",
    }


def test_unknown_baseline_is_refused(tiny_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(tiny_root, cache_dir, tmp_path)
        cfg.compare.baseline = "rnnsearch"
        with pytest.raises(ConfigError, match="compare.baseline='rnnsearch' is not one of compare.runs"):
            compose_runs(cfg)


def test_report_refuses_runs_that_do_not_share_search_or_tokenization() -> None:
    """The report has one search / BLEU-tokenization line for the whole table: runs must agree on it."""
    from omegaconf import OmegaConf

    from nmt.report import DecodedRun, shared_setting

    def run(name: str, beam: int, tokenize: str) -> DecodedRun:
        cfg = OmegaConf.create({"search": {"beam_size": beam}, "eval": {"tokenize": tokenize}})
        return DecodedRun(name, cfg, [], [], [], [])

    same = [run("a", 5, "13a"), run("b", 5, "13a")]
    assert shared_setting(same, "search", lambda r: OmegaConf.to_container(r.cfg.search)) == {"beam_size": 5}
    with pytest.raises(
        ConfigError, match=r"must share the search settings.*a: \{'beam_size': 5\}; b: \{'beam_size': 4\}"
    ):
        shared_setting([run("a", 5, "13a"), run("b", 4, "13a")], "the search settings", lambda r: dict(r.cfg.search))
    with pytest.raises(ConfigError, match="must share eval.tokenize"):
        shared_setting([run("a", 5, "13a"), run("b", 5, "intl")], "eval.tokenize", lambda r: r.cfg.eval.tokenize)


def test_paper_claims_compare_each_row_with_its_reference_row() -> None:
    """A paper table's rows: the paper's and our change against the row each is compared with, the p-value
    against that row, and the verdict; the baseline's seed runs give the noise floor."""
    from omegaconf import OmegaConf

    from nmt.report import row_claims

    _, en = read_pairs("valid", 200)
    cut = [" ".join(s.split()[:-2]) for s in en]  # two words short on every line
    hyps = {"base": cut, "base_seed2": cut, "plus": en, "minus": [" ".join(s.split()[:-4]) for s in en]}
    bleu = {name: corpus_scores(h, en).bleu for name, h in hyps.items()}
    rows = [{"model": n, "bleu": bleu[n], "bleu_p": 0.001} for n in hyps]
    c = OmegaConf.create(
        {
            "baseline": "base",
            "reference_seeds": [2],
            "reference": {"minus": "plus"},
            "paper": {"base": 10.0, "plus": 12.0, "minus": 13.0},
            "paper_source": "a table",
            "scale_note": None,
            "bootstrap_samples": 200,
        }
    )
    claims = row_claims(rows, hyps, en, c, "13a")
    by = {r["model"]: r for r in rows}
    assert claims["seed_runs"] == ["base", "base_seed2"] and claims["seed_spread"] == 0.0
    assert by["base"]["verdict"] == by["base_seed2"]["verdict"] == "reference"
    assert by["plus"]["paper_delta"] == 2.0 and by["plus"]["our_delta"] > 0 and by["plus"]["verdict"] == "holds"
    # minus is judged against plus (its own bootstrap), where the paper says +1.0 and we lose BLEU
    assert by["minus"]["reference"] == "plus" and by["minus"]["paper_delta"] == 1.0
    assert by["minus"]["claim_p"] < 0.05 and by["minus"]["verdict"] == "reversed"
    assert row_claims(rows, hyps, en, OmegaConf.create({"baseline": "base"}), "13a") is None
    # An ablation (no paper numbers, reference seeds): each row is better / worse / within noise.
    ablation = c.copy()
    ablation.paper, ablation.paper_source = {}, None
    claims = row_claims(rows, hyps, en, ablation, "13a")
    assert claims["paper"] is False and by["plus"]["verdict"] == "better" and by["minus"]["verdict"] == "worse"
    assert by["plus"]["paper_delta"] is None and by["base_seed2"]["verdict"] == "reference"


def test_paper_rows_must_name_runs_of_the_comparison(tiny_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(tiny_root, cache_dir, tmp_path)
        with open_dict(cfg):
            cfg.compare.reference = {"transformer": "rnnsearch"}
        with pytest.raises(ConfigError, match="compare.reference names rnnsearch, not among compare.runs"):
            compose_runs(cfg)


def test_length_claims_measure_the_drop_on_long_sentences() -> None:
    """Fig. 2's claims on synthetic output: a system that loses words only on long sentences "drops", one
    that is equally good everywhere is "steady", and the first drops more than the second."""
    from omegaconf import OmegaConf

    from nmt.report import length_claims

    de, en = read_pairs("valid", 300)
    long = [len(s.split()) > 12 for s in de]
    assert 30 < sum(long) < 270

    def damaged(every: int, long_only: bool) -> list[str]:  # drops every n-th word
        return [
            " ".join(w for i, w in enumerate(r.split()) if (i % every != 1) or (long_only and not is_long))
            for r, is_long in zip(en, long)
        ]

    hyps = {"encdec": damaged(2, True), "encdec_seed2": damaged(2, True), "search": en}
    c = OmegaConf.create(
        {
            "baseline": "encdec",
            "reference_seeds": [2],
            "bootstrap_samples": 200,
            "length_claims": {
                "long_words": 12,
                "claims": [
                    {"claim": "encdec degrades", "run": "encdec", "expect": "drops"},
                    {"claim": "search does not", "run": "search", "expect": "steady"},
                    {"claim": "search is steadier", "run": "encdec", "against": "search", "expect": "drops"},
                    {"claim": "search degrades", "run": "search", "expect": "drops"},
                    {"claim": "encdec does not", "run": "encdec", "expect": "steady"},
                ],
            },
        }
    )
    out = length_claims(de, hyps, en, c, "13a")
    assert out["long_sentences"] == sum(long) and out["seed_spread"] == 0.0
    assert out["drops"]["search"] == {"short": 100.0, "long": 100.0}
    assert out["drops"]["encdec"]["short"] == 100.0 > 50 > out["drops"]["encdec"]["long"]
    verdicts = [r["verdict"] for r in out["claims"]]
    assert verdicts == ["holds", "holds", "holds", "within noise", "reversed"]
    assert out["claims"][0]["p"] < 0.05 and out["claims"][0]["our_drop"] > 40
    assert length_claims(de, hyps, en, OmegaConf.create({"baseline": "encdec"}), "13a") is None


def test_length_claims_must_name_runs(tiny_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = _compare_config(tiny_root, cache_dir, tmp_path)
        with open_dict(cfg):
            cfg.compare.length_claims = {"long_words": 12, "claims": [{"run": "rnnsearch", "expect": "drops"}]}
        with pytest.raises(ConfigError, match=r"length_claims.claims\[0\].run='rnnsearch' is not one of"):
            compose_runs(cfg)
        with open_dict(cfg):
            cfg.compare.length_claims.claims[0].run = "transformer"
            cfg.compare.length_claims.claims[0].expect = "falls"
        with pytest.raises(ConfigError, match="expect: one of drops, steady"):
            compose_runs(cfg)
