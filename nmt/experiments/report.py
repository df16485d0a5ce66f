"""The comparison report: every run over its seeds, the paper's claims with seed-based statistics, figures.

Reads only the kept rows (nmt.experiments.kept_rows: each finished seed's test translations, validations and
training log), so a table can be reported while some of its rows are still pending. Writes to the
report directory:
  report.md              the tables (Markdown), how it was made, which rows are pending or not converged
  results.json / .csv    the same numbers for other tools
  bleu_by_length.png     BLEU per source-length bucket and run, mean over seeds (Bahdanau et al. 2014, Fig. 2)
  learning_curves.png    valid BLEU / loss against steps and minutes (each run's first seed)
  attention_<run>.png    attention heatmaps of a few test sentences (where a run's checkpoint is at hand)
Every test split of the comparison is scored: detokenized sacreBLEU with its signature is the headline;
the tokenized-BLEU column exists only to set our numbers beside the papers' and is labelled so.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt.errors import ConfigError
from nmt.evaluation.metrics import (
    bleu_by_length,
    corpus_scores,
    length_drops,
    long_sentences,
    tokenized_bleu,
    tokenized_bleu_label,
)
from nmt.experiments.claims import (
    EXPECTED_DROP,
    NOT_CONVERGED,
    ONE_SEED,
    PENDING,
    combine,
    direction_verdict,
    effect_verdict,
    one_sample,
    seed_summary,
    verdict,
    welch,
)
from nmt.experiments.kept_rows import KeptRow
from nmt.experiments.plots import AttentionExample, plot_attention, plot_bleu_by_length, plot_learning_curves
from nmt.models import model_config
from nmt.training.trainer import TRAIN_LOG


@dataclass
class TestSet:
    """A test split's raw sources and references, every line in file order."""

    sources: list[str]
    references: list[str]


@dataclass
class Row:
    """One run of a comparison over its seeds: those finished (kept) and those still to train."""

    name: str
    cfg: DictConfig  # the composed nmt-train config of its first seed
    overrides: list[str]  # its own overrides on top of compare.common
    kept: list[KeptRow]
    pending: list[int]  # seeds not trained yet
    attention: list[AttentionExample] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.pending

    @property
    def converged(self) -> bool:
        return all(k.converged for k in self.kept)


def training_rates(run_dir: Path) -> list[float]:
    """The target tokens/s of every log window of an nmt-train run (or kept row), from its
    ``train_log.jsonl`` (none if it logged no window); a resumed run's windows are all there, in order."""
    log_file = Path(run_dir) / TRAIN_LOG
    if not log_file.is_file():
        return []
    lines = log_file.read_text(encoding="utf-8").splitlines()
    return [float(json.loads(line)["tgt_tokens_per_s"]) for line in lines if line.strip()]


def shared_setting(rows: list[Row], what: str, value: Any) -> Any:
    """The one value of a setting every run of a report must share (its table has one column for it)."""
    values = {row.name: value(row) for row in rows}
    if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
        listed = "; ".join(f"{name}: {v}" for name, v in values.items())
        raise ConfigError(
            f"the runs of one report must share {what}, but they differ ({listed}); set it in compare.common"
        )
    return next(iter(values.values()))


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean_sd(values: list[float]) -> dict[str, Any]:
    mean, sd = seed_summary(values) if values else (None, None)
    return {"mean": mean, "sd": sd, "n": len(values), "seeds": values}


def _pm(stat: dict[str, Any]) -> str:
    if not stat["n"]:
        return "–"
    return f"{stat['mean']:.2f} ± {stat['sd']:.2f} ({stat['n']})"


