"""docs/results/README.md: each table's done / pending / not-converged rows and each claim's verdict over
seeds, from the results.json nmt-compare writes; the tables not run yet with their command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import results_summary  # noqa: E402

SPLITS = {"test2016": 1000, "test2017": 1000, "test2018": 1071}


def _row(model: str, done=(1, 2, 3), pending=(), stuck=(), **claim) -> dict:
    """A row of results.json["runs"] as nmt.experiments.report writes it (the fields the summary reads)."""
    row = {
        "model": model,
        "seeds_done": list(done),
        "seeds_pending": list(pending),
        "not_converged_seeds": list(stuck),
        "converged": not stuck,
        "bleu": {s: {"mean": 30.0, "sd": 0.5, "n": len(done), "seeds": [30.0] * len(done)} for s in SPLITS},
        "reference": None,
        "paper_delta": None,
        "claims": {},
        "verdict": "reference",
    }
    if claim:
        delta, interval = claim["delta"], claim["interval"]
        row.update(reference=claim["reference"], paper_delta=claim.get("paper_delta"), verdict=claim["verdict"])
        row["claims"] = {  # other numbers on the other splits: only the first is shown
            s: {
                "delta": None if delta is None else delta + i,
                "interval": None if delta is None else [interval[0] + i, interval[1] + i],
                "verdict": claim["verdict"],
            }
            for i, s in enumerate(SPLITS)
        }
    return row


def _write(folder: Path, runs: list[dict], paper: bool, seeds=(1, 2, 3), length_claims=None) -> None:
    folder.mkdir(parents=True)
    meta = {
        "splits": SPLITS,
        "seeds": list(seeds),
        "claims": {"paper": paper, "source": None, "scale_note": None},
        "length_claims": length_claims,
        "pending": {r["model"]: r["seeds_pending"] for r in runs if r["seeds_pending"]},
        "not_converged": {r["model"]: r["not_converged_seeds"] for r in runs if r["not_converged_seeds"]},
    }
    (folder / "results.json").write_text(json.dumps({"meta": meta, "runs": runs}))


def test_summary_lists_each_table_and_claim(tmp_path: Path) -> None:
    no_claim = {"delta": 0.1, "interval": [-1.0, 1.2], "verdict": "–", "reference": "base"}
    _write(
        tmp_path / "table1",
        [
            _row("base"),
            _row("reverse", reference="base", paper_delta=1.3, delta=2.41, interval=[1.2, 3.62], verdict="holds"),
            _row(
                "dropout",
                reference="reverse",
                paper_delta=1.4,
                delta=-0.2,
                interval=[-1.5, 1.1],
                verdict=("within noise"),
            ),
            _row(
                "feed",
                done=(1,),
                pending=(2, 3),
                reference="base",
                paper_delta=0.3,
                delta=None,
                interval=None,
                verdict="pending",
            ),
            _row(
                "local",
                stuck=(2,),
                reference="base",
                paper_delta=-0.5,
                delta=1.0,
                interval=[0.2, 1.8],
                verdict="not converged",
            ),
            _row("unreported", **no_claim),  # the paper has no number for it: no claim
        ],
        paper=True,
        length_claims={
            "claims": [
                {
                    "claim": "encdec degrades",
                    "run": "encdec",
                    "against": None,
                    "expect": "drops",
                    "splits": {
                        s: {"drop": 7.5 + i, "interval": [4.0, 11.0], "verdict": "holds"} for i, s in enumerate(SPLITS)
                    },
                    "verdict": "differs across test sets",
                },
                {
                    "claim": "search is steadier",
                    "run": "encdec",
                    "against": "search",
                    "expect": "drops",
                    "splits": {s: {"drop": None, "interval": None, "verdict": "pending"} for s in SPLITS},
                    "verdict": "pending",
                },
            ]
        },
    )
    _write(
        tmp_path / "ablations",
        [_row("default"), _row("no_feed", reference="default", delta=-1.2, interval=[-2.0, -0.4], verdict="worse")],
        paper=False,
    )
    _write(
        tmp_path / "grid",
        [_row("lr1", done=(1,)), _row("lr2", done=(1,), reference="lr1", delta=None, interval=None, verdict="pending")],
        paper=False,
        seeds=(1,),
    )
    (tmp_path / "old").mkdir()  # a report written before rows had seeds: no claims read from it
    (tmp_path / "old" / "results.json").write_text(json.dumps({"meta": {"split": "test2016"}, "runs": [{}]}))
    tables = {"grid": "grid_multi30k", "table1": "table1", "unrun": "unrun", "ablations": "ablations", "old": "old"}
    page = results_summary.summary(tmp_path, tables)
    lines = page.splitlines()

    # The tables, in the order given, each once; the one not run yet with the command that runs it.
    tables_section = lines[lines.index("## Tables") : lines.index("## Claims")]
    status = [line for line in tables_section if line.startswith("| [") or line.startswith("| unrun ")]
    assert [line.split(" | ")[0] for line in status] == [
        "| [grid](grid/report.md)",
        "| [table1](table1/report.md)",
        "| unrun",
        "| [ablations](ablations/report.md)",
        "| [old](old/report.md)",
    ]
    assert "| [table1](table1/report.md) | 5 of 6 | feed: seeds 2, 3 | local: seeds 2 |  |" in lines
    assert "| [ablations](ablations/report.md) | 2 of 2 | – | – |  |" in lines
    assert "| [grid](grid/report.md) | 2 of 2 | – | – | one seed a row: no intervals, no verdicts |" in lines
    assert "| unrun | – | – | – | not run yet: `nmt-compare experiment=unrun` |" in lines
    assert (
        "| [old](old/report.md) | – | – | – | an older report of one seed a row; not run with seeds yet: "
        "`nmt-compare experiment=old` |"
    ) in lines

    # The claims: Δ on the first test set with its interval, the verdict over all of them.
    link = "| [table1](table1/report.md) |"
    assert f"{link} reverse vs base | +1.3 | +2.41 [+1.20, +3.62] | test2016 | **holds** |" in lines
    assert f"{link} dropout vs reverse | +1.4 | -0.20 [-1.50, +1.10] | test2016 | **within noise** |" in lines
    assert f"{link} feed vs base | +0.3 | – | test2016 | **pending** |" in lines
    assert f"{link} local vs base | -0.5 | +1.00 [+0.20, +1.80] | test2016 | **not converged** |" in lines
    assert (
        f"{link} encdec degrades (BLEU drop on long sentences, encdec) | drops | +7.50 [+4.00, +11.00] | test2016 "
        "| **differs across test sets** |"
    ) in lines
    assert f"{link} search is steadier (BLEU drop on long sentences, encdec − search) | drops | – | test2016 " in page
    assert (
        "| [ablations](ablations/report.md) | no_feed vs default | – | -1.20 [-2.00, -0.40] | test2016 | **worse** |"
        in lines
    )
    assert " base vs" not in page and " default vs" not in page  # reference rows make no claim
    assert "unreported vs" not in page  # nor rows the paper has no number for
    assert "lr2 vs" not in page  # one seed: no interval to judge by
    assert "[old](old/report.md) |" not in page.split("## Claims")[1]


def test_every_comparison_experiment_is_listed_in_the_order_the_tables_are_run() -> None:
    assert list(results_summary.comparison_experiments().items()) == list(
        {
            "lr_grid": "lr_grid_multi30k",
            "bahdanau2014_table1": "bahdanau2014_table1",
            "luong2015_table1": "luong2015_table1",
            "luong2015_multi30k_ablations": "luong2015_multi30k_ablations",
            "compare_multi30k": "compare_multi30k",
            "vaswani2017_table3": "vaswani2017_table3",
        }.items()
    )
