"""Two checkouts of nmt on the user-visible commands: training speed and decoding time, both CPU kinds.

    git worktree add /tmp/before <commit>
    python scripts/before_after.py --before /tmp/before --after . --rnn runs/rnn/best.pt \
        --transformer runs/quickstart/best.pt --source test2016.de --out /tmp/before_after

For each CPU kind (this machine's kernels, then AVX2 through the ISA environment variables) and each round,
the two checkouts run one after the other (interleaved): ``nmt-translate`` of ``--source`` with each
checkpoint, greedy and beam 5 (wall seconds, start-up included), the Transformer also through its
CTranslate2 float32 and int8 exports (int8: a checkout without ``nmt-export`` int8 decoding, as before the
plain-models change, decodes with ``quantization=int8``), and ``nmt-train trainer=multi30k_cpu`` for 30
updates of the small Transformer and RNNsearch (median target tokens/s of the 10-update windows after the
first). Prints every median with its rounds and whether the two checkouts' hypotheses are byte-identical;
``--out``/results.json keeps the raw rounds. Needs ``$NMT_DATA_ROOT`` for training (or the hub).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "CT2_FORCE_CPU_ISA": "AVX2",
    },
}


def module(tree: Path, name: str) -> str:
    """``nmt.cli.<name>`` in a checkout with the cli package, ``nmt.<name>`` in an older one."""
    return f"nmt.cli.{name}" if (tree / "nmt" / "cli" / f"{name}.py").is_file() else f"nmt.{name}"


def run(tree: Path, kind: str, name: str, overrides: list[str]) -> float:
    """Wall seconds of ``python -m <nmt command> overrides`` in ``tree`` under the ``kind`` kernels."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "ONEDNN_", "MKL_", "CT2_"))}
    env.update(KINDS[kind], PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", module(tree, name), *overrides], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(overrides)} in {tree} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--after", type=Path, required=True, help="the newer checkout")
    parser.add_argument("--rnn", type=Path, required=True, help="an RNN checkpoint")
    parser.add_argument("--transformer", type=Path, required=True, help="a Transformer checkpoint")
    parser.add_argument("--source", type=Path, required=True, help="text to translate, one sentence per line")
    parser.add_argument("--out", type=Path, required=True, help="folder for hypotheses, exports, results.json")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    out = args.out.resolve()
    (out / "hyp").mkdir(parents=True, exist_ok=True)

    exports = {}
    for code, tree in trees.items():
        for q in ("float32", "int8"):
            exports[code, q] = out / f"ct2_{code}_{q}"
            if not exports[code, q].is_dir():
                run(
                    tree,
                    "native",
                    "export",
                    [f"checkpoint={args.transformer.resolve()}", f"output={exports[code, q]}", f"quantization={q}"],
                )

    def int8(code: str) -> tuple[Path, list[str]]:
        if (trees[code] / "nmt" / "decode_workers.py").is_file():  # the C int8 kernels of the older code
            return args.transformer.resolve(), ["quantization=int8"]
        return exports[code, "int8"], []

    decodes = {
        "rnn pytorch": lambda code: (args.rnn.resolve(), []),
        "transformer pytorch": lambda code: (args.transformer.resolve(), []),
        "transformer ctranslate2 float32": lambda code: (exports[code, "float32"], []),
        "transformer int8": int8,
    }
    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for kind in KINDS:
            for code, tree in trees.items():
                for name, model in decodes.items():
                    checkpoint, extra = model(code)
                    for beam in (1, 5):
                        hyp = out / "hyp" / f"{name.replace(' ', '_')}.{code}.{kind}.{beam}"
                        seconds = run(
                            tree,
                            kind,
                            "translate",
                            [
                                f"checkpoint={checkpoint}",
                                f"input={args.source.resolve()}",
                                f"output={hyp}",
                                f"search.beam_size={beam}",
                                "device=cpu",
                                *extra,
                            ],
                        )
                        results.setdefault(f"decode {name} beam {beam} (s) | {kind} | {code}", []).append(seconds)
                for model_name in ("transformer_small", "rnnsearch"):
                    with tempfile.TemporaryDirectory() as d:
                        run(
                            tree,
                            kind,
                            "train",
                            [
                                f"model={model_name}",
                                "trainer=multi30k_cpu",
                                "trainer.max_minutes=0",
                                "trainer.max_steps=30",
                                "trainer.validate_every=0",
                                "trainer.log_every=10",
                                "data.test_splits=[]",
                                f"run_dir={d}/run",
                                "trainer.validate_bleu=false",
                                "trainer.early_stopping.metric=loss",
                            ],
                        )
                        lines = (Path(d) / "run" / "train_log.jsonl").read_text().splitlines()
                        rate = statistics.median(json.loads(line)["tgt_tokens_per_s"] for line in lines[1:])
                    results.setdefault(f"train {model_name} (tgt tok/s) | {kind} | {code}", []).append(rate)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    for key, values in results.items():
        print(f"{key}: median {statistics.median(values):.2f} (rounds {', '.join(f'{v:.2f}' for v in values)})")
    for name in decodes:
        for kind in KINDS:
            for beam in (1, 5):
                same = filecmp.cmp(
                    *(out / "hyp" / f"{name.replace(' ', '_')}.{c}.{kind}.{beam}" for c in trees), shallow=False
                )
                print(f"identical hypotheses, {name} beam {beam} {kind}: {same}")


if __name__ == "__main__":
    main()