def score_rows(rows: list[Row], sets: dict[str, TestSet], tokenize: str, tgt_lang: str, tok: bool) -> list[dict]:
    """Per run: BLEU and chrF on every split (mean ± sd over its finished seeds), training facts."""
    table = []
    for row in rows:
        bleu: dict[str, dict] = {}
        chrf: dict[str, dict] = {}
        for split, eval_set in sets.items():
            scores = [corpus_scores(k.hypotheses(split), eval_set.references, tokenize) for k in row.kept]
            bleu[split] = _mean_sd([s.bleu for s in scores])
            chrf[split] = _mean_sd([s.chrf for s in scores])
        first = next(iter(sets))
        tok_bleu = (
            _mean_sd([tokenized_bleu(k.hypotheses(first), sets[first].references, tgt_lang)[0] for k in row.kept])
            if tok
            else None
        )
        valid = [
            max((h["valid_bleu"] for h in k.history() if h.get("valid_bleu") is not None), default=None)
            for k in row.kept
        ]
        table.append(
            {
                "model": row.name,
                "description": model_config(row.cfg.model)[1].describe(),
                "settings": " ".join(row.overrides),
                "seeds_done": [k.seed for k in row.kept],
                "seeds_pending": row.pending,
                "converged": row.converged if row.kept else None,
                "not_converged_seeds": [k.seed for k in row.kept if not k.converged],
                "parameters": row.kept[0].info["parameters"] if row.kept else None,
                "steps": _mean_sd([float(k.info["steps"]) for k in row.kept]),
                "train_minutes": _mean_sd([float(k.info["train_minutes"]) for k in row.kept]),
                # median target tokens/s of each seed's log windows (those with a validation in them are few)
                "tgt_tokens_per_s": _mean_sd(
                    [statistics.median(r) for k in row.kept if (r := training_rates(k.folder))]
                ),
                "valid_bleu": _mean_sd([v for v in valid if v is not None]),
                "bleu": bleu,
                "chrf": chrf,
                "tokenized_bleu": tok_bleu,
                "paper_bleu": None,
            }
        )
    return table


def _decidable(*rows: dict) -> str | None:
    """Why no verdict can be drawn from these rows yet (None if one can)."""
    if any(r["seeds_pending"] or not r["seeds_done"] for r in rows):
        return PENDING
    if not all(r["converged"] for r in rows):
        return NOT_CONVERGED
    return None


def row_claims(table: list[dict], c: DictConfig, splits: list[str]) -> dict[str, Any]:
    """Each row's change against its reference row (``compare.reference``, default the baseline) on every
    split: difference of seed means, Welch's interval over both rows' seeds, the verdict per split and
    over all splits (nmt.experiments.claims). Rows gain ``reference``, ``paper_delta``, ``claims`` and ``verdict``."""
    paper = dict(c.get("paper") or {})
    by_name = {r["model"]: r for r in table}
    references = dict(c.get("reference") or {})
    for name, row in by_name.items():
        ref = str(references.get(name, c.baseline))
        row.update(paper_bleu=paper.get(name), reference=None, paper_delta=None, claims={})
        if name == ref:
            row["verdict"] = "reference"
            continue
        theirs, theirs_ref = paper.get(name), paper.get(ref)
        delta = None if theirs is None or theirs_ref is None else round(theirs - theirs_ref, 2)
        row.update(reference=ref, paper_delta=delta)
        verdicts = []
        for split in splits:
            effect = welch(row["bleu"][split]["seeds"], by_name[ref]["bleu"][split]["seeds"])
            judged = verdict(delta, effect) if paper else effect_verdict(effect)
            verdicts.append(judged)
            row["claims"][split] = {
                "delta": None if effect is None else effect.delta,
                "interval": None if effect is None else [effect.low, effect.high],
                "resolution": None if effect is None else effect.resolution,
                "verdict": judged,
            }
        one_seed = min(len(row["seeds_done"]), len(by_name[ref]["seeds_done"])) < 2
        row["verdict"] = _decidable(row, by_name[ref]) or (ONE_SEED if one_seed else combine(verdicts))
    return {"paper": bool(paper), "source": c.get("paper_source"), "scale_note": c.get("scale_note")}


