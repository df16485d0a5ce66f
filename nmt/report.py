"""The comparison report: one table of every run, significance against a baseline, and the figures.

Writes to the report directory:
  report.md              the table (Markdown), BLEU by length, links to the figures, how it was made
  results.csv / .json    the same numbers for other tools
  bleu_by_length.png     BLEU per source-length bucket and model (Bahdanau et al. 2014, Fig. 2)
  learning_curves.png    valid BLEU / loss against steps and wall-clock minutes
  attention_<run>.png    attention heatmaps of a few test sentences per attention model
  hyps/<run>.<split>.txt the detokenized hypotheses scored (line N translates source line N)
The headline is detokenized sacreBLEU with its signature; the tokenized-BLEU column exists only to set
our numbers beside the papers' and is labelled so.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.claims import EXPECTED_DROP, Claim, direction_verdict, effect_verdict, seed_spread, seed_summary, verdict
from nmt.errors import ConfigError
from nmt.metrics import (
    bleu_by_length,
    bootstrap_p,
    corpus_scores,
    length_drops,
    long_sentences,
    paired_bootstrap,
    tokenized_bleu,
    tokenized_bleu_label,
)
from nmt.models import model_config
from nmt.plots import AttentionExample, plot_attention, plot_bleu_by_length, plot_learning_curves
from nmt.trainer import TRAIN_LOG


@dataclass
class DecodedRun:
    """One run's test-split output, with the config it was trained and decoded with."""

    name: str
    cfg: DictConfig
    sources: list[str]
    references: list[str]
    hypotheses: list[str]
    attention: list[AttentionExample]


def training_rates(run_dir: Path) -> list[float]:
    """The target tokens/s of every log window of an nmt-train run, from its ``train_log.jsonl``
    (none if the run logged no window); a resumed run's windows are all there, in order."""
    log_file = Path(run_dir) / TRAIN_LOG
    if not log_file.is_file():
        return []
    lines = log_file.read_text(encoding="utf-8").splitlines()
    return [float(json.loads(line)["tgt_tokens_per_s"]) for line in lines if line.strip()]


