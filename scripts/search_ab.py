"""A/B decoding: this tree's search against the search of an earlier git revision, on the same weights.

    python scripts/search_ab.py --checkpoint runs/quickstart/best.pt --baseline 7a6e951

Both searches decode the same test sentences with the same translator (batching, threads, weights); runs
are interleaved (A, B, A, B, ...) so a drifting machine affects both alike. Prints sentences/s (median and
range of ``--repeats`` runs) and detokenized sacreBLEU for greedy and beam search.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nmt.cli.startup import setup_cpu
from nmt.data.prepare import load_eval_set
from nmt.decoding import translator as translator_module
from nmt.decoding.search import SearchConfig, generate
from nmt.decoding.translator import Translator
from nmt.evaluation.metrics import corpus_scores
from nmt.paths import REPO_ROOT, data_root
from nmt.training.run_config import data_config_for


def search_at(revision: str):
    """The ``nmt.decoding.search`` module as it was at ``revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:nmt/search.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"search_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"search_{revision}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--baseline", required=True, help="git revision whose nmt/search.py is the baseline")
    parser.add_argument("--split", default="test2016")
    parser.add_argument("--beams", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=4096, help="decoding batch (tokens, as nmt-translate)")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    setup_cpu(0)
    baseline = search_at(args.baseline)
    translator = Translator.from_checkpoint(args.checkpoint, max_tokens=args.max_tokens)
    test = load_eval_set(
        data_config_for(translator.config, data_root()), args.split, translator.src_tok, translator.tgt_tok
    )
    searches = {f"baseline {args.baseline}": baseline.generate, "this tree": generate}
    rows = []
    for beam in args.beams:
        times: dict[str, list[float]] = {name: [] for name in searches}
        bleu = {}
        for _ in range(args.repeats):
            for name, search in searches.items():
                translator_module.generate = search
                translator.search = SearchConfig(beam_size=beam, length_penalty=args.length_penalty)
                start = time.perf_counter()
                hyps = translator.translate(test.sources)
                times[name].append(time.perf_counter() - start)
                bleu[name] = corpus_scores(hyps, test.references).bleu
        for name in searches:
            rates = sorted(len(test.sources) / t for t in times[name])
            row = {
                "search": name,
                "beam": beam,
                "alpha": args.length_penalty,
                "sent_s": round(float(np.median(rates)), 1),
            }
            row.update({"sent_s_range": [round(rates[0], 1), round(rates[-1], 1)], "bleu": round(bleu[name], 2)})
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n{args.split}, {len(test.sources)} sentences, alpha {args.length_penalty}, {args.repeats} interleaved runs\n"
    )
    print("| search | beam | sent/s (median, range) | BLEU |\n|---|---|---|---|")
    for r in rows:
        low, high = r["sent_s_range"]
        print(f"| {r['search']} | {r['beam']} | {r['sent_s']} ({low}-{high}) | {r['bleu']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