def length_claims(rows: list[Row], table: list[dict], sets: dict[str, TestSet], c: DictConfig, tokenize: str):
    """Claims about BLEU on long sentences (``compare.length_claims``; Bahdanau et al. 2014, Fig. 2).

    A run's drop is BLEU on the test sentences of at most ``long_words`` source words minus BLEU on the
    longer ones, per seed; with ``against``, the run's mean drop minus the other run's (Welch over seeds),
    else the mean drop over seeds (t interval). The claim says it is positive (``drops``) or zero
    (``steady``), on every split."""
    spec = c.get("length_claims")
    if not spec:
        return None
    long_words = int(spec.long_words)
    facts = {r["model"]: r for r in table}
    drops: dict[str, dict[str, list[float]]] = {}
    for split, eval_set in sets.items():
        systems = {f"{r.name}/{k.seed}": k.hypotheses(split) for r in rows for k in r.kept}
        if not systems:
            break
        measured = length_drops(eval_set.sources, systems, eval_set.references, long_words, 1, tokenize)
        for r in rows:
            drops.setdefault(r.name, {})[split] = [measured[f"{r.name}/{k.seed}"].drop for k in r.kept]
    claims = []
    for cl in spec.claims:
        against = cl.get("against")
        involved = [facts[cl.run], *([facts[against]] if against else [])]
        per_split = {}
        for split in sets:
            ours = drops.get(cl.run, {}).get(split, [])
            if against:
                effect = welch(ours, drops.get(against, {}).get(split, []))
            else:
                effect = one_sample(ours)
            per_split[split] = {
                "drop": None if effect is None else effect.delta,
                "interval": None if effect is None else [effect.low, effect.high],
                "verdict": direction_verdict(EXPECTED_DROP[str(cl.expect)], effect),
            }
        claims.append(
            {
                "claim": str(cl.claim),
                "run": str(cl.run),
                "against": None if against is None else str(against),
                "expect": str(cl.expect),
                "splits": per_split,
                "verdict": _decidable(*involved) or combine([v["verdict"] for v in per_split.values()]),
            }
        )
    first = next(iter(sets))
    return {
        "long_words": long_words,
        "long_sentences": {s: int(long_sentences(e.sources, long_words).sum()) for s, e in sets.items()},
        "sentences": {s: len(e.sources) for s, e in sets.items()},
        "mean_drop": {n: statistics.fmean(d[first]) for n, d in drops.items() if d.get(first)},
        "claims": claims,
    }


def write_report(report_dir: Path, rows: list[Row], sets: dict[str, TestSet], c: DictConfig, command: str) -> dict:
    """Score every kept row on every split, judge the claims, write tables and figures; returns results.json."""
    done = [r for r in rows if r.kept]
    if not done:
        raise ConfigError(f"no finished row to report in {report_dir}: train some first (compare.train=true)")
    tokenize = shared_setting(done, "eval.tokenize", lambda r: str(r.cfg.eval.tokenize))
    search = shared_setting(done, "the search settings", lambda r: OmegaConf.to_container(r.cfg.search))
    checkpoint = shared_setting(done, "eval.checkpoint", lambda r: str(r.cfg.eval.checkpoint))
    tgt_lang = shared_setting(done, "data.tgt_lang", lambda r: str(r.cfg.data.tgt_lang))
    splits = list(sets)
    table = score_rows(rows, sets, tokenize, tgt_lang, bool(c.tokenized_bleu))
    claims = row_claims(table, c, splits)
    long_claims = length_claims(rows, table, sets, c, tokenize)
    first = splits[0]
    by_length = {}
    for row in done:
        per_seed = [
            bleu_by_length(sets[first].sources, k.hypotheses(first), sets[first].references, list(c.length_buckets))
            for k in row.kept
        ]
        by_length[row.name] = [
            {**b, "bleu": None if not b["sentences"] else statistics.fmean(s[i]["bleu"] for s in per_seed)}
            for i, b in enumerate(per_seed[0])
        ]
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_bleu_by_length(by_length, report_dir / "bleu_by_length.png", first)
    plot_learning_curves({r.name: r.kept[0].history() for r in done}, report_dir / "learning_curves.png")
    for row in done:
        if row.attention:
            plot_attention(row.attention, report_dir / f"attention_{row.name}.png", row.name)
    signature = corpus_scores(done[0].kept[0].hypotheses(first), sets[first].references, tokenize)
    meta = {
        "command": command,
        "splits": {s: len(e.references) for s, e in sets.items()},
        "baseline": str(c.baseline),
        "seeds": list(c.seeds),
        "search": search,
        "checkpoint": checkpoint,
        "bleu_signature": signature.bleu_signature,
        "chrf_signature": signature.chrf_signature,
        "tokenized_bleu": tokenized_bleu_label(tgt_lang) if c.tokenized_bleu else None,
        "claims": claims,
        "length_claims": long_claims,
        "pending": {r["model"]: r["seeds_pending"] for r in table if r["seeds_pending"]},
        "not_converged": {r["model"]: r["not_converged_seeds"] for r in table if r["not_converged_seeds"]},
        "training": training_note(c),
    }
    results = {"meta": meta, "runs": table, "bleu_by_length": by_length}
    (report_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    with open(report_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "split", "seeds", "bleu_mean", "bleu_sd", "chrf_mean", "converged", "verdict"])
        for r in table:
            for s in splits:
                b = r["bleu"][s]
                writer.writerow(
                    [r["model"], s, b["n"], b["mean"], b["sd"], r["chrf"][s]["mean"], r["converged"], r.get("verdict")]
                )
    (report_dir / "report.md").write_text(_markdown(table, by_length, meta, done), encoding="utf-8")
    return results