def training_record(run_dir: Path) -> dict[str, Any]:
    """Parameters, steps and time from results.json, validations from metrics.json, and the median
    training speed of the log windows (the median ignores the windows that include a validation)."""
    results = json.loads((run_dir / "results.json").read_text())
    metrics_file = run_dir / "metrics.json"
    history = json.loads(metrics_file.read_text()) if metrics_file.is_file() else []
    rates = training_rates(run_dir)
    bleus = [h["valid_bleu"] for h in history if h.get("valid_bleu") is not None]
    return {
        "parameters": results["parameters"],
        "steps": results["steps"],
        "train_minutes": results["train_minutes"],
        "tgt_tokens_per_s": round(statistics.median(rates)) if rates else None,
        "valid_bleu": round(max(bleus), 2) if bleus else None,
        "history": history,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _p_value(p: float | None) -> str:
    return "baseline" if p is None else (f"{p:.4f}" + (" *" if p < 0.05 else ""))


def shared_setting(runs: list[DecodedRun], what: str, value: Callable[[DecodedRun], Any]) -> Any:
    """The one value of a setting every run of a report must share (its table has one column for it)."""
    values = {run.name: value(run) for run in runs}
    if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
        listed = "; ".join(f"{name}: {v}" for name, v in values.items())
        raise ConfigError(
            f"the runs of one report must share {what}, but they differ ({listed}); set it in compare.common"
        )
    return next(iter(values.values()))


def write_report(report_dir: Path, runs: list[DecodedRun], c: DictConfig, split: str, command: str) -> list[dict]:
    """Score every run, test it against the baseline, write tables and figures; returns the rows."""
    tokenize = shared_setting(runs, "eval.tokenize", lambda r: str(r.cfg.eval.tokenize))
    search = shared_setting(runs, "the search settings", lambda r: OmegaConf.to_container(r.cfg.search))
    checkpoint = shared_setting(runs, "eval.checkpoint", lambda r: str(r.cfg.eval.checkpoint))
    tgt_lang = shared_setting(runs, "data.tgt_lang", lambda r: str(r.cfg.data.tgt_lang))
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "hyps").mkdir(exist_ok=True)
    refs, sources = runs[0].references, runs[0].sources
    significance, bs_signature = paired_bootstrap(
        {r.name: r.hypotheses for r in runs}, refs, str(c.baseline), int(c.bootstrap_samples), tokenize
    )
    rows, by_length, histories = [], {}, {}
    scores = {}
    own_overrides = run_overrides(c)
    for run in runs:
        (report_dir / "hyps" / f"{run.name}.{split}.txt").write_text(
            "".join(h + "\n" for h in run.hypotheses), encoding="utf-8"
        )
        record = training_record(Path(run.cfg.run_dir))
        score = scores[run.name] = corpus_scores(run.hypotheses, refs, tokenize)
        sig = significance[run.name]
        paper = run.cfg.get("paper")
        tok_bleu = tokenized_bleu(run.hypotheses, refs, tgt_lang) if c.tokenized_bleu else None
        rows.append(
            {
                "model": run.name,
                "description": model_config(run.cfg.model)[1].describe(),
                "settings": " ".join(own_overrides.get(run.name, [])),
                "parameters": record["parameters"],
                "steps": record["steps"],
                "train_minutes": record["train_minutes"],
                "tgt_tokens_per_s": record["tgt_tokens_per_s"],
                "valid_bleu": record["valid_bleu"],
                "still_improving": still_improving(record["history"]),
                "bleu": score.bleu,
                "bleu_ci": sig.bleu_ci,
                "bleu_p": sig.bleu_p,
                "chrf": score.chrf,
                "chrf_ci": sig.chrf_ci,
                "chrf_p": sig.chrf_p,
                "tokenized_bleu": tok_bleu[0] if tok_bleu else None,
                "paper_bleu": paper.bleu if paper else None,
                "paper_source": f"{paper.table}; {paper.metric}" if paper else None,
            }
        )
        by_length[run.name] = bleu_by_length(sources, run.hypotheses, refs, list(c.length_buckets))
        histories[run.name] = record["history"]
        if run.attention:
            title = f"{run.name}: {rows[-1]['description']}"
            plot_attention(run.attention, report_dir / f"attention_{run.name}.png", title)
    claims = row_claims(rows, {r.name: r.hypotheses for r in runs}, refs, c, tokenize)
    long_claims = length_claims(sources, {r.name: r.hypotheses for r in runs}, refs, c, tokenize)
    first = scores[runs[0].name]
    meta = {
        "command": command,
        "split": split,
        "sentences": len(refs),
        "baseline": str(c.baseline),
        "search": search,
        "checkpoint": checkpoint,
        "bleu_signature": first.bleu_signature,
        "chrf_signature": first.chrf_signature,
        "bootstrap_signature": bs_signature,
        "tokenized_bleu": tokenized_bleu_label(tgt_lang) if c.tokenized_bleu else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "claims": claims,
        "length_claims": long_claims,
    }
    plot_bleu_by_length(by_length, report_dir / "bleu_by_length.png", split)
    plot_learning_curves(histories, report_dir / "learning_curves.png")
    (report_dir / "results.json").write_text(
        json.dumps({"meta": meta, "runs": rows, "bleu_by_length": by_length}, indent=1, default=float)
    )
    with open(report_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (report_dir / "report.md").write_text(_markdown(rows, by_length, meta, runs), encoding="utf-8")
    return rows


def reference_seed_runs(c: DictConfig) -> list[str]:
    """The baseline and its extra-seed runs (``compare.reference_seeds``), whose spread is the noise floor."""
    return [str(c.baseline), *(f"{c.baseline}_seed{k}" for k in c.get("reference_seeds") or [])]


def run_overrides(c: DictConfig) -> dict[str, list[str]]:
    """Each run's own overrides on top of ``compare.common``: ``compare.runs`` plus the baseline's extra-seed
    runs, which repeat the baseline's with another ``trainer.seed``."""
    base = list(c.runs[c.baseline])
    seed_runs = zip(reference_seed_runs(c)[1:], c.get("reference_seeds") or [])
    return {
        **{name: list(own) for name, own in c.runs.items()},
        **{n: [*base, f"trainer.seed={k}"] for n, k in seed_runs},
    }


def still_improving(history: list[dict]) -> bool:
    """True if a run's best validation BLEU came at its last validation: training stopped at its budget
    while the model was still getting better, so its comparison is one at that budget, not at convergence."""
    bleus = [h["valid_bleu"] for h in history if h.get("valid_bleu") is not None]
    return len(bleus) > 1 and bleus[-1] >= max(bleus)


def row_claims(
    rows: list[dict], hypotheses: dict[str, list[str]], refs: list[str], c: DictConfig, tokenize: str
) -> dict[str, Any] | None:
    """Each row's change against the row it is compared with (``compare.reference``, default the baseline):
    our change, the paired-bootstrap p of our row against that row, and the verdict. In a paper table
    (``compare.paper``: run -> the paper's number) the verdict says whether the paper's claim holds
    (nmt.claims.verdict); a row without a paper number, as in an ablation, is better / worse / within
    noise (nmt.claims.effect_verdict). None when the comparison names neither paper numbers nor reference
    seeds. The rows gain ``reference``, ``paper_delta``, ``our_delta``, ``claim_p`` and ``verdict``."""
    paper = dict(c.get("paper") or {})
    if not paper and not c.get("reference_seeds"):
        return None
    by_name = {r["model"]: r for r in rows}
    seeds = reference_seed_runs(c)
    spread = seed_spread([by_name[n]["bleu"] for n in seeds])
    references = dict(c.get("reference") or {})
    for name, row in by_name.items():
        ref = str(references.get(name, c.baseline))
        row.update(reference=None, paper_bleu=paper.get(name), paper_delta=None, our_delta=None, claim_p=None)
        if name in seeds or name == ref:
            row["verdict"] = "reference"
            continue
        if ref == c.baseline:
            p = row["bleu_p"]
        else:  # this row's claim is against another row: test against that one
            pair = {ref: hypotheses[ref], name: hypotheses[name]}
            p = paired_bootstrap(pair, refs, ref, int(c.bootstrap_samples), tokenize)[0][name].bleu_p
        ours, theirs, theirs_ref = row["bleu"] - by_name[ref]["bleu"], paper.get(name), paper.get(ref)
        delta = None if theirs is None or theirs_ref is None else round(theirs - theirs_ref, 2)
        row.update(reference=ref, paper_delta=delta, our_delta=round(ours, 2), claim_p=p)
        if paper:
            row["verdict"] = verdict(Claim(delta, ours, p, spread))
        else:
            row["verdict"] = effect_verdict(ours, p, spread)
    seed_scores = [by_name[n]["bleu"] for n in seeds]
    return {
        "paper": bool(paper),
        "source": c.get("paper_source"),
        "scale_note": c.get("scale_note"),
        "seed_runs": seeds,
        "seed_spread": round(spread, 2),
        "seed_mean_std": [round(x, 2) for x in seed_summary(seed_scores)],
    }


def length_claims(
    sources: list[str], hypotheses: dict[str, list[str]], refs: list[str], c: DictConfig, tokenize: str
) -> dict[str, Any] | None:
    """Claims about BLEU on long sentences (``compare.length_claims``; Bahdanau et al. 2014, Fig. 2).

    Each claim says a run's drop (BLEU on sentences of at most ``long_words`` source words minus BLEU on
    the longer ones) is positive (``drops``) or zero (``steady``), or, with ``against``, that the run's
    drop minus the other run's drop is. The p-value is the bootstrap's over the test sentences (the same
    resamples for every run); the noise floor is the spread of the drop over the reference seed runs.
    """
    spec = c.get("length_claims")
    if not spec:
        return None
    seeds = reference_seed_runs(c)
    wanted = {*seeds, *(cl.run for cl in spec.claims), *(cl.against for cl in spec.claims if cl.get("against"))}
    drops = length_drops(
        sources, {n: hypotheses[n] for n in wanted}, refs, int(spec.long_words), int(c.bootstrap_samples), tokenize
    )
    spread = seed_spread([drops[n].drop for n in seeds])
    rows = []
    for cl in spec.claims:
        against = cl.get("against")
        ours = drops[cl.run].drop - (drops[against].drop if against else 0.0)
        samples = drops[cl.run].samples - (drops[against].samples if against else 0.0)
        p = bootstrap_p(samples, ours)
        rows.append(
            {
                "claim": str(cl.claim),
                "run": str(cl.run),
                "against": None if against is None else str(against),
                "expect": str(cl.expect),
                "our_drop": round(ours, 2),
                "p": p,
                "verdict": direction_verdict(EXPECTED_DROP[str(cl.expect)], ours, p, spread),
            }
        )
    return {
        "long_words": int(spec.long_words),
        "long_sentences": int(long_sentences(sources, int(spec.long_words)).sum()),
        "seed_runs": seeds,
        "seed_spread": round(spread, 2),
        "drops": {n: {"short": round(d.short_bleu, 2), "long": round(d.long_bleu, 2)} for n, d in drops.items()},
        "claims": rows,
    }


def _length_claims_markdown(lc: dict[str, Any], sentences: int) -> list[str]:
    n = lc["long_words"]
    lines = [
        "",
        "## The paper's claims on long sentences",
        "",
        f"Drop: BLEU on the test sentences of at most {n} source words ({sentences - lc['long_sentences']}) minus "
        f"BLEU on the longer ones ({lc['long_sentences']}); with a second run, the first run's drop minus the "
        f"second's. p: bootstrap over the test sentences (the same resamples for every run). Noise floor: the "
        f"drop's spread over {', '.join(lc['seed_runs'])}: {lc['seed_spread']:.2f}.",
        "",
        "| run | BLEU ≤ " + str(n) + " words | BLEU > " + str(n) + " words |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {d['short']:.2f} | {d['long']:.2f} |" for name, d in lc["drops"].items()]
    lines += ["", "| claim | measured | paper | our drop | p | verdict |", "|---|---|---|---:|---:|---|"]
    for r in lc["claims"]:
        measured = r["run"] + (f" − {r['against']}" if r["against"] else "")
        lines.append(
            f"| {r['claim']} | {measured} | {r['expect']} | {r['our_drop']:.2f} | {r['p']:.4f} | {r['verdict']} |"
        )
    return lines


def _claims_markdown(rows: list[dict], claims: dict[str, Any]) -> list[str]:
    paper = claims["paper"]
    lines = ["", "## The paper's claims on this data" if paper else "## Each row against its reference row", ""]
    if claims["scale_note"]:
        lines += [str(claims["scale_note"]).strip(), ""]
    mean, std = claims["seed_mean_std"]
    noise = (
        f"Noise floor: the reference row trained with seeds of {', '.join(claims['seed_runs'])}: {mean:.2f} ± "
        f"{std:.2f} BLEU (spread {claims['seed_spread']:.2f}). A change no larger than that spread, or with "
        "paired-bootstrap p > 0.05 against its reference row, is *within noise*; "
    )
    if paper:
        lines.append(
            f"Paper numbers: {claims['source']} (the paper's data and metric, not ours). Our numbers: detokenized "
            f"sacreBLEU on this test split. {noise}otherwise it *holds* if it points the paper's way and is "
            "*reversed* if not."
        )
    else:
        lines.append(f"Detokenized sacreBLEU on this test split. {noise}otherwise it is *better* or *worse*.")
    lines += [
        "",
        "| row | against | paper | paper Δ | ours | our Δ | p | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        p = r.get("claim_p")
        lines.append(
            f"| {r['model']} | {r['reference'] or '–'} | {_fmt(r['paper_bleu'])} | {_fmt(r['paper_delta'])} "
            f"| {r['bleu']:.2f} | {_fmt(r['our_delta'])} | {_fmt(p, 4)} | {r['verdict']} |"
        )
    improving = [r["model"] for r in rows if r["still_improving"]]
    if improving:
        lines += [
            "",
            f"Still improving when the budget ended (best validation BLEU at the last validation): "
            f"{', '.join(improving)} ({len(improving)} of {len(rows)} rows). These verdicts are the claims at this "
            "budget of updates, not at convergence; a claim about regularisation or a slower-learning model can "
            "change with more updates.",
        ]
    return lines


def _markdown(rows: list[dict], by_length: dict[str, list[dict]], meta: dict, runs: list[DecodedRun]) -> str:
    search = meta["search"]
    lines = [
        f"# Model comparison on {meta['split']}",
        "",
        f"Regenerate with: `{meta['command']}`",
        "",
        f"{meta['sentences']} test sentences, every one scored; beam {search['beam_size']}, length penalty "
        f"α {search['length_penalty']}; checkpoint: {meta['checkpoint']}. Machine: {meta['machine']}.",
        "",
        "| model | description | settings | params | steps | train min | tgt tok/s | valid BLEU | test BLEU ± 95% CI "
        "| p vs baseline | chrF ± 95% CI | p vs baseline | tokenized BLEU † | paper |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        paper = _fmt(r["paper_bleu"]) + (f" ({r['paper_source']})" if r["paper_source"] else "")
        settings = f"`{r['settings']}`" if r["settings"] else "–"
        valid = _fmt(r["valid_bleu"]) + (" ↑" if r["still_improving"] else "")
        lines.append(
            f"| {r['model']} | {r['description']} | {settings} | {r['parameters'] / 1e6:.2f}M | {r['steps']} "
            f"| {_fmt(r['train_minutes'], 1)} | {_fmt(r['tgt_tokens_per_s'])} | {valid} "
            f"| **{r['bleu']:.2f}** ± {r['bleu_ci']:.2f} | {_p_value(r['bleu_p'])} "
            f"| {r['chrf']:.2f} ± {r['chrf_ci']:.2f} | {_p_value(r['chrf_p'])} "
            f"| {_fmt(r['tokenized_bleu'])} | {paper} |"
        )
    lines += [
        "",
        f"- Test BLEU: detokenized sacreBLEU, signature `{meta['bleu_signature']}`; chrF signature "
        f"`{meta['chrf_signature']}`.",
        f"- 95% confidence intervals and p-values: sacrebleu paired bootstrap resampling against "
        f"**{meta['baseline']}**, `{meta['bootstrap_signature']}`; * marks p < 0.05.",
        "- settings: the run's own overrides on top of the comparison's common ones.",
        "- valid BLEU: the best validation BLEU during training (decoded at trainer.valid_beam; best.pt follows "
        "trainer.early_stopping.metric); ↑: the best came at the last validation, so the run was still "
        "improving when its budget ended.",
        "- tgt tok/s: median of the training log windows (target tokens per second, `train_log.jsonl`).",
    ]
    if meta["tokenized_bleu"]:
        lines.append(f"- † {meta['tokenized_bleu']}.")
    if meta["claims"]:
        lines += _claims_markdown(rows, meta["claims"])
    if meta["length_claims"]:
        lines += _length_claims_markdown(meta["length_claims"], meta["sentences"])
    buckets = next(iter(by_length.values()))
    lines += [
        "",
        "## BLEU by source-sentence length",
        "",
        "![BLEU by source length](bleu_by_length.png)",
        "",
        "| model | " + " | ".join(f"{b['bucket']} words ({b['sentences']})" for b in buckets) + " |",
        "|---|" + "---:|" * len(buckets),
    ]
    for name, rows_ in by_length.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(b["bleu"]) for b in rows_) + " |")
    lines += ["", "## Learning curves", "", "![learning curves](learning_curves.png)", "", "## Attention", ""]
    for run in runs:
        if run.attention:
            lines += [f"![attention of {run.name}](attention_{run.name}.png)", ""]
        else:
            lines += [f"{run.name}: no attention to show.", ""]
    return "\n".join(lines)
