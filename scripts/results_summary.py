"""docs/results/README.md: where every comparison table stands, and the verdict on each of its claims.

    python scripts/results_summary.py          # after nmt-compare has written docs/results/<table>/

Reads each table's ``docs/results/<compare.name>/results.json`` written by ``nmt-compare`` and lists every
comparison in configs/experiment/, so a table that has not been run yet shows up as such, with the
command that runs it. Per table: which rows are done, which have seeds still to train, which did not
converge; per claim: our Δ on the table's first test set with its interval over seeds, and the verdict
over all its test sets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


# The order the tables are run in (the learning rates first); any other comparison follows, by name.
ORDER = (
    "lr_grid",
    "bahdanau2014_table1",
    "luong2015_table1",
    "luong2015_multi30k_ablations",
    "compare_multi30k",
    "vaswani2017_table3",
)


def comparison_experiments() -> dict[str, str]:
    """Table name (``compare.name``, its folder under docs/results) -> the experiment that runs it."""
    found = {}
    for path in sorted((REPO / "configs" / "experiment").glob("*.yaml")):
        compare = (yaml.safe_load(path.read_text()) or {}).get("compare")
        if compare:
            found[str(compare.get("name", path.stem))] = path.stem
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda item: (rank.get(item[0], len(ORDER)), item[0])))


def _signed(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def _interval(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f} [{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _seeds(by_row: dict[str, list[int]]) -> str:
    return "; ".join(f"{row}: seeds {', '.join(map(str, seeds))}" for row, seeds in by_row.items()) or "–"


def status_line(name: str, results: dict) -> str:
    """The table's rows: how many are done (every seed trained), which seeds are pending, which did not
    converge."""
    meta, runs = results["meta"], results["runs"]
    done = sum(1 for r in runs if not r["seeds_pending"])
    note = "one seed a row: no intervals, no verdicts" if len(meta["seeds"]) < 2 else ""
    return (
        f"| [{name}]({name}/report.md) | {done} of {len(runs)} | {_seeds(meta['pending'])} "
        f"| {_seeds(meta['not_converged'])} | {note} |"
    )


def claim_lines(name: str, results: dict) -> list[str]:
    """One line per claim: each row against its reference row (rows the paper has a number for, or every
    row of a comparison without paper numbers), then the claims on long sentences."""
    meta = results["meta"]
    if len(meta["seeds"]) < 2:
        return []
    first = next(iter(meta["splits"]))
    link = f"[{name}]({name}/report.md)"
    lines = []
    for row in results["runs"]:
        if row.get("verdict") in (None, "reference"):
            continue
        if meta["claims"]["paper"] and row["paper_delta"] is None:  # the paper has no number for this row
            continue
        ours = row["claims"][first]
        lines.append(
            f"| {link} | {row['model']} vs {row['reference']} | {_signed(row['paper_delta'], 1)} "
            f"| {_interval(ours['delta'], ours['interval'])} | {first} | **{row['verdict']}** |"
        )
    for claim in (meta.get("length_claims") or {}).get("claims", []):
        measured = claim["run"] + (f" − {claim['against']}" if claim["against"] else "")
        ours = claim["splits"][first]
        lines.append(
            f"| {link} | {claim['claim']} (BLEU drop on long sentences, {measured}) | {claim['expect']} "
            f"| {_interval(ours['drop'], ours['interval'])} | {first} | **{claim['verdict']}** |"
        )
    return lines


def summary(results_dir: Path, tables: dict[str, str]) -> str:
    """The page for ``tables`` (name -> experiment), from their results under ``results_dir``."""
    out = [
        "# The comparison tables on Multi30k",
        "",
        "Every comparison of configs/experiment/ run with `nmt-compare` (regenerate this page with",
        "`python scripts/results_summary.py`). Every row is trained with several seeds: a row is done when all",
        "its seeds are, pending while some are not; a seed that reached its step, epoch or time cap instead of",
        "stopping early did not converge, and no verdict is drawn from its row. Paper Δ: the paper's change",
        "against the row it compares with (its data and metric); our Δ: our row's mean BLEU over seeds minus",
        "its reference row's on the table's first test set (detokenized sacreBLEU), with Welch's 95% interval",
        "over both rows' seeds. The verdict covers every test set of the table (each report says how it is",
        "drawn). These are our numbers on our data, never the papers'.",
        "",
        "## Tables",
        "",
        "| table | rows done | pending seeds | not converged | note |",
        "|---|---:|---|---|---|",
    ]
    claims = []
    for name, experiment in tables.items():
        result_file = results_dir / name / "results.json"
        if not result_file.is_file():
            out.append(f"| {name} | – | – | – | not run yet: `nmt-compare experiment={experiment}` |")
            continue
        results = json.loads(result_file.read_text())
        if "pending" not in results["meta"]:  # written by nmt-compare before rows were trained with seeds
            out.append(
                f"| [{name}]({name}/report.md) | – | – | – | an older report of one seed a row; not run with seeds "
                f"yet: `nmt-compare experiment={experiment}` |"
            )
            continue
        out.append(status_line(name, results))
        claims += claim_lines(name, results)
    out += [
        "",
        "## Claims",
        "",
        "| table | claim | paper Δ | our Δ [95% interval] | on | verdict |",
        "|---|---|---:|---:|---|---|",
        *claims,
    ]
    if not claims:
        out += ["", "No table has a claim to judge yet."]
    return "\n".join(out) + "\n" + NOTES


# What the tables leave out and how to run them elsewhere: the same on every regeneration.
NOTES = """
## How the rows are trained