def training_note(c: DictConfig) -> str:
    """How the rows were trained, from compare.common (the convergence rule a reader needs)."""
    common = " ".join(str(o) for o in c.common)
    return f"Common settings: `{common}`." if common else ""


def _claims_markdown(table: list[dict], claims: dict[str, Any], splits: list[str]) -> list[str]:
    paper = claims["paper"]
    lines = ["", "## The paper's claims on this data" if paper else "## Each row against its reference row", ""]
    if claims["scale_note"]:
        lines += [str(claims["scale_note"]).strip(), ""]
    rule = (
        "Δ: our row's mean over seeds minus its reference row's mean; [interval]: Welch's 95% interval over both "
        "rows' seeds (seed noise, not only test-set noise). "
    )
    if paper:
        lines.append(
            f"Paper numbers: {claims['source'] or 'as given in the config'} (the paper's data and metric, not "
            f"ours). {rule}A claim *holds* "
            "when the interval excludes 0 on the paper's side on every test set, is *reversed* on the other side; "
            "*below our resolution* when the paper's Δ is smaller than the interval's half-width; *within noise* "
            "otherwise. No verdict is drawn from a row with pending seeds or a seed that did not converge."
        )
    else:
        lines.append(f"{rule}*better* / *worse* when the interval excludes 0 on every test set.")
    head = " | ".join(f"Δ {s} [95% interval]" for s in splits)
    lines += ["", f"| row | against | paper Δ | {head} | verdict |", "|---|---|---:|" + "---:|" * len(splits) + "---|"]
    for r in table:
        if r["verdict"] == "reference":
            continue
        cells = []
        for s in splits:
            cl = r["claims"][s]
            cells.append(
                "–"
                if cl["delta"] is None
                else f"{cl['delta']:+.2f} [{cl['interval'][0]:+.2f}, {cl['interval'][1]:+.2f}]"
            )
        lines.append(
            f"| {r['model']} | {r['reference']} | {_fmt(r['paper_delta'])} | {' | '.join(cells)} | {r['verdict']} |"
        )
    return lines


def _length_claims_markdown(lc: dict[str, Any], splits: list[str]) -> list[str]:
    n = lc["long_words"]
    long = ", ".join(f"{s}: {lc['long_sentences'][s]} of {lc['sentences'][s]}" for s in splits)
    lines = [
        "",
        "## The paper's claims on long sentences",
        "",
        f"Drop: BLEU on the test sentences of at most {n} source words minus BLEU on the longer ones ({long}), "
        "per seed; with a second run, the first run's mean drop minus the second's (Welch over seeds), else "
        "the mean drop with its t interval over seeds.",
        "",
        "| claim | measured | paper | " + " | ".join(f"drop {s} [95%]" for s in splits) + " | verdict |",
        "|---|---|---|" + "---:|" * len(splits) + "---|",
    ]
    for r in lc["claims"]:
        measured = r["run"] + (f" − {r['against']}" if r["against"] else "")
        cells = []
        for s in splits:
            d = r["splits"][s]
            cells.append(
                "–" if d["drop"] is None else f"{d['drop']:+.2f} [{d['interval'][0]:+.2f}, {d['interval'][1]:+.2f}]"
            )
        lines.append(f"| {r['claim']} | {measured} | {r['expect']} | {' | '.join(cells)} | {r['verdict']} |")
    return lines


