"""docs/results/README.md: one line per paper claim of every comparison report, and whether it holds here.

    python scripts/results_summary.py          # after nmt-compare has written docs/results/<table>/

Reads each ``docs/results/<name>/results.json`` written by ``nmt-compare`` (its claims table and its
length claims) and lists every paper-table experiment in configs/experiment/, so a table that has not
been run yet shows up as such, with the command that runs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from nmt.claims import UNKNOWN

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def comparison_experiments() -> dict[str, dict]:
    """Experiment name -> its compare block, for every nmt-compare experiment."""
    found = {}
    for path in sorted((REPO / "configs" / "experiment").glob("*.yaml")):
        compare = (yaml.safe_load(path.read_text()) or {}).get("compare")
        if compare:
            found[path.stem] = compare
    return found


def _signed(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def claim_lines(name: str, results: dict) -> list[str]:
    meta, lines = results["meta"], []
    for row in results["runs"]:
        if row.get("verdict") in (None, "reference", UNKNOWN):  # UNKNOWN: a row the paper has no number for
            continue
        p = row.get("claim_p")
        lines.append(
            f"| [{name}]({name}/report.md) | {row['model']} vs {row['reference']} | {_signed(row['paper_delta'], 1)} "
            f"| {_signed(row['our_delta'])} | {'–' if p is None else f'{p:.4f}'} | **{row['verdict']}** |"
        )
    for claim in (meta.get("length_claims") or {}).get("claims", []):
        measured = claim["run"] + (f" − {claim['against']}" if claim["against"] else "")
        lines.append(
            f"| [{name}]({name}/report.md) | {claim['claim']} (BLEU drop on long sentences, {measured}) "
            f"| {claim['expect']} | {_signed(claim['our_drop'])} | {claim['p']:.4f} | **{claim['verdict']}** |"
        )
    return lines


def budget_line(name: str, results: dict) -> str:
    """How far a table's runs trained, and how many were still improving when their budget ended."""
    runs = results["runs"]
    steps = sorted({r["steps"] for r in runs})
    line = f"- {name}: {' / '.join(map(str, steps))} updates per row"
    if all("still_improving" in r for r in runs):
        improving = sum(r["still_improving"] for r in runs)
        line += f"; {improving} of {len(runs)} rows still improving at their last validation"
        if improving:
            line += " (their verdicts hold at this budget, not at convergence)"
    return line


def summary(results_dir: Path, experiments: dict[str, dict]) -> str:
    """The page: the claims of every paper table under ``results_dir``, then the other comparisons (with
    each row's verdict against its reference row where the comparison has one, as an ablation does)."""
    out = [
        "# The attention papers' claims on Multi30k",
        "",
        "One line per claim of every paper table reproduced with `nmt-compare` (regenerate this page with",
        "`python scripts/results_summary.py`). Paper Δ: the paper's change against the row it compares with",
        "(its data and metric); our Δ: ours on Multi30k de→en test2016 (detokenized sacreBLEU), with the",
        "paired-bootstrap p. A change no larger than the reference row's seed spread, or with p > 0.05, is",
        "*within noise*; otherwise it *holds* (the paper's direction) or is *reversed*. Every report states",
        "its scale gap: 29k caption pairs and a CPU budget instead of WMT and GPUs. These are our numbers on",
        "our data, never the papers'.",
        "",
        "| table | claim | paper Δ | our Δ | p | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    missing, others, budgets = [], [], []
    for name, compare in experiments.items():
        result_file = results_dir / name / "results.json"
        command = f"`nmt-compare experiment={name}`"
        if not compare.get("paper") and not compare.get("length_claims"):
            if not result_file.is_file():
                others.append(f"- {name} (not run yet: {command})")
                continue
            others.append(f"- [{name}]({name}/report.md)")
            ablation = claim_lines(name, json.loads(result_file.read_text()))
            if ablation:
                others += ["", "  | table | row | paper Δ | our Δ | p | verdict |", "  |---|---|---:|---:|---:|---|"]
                others += [f"  {line}" for line in ablation] + [""]
        elif result_file.is_file():
            results = json.loads(result_file.read_text())
            out += claim_lines(name, results)
            budgets.append(budget_line(name, results))
        else:
            missing.append(f"- {name}: not run yet ({command})")
    if budgets:
        out += ["", "## Budgets", "", *budgets]
    if missing:
        out += ["", "## Paper tables not run yet", "", *missing]
    if others:
        out += ["", "## Other comparisons (no paper numbers)", "", *others]
    return "\n".join(out) + "\n"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    (RESULTS / "README.md").write_text(summary(RESULTS, comparison_experiments()), encoding="utf-8")
    print(f"written {RESULTS / 'README.md'}")


if __name__ == "__main__":
    main()
