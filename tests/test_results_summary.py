"""docs/results/README.md lists every claim of the reports written, and the tables not run yet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import results_summary  # noqa: E402


def test_summary_lists_each_claim_and_what_is_missing(tmp_path):
    rows = [
        {"model": "base", "verdict": "reference", "steps": 900, "still_improving": True},
        {
            "model": "reverse",
            "reference": "base",
            "paper_delta": 1.3,
            "our_delta": 2.41,
            "claim_p": 0.001,
            "verdict": "holds",
            "steps": 900,
            "still_improving": False,
        },
        {
            "model": "dropout",
            "reference": "reverse",
            "paper_delta": 1.4,
            "our_delta": -0.2,
            "claim_p": 0.4,
            "verdict": "within noise",
            "steps": 900,
            "still_improving": True,
        },
        {
            "model": "unreported",
            "reference": "base",
            "paper_delta": None,
            "our_delta": 0.1,
            "claim_p": 0.4,
            "verdict": "–",
            "steps": 900,
            "still_improving": True,
        },
    ]
    length = {
        "claims": [
            {
                "claim": "encdec degrades",
                "run": "encdec",
                "against": None,
                "expect": "drops",
                "our_drop": 7.5,
                "p": 0.001,
                "verdict": "holds",
            }
        ]
    }
    (tmp_path / "table1").mkdir()
    (tmp_path / "table1" / "results.json").write_text(json.dumps({"meta": {"length_claims": length}, "runs": rows}))
    (tmp_path / "ablations").mkdir()
    ablation_rows = [
        {"model": "default", "verdict": "reference", "steps": 900},
        {
            "model": "no_feed",
            "reference": "default",
            "paper_delta": None,
            "our_delta": -1.2,
            "claim_p": 0.002,
            "verdict": "worse",
            "steps": 900,
        },
    ]
    (tmp_path / "ablations" / "results.json").write_text(json.dumps({"meta": {}, "runs": ablation_rows}))
    experiments = {
        "table1": {"paper": {"base": 11.3}},
        "table4": {"paper": {"a": 1.0}},
        "plain": {},
        "ablations": {"reference_seeds": [2]},
    }
    page = results_summary.summary(tmp_path, experiments)
    assert "| [table1](table1/report.md) | reverse vs base | +1.3 | +2.41 | 0.0010 | **holds** |" in page
    assert "| dropout vs reverse | +1.4 | -0.20 | 0.4000 | **within noise** |" in page
    assert "encdec degrades (BLEU drop on long sentences, encdec) | drops | +7.50 | 0.0010 | **holds** |" in page
    assert "- table4: not run yet (`nmt-compare experiment=table4`)" in page
    assert "- plain (not run yet: `nmt-compare experiment=plain`)" in page
    assert "- table1: 900 updates per row; 3 of 4 rows still improving at their last validation" in page
    assert "- [ablations](ablations/report.md)" in page
    assert "| [ablations](ablations/report.md) | no_feed vs default | – | -1.20 | 0.0020 | **worse** |" in page
    assert "base vs" not in page  # reference rows make no claim
    assert "unreported vs" not in page  # nor rows the paper has no number for


def test_every_comparison_experiment_is_listed():
    names = results_summary.comparison_experiments()
    assert {
        "compare_multi30k",
        "bahdanau2014_table1",
        "luong2015_table1",
        "luong2015_table4",
        "vaswani2017_table3",
        "luong2015_multi30k_ablations",
    } <= set(names)