Every row trains until early stopping on validation BLEU (`trainer=multi30k_converge`: one validation
per epoch of its training pairs, greedy; patience 5 validations; a 100-epoch cap, and a row that reaches
it still improving is "not converged"). Each finished seed is kept under `<table>/rows/<run>/seed<k>/`
(its test translations, validations, training log, settings fingerprint and commit): rerunning a table's
command trains only what is missing, also on another machine. The learning rates are chosen once on the
validation split by the `lr_grid` table. The reports of the earlier fixed-budget tables, one seed a row,
are kept as a learning-speed view in [learning_speed/](learning_speed/README.md).

On a GPU, many Multi30k rows fit at once: `nmt-compare experiment=<table> compare.jobs=8
'compare.extra=[trainer.device=cuda,trainer.amp=none]'` (fp32 like the CPU rows; `trainer.amp=none`
makes those rows a fingerprint of their own, so they are not mixed with rows trained under `amp=auto`).

## Rows retired from the papers' tables

A row is kept where the paper's change is at least 0.5 BLEU or the paper claims a tie that our seeds can
test; with three seeds a row's mean moves by about half its seed spread, so smaller paper changes would
read as "below our resolution" whatever the models do.
- Luong et al. Table 1: the reverse and dropout rows (each a single step of their WMT system whose effect
  here is mostly how fast a no-attention model starts to learn); the unknown-word replacement and
  ensemble rows (no unknown words with subwords; ensembles are `checkpoint=[a,b,...]` at decoding).
- Luong et al. Table 4: the local-m rows and local-p with the dot score (paper changes of 0.6 BLEU or less
  against their neighbours, below what three seeds resolve on 1,000 test sentences).
- Vaswani et al. Table 3: heads 2 / 8 / 16, d_k 32, layers 4, d_model 512, d_ff 512 / 2048, dropout 0.2,
  label smoothing 0.2 (paper changes under 0.5 BLEU). d_k 16 (-0.7), layers 2 (-0.5) and d_model 128
  (-1.3) are left out for CPU time only: they are the next rows to add (one line each in the config)
  once the six are done.
"""


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    (RESULTS / "README.md").write_text(summary(RESULTS, comparison_experiments()), encoding="utf-8")
    print(f"written {RESULTS / 'README.md'}")


if __name__ == "__main__":
    main()