def _markdown(table: list[dict], by_length: dict[str, list[dict]], meta: dict, done: list[Row]) -> str:
    search = meta["search"]
    splits = list(meta["splits"])
    lines = [
        "# Model comparison",
        "",
        f"Regenerate with: `{meta['command']}`",
        "",
        f"Test sets: {', '.join(f'{s} ({n} sentences)' for s, n in meta['splits'].items())}, every sentence "
        f"scored; beam {search['beam_size']}, length penalty α {search['length_penalty']}; checkpoint: "
        f"{meta['checkpoint']}; seeds {', '.join(map(str, meta['seeds']))} per row. {meta['training']}",
        "",
    ]
    if meta["pending"]:
        pending = "; ".join(f"{m}: seeds {', '.join(map(str, s))}" for m, s in meta["pending"].items())
        lines += [f"**Pending** (not trained yet; rerun the same command to train them): {pending}.", ""]
    if meta["not_converged"]:
        stuck = "; ".join(f"{m}: seeds {', '.join(map(str, s))}" for m, s in meta["not_converged"].items())
        lines += [f"**Not converged** (reached the cap still improving; no verdict drawn): {stuck}.", ""]
    head = " | ".join(f"BLEU {s}" for s in splits)
    lines += [
        f"| model | description | settings | params | steps | train min | valid BLEU | {head} | chrF {splits[0]} "
        "| tokenized BLEU † | paper |",
        "|---|---|---|---:|---:|---:|---:|" + "---:|" * len(splits) + "---:|---:|---:|",
    ]
    for r in table:
        settings = f"`{r['settings']}`" if r["settings"] else "–"
        params = "–" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f}M"
        steps = "–" if not r["steps"]["n"] else f"{r['steps']['mean']:.0f}"
        minutes = "–" if not r["train_minutes"]["n"] else f"{r['train_minutes']['mean']:.1f}"
        bleus = " | ".join(_pm(r["bleu"][s]) for s in splits)
        tok = _pm(r["tokenized_bleu"]) if r["tokenized_bleu"] else "–"
        lines.append(
            f"| {r['model']} | {r['description']} | {settings} | {params} | {steps} | {minutes} "
            f"| {_pm(r['valid_bleu'])} | {bleus} | {_pm(r['chrf'][splits[0]])} | {tok} | {_fmt(r['paper_bleu'])} |"
        )
    lines += [
        "",
        "- Each cell: mean ± sample standard deviation over the row's finished seeds (their number in brackets).",
        f"- BLEU: detokenized sacreBLEU, signature `{meta['bleu_signature']}`; chrF `{meta['chrf_signature']}`.",
        "- settings: the run's own overrides on top of the comparison's common ones.",
        "- valid BLEU: the best validation BLEU during training (greedy); steps, minutes: means over seeds.",
    ]
    if meta["tokenized_bleu"]:
        lines.append(f"- † {meta['tokenized_bleu']}, on {splits[0]}; only to set beside the papers.")
    lines += _claims_markdown(table, meta["claims"], splits)
    if meta["length_claims"]:
        lines += _length_claims_markdown(meta["length_claims"], splits)
    buckets = next(iter(by_length.values()))
    lines += [
        "",
        f"## BLEU by source-sentence length ({splits[0]}, mean over seeds)",
        "",
        "![BLEU by source length](bleu_by_length.png)",
        "",
        "| model | " + " | ".join(f"{b['bucket']} words ({b['sentences']})" for b in buckets) + " |",
        "|---|" + "---:|" * len(buckets),
    ]
    for name, rows_ in by_length.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(b["bleu"]) for b in rows_) + " |")
    lines += ["", "## Learning curves (first seed of each row)", "", "![learning curves](learning_curves.png)"]
    shown = [r for r in done if r.attention]
    if shown:
        lines += ["", "## Attention", ""]
        lines += [f"![attention of {r.name}](attention_{r.name}.png)" for r in shown]
    return "\n".join(lines) + "\n"
