"""Speed against JoeyNMT 2.3 on the same machine, same model, same data, same batches, in one run.

    python -m venv /tmp/joeyenv && /tmp/joeyenv/bin/pip install torch==2.13.0 joeynmt==2.3.0
    python scripts/benchmark_joeynmt.py --joey-python /tmp/joeyenv/bin/python --steps 150

JoeyNMT is only run as a separate program from its own virtualenv; this project does not depend on it.
Both toolkits train the quickstart Transformer (3+3 layers, d 256, ff 1024, 4 heads, post-norm, tied
embeddings, dropout 0.1, label smoothing 0.1, Adam 0.9/0.98, lr 1.5e-3 with 400 warm-up steps, clip 5)
on Multi30k de-en with the same 8k joint sentencepiece model and 4096-token batches for ``--steps``
updates with their own training loops, then decode test2016 with beam 5 (alpha 1.0) using the model they just
trained, in 2000- and 8000-token batches (each toolkit compared at its faster one). Training speed is the
median of each toolkit's own logged target tokens/s (ours from the run's train_log.jsonl; JoeyNMT's "Tokens
per Sec" counts target tokens and leaves validation out); decoding speed is timed around the generation loop
(JoeyNMT's "Generation took" log line; our Translator call). Prints a table and writes ``--json``.
``--decode-only`` decodes again with the models and training logs already in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir

from nmt.data.prepare import load_eval_set, prepare_training_data
from nmt.decoding.translator import Translator
from nmt.evaluation.metrics import corpus_bleu
from nmt.experiments.report import training_rates
from nmt.paths import CONFIG_DIR
from nmt.training.run_config import data_config_for

BEAM, ALPHA = 5, 1.0
# Decoding batch sizes (tokens) tried with both toolkits; each toolkit is compared at its faster one
# (JoeyNMT 2.3 decodes these weak models faster in small batches, nmt in large ones).
DECODE_TOKENS = (2000, 8000)


def joey_config(work: Path, data_root: Path, steps: int, decode_tokens: int, test_only: bool = False) -> dict:
    side = {
        "level": "bpe",
        "lowercase": False,
        "max_length": 100,
        "voc_file": str(work / "vocab.txt"),
        "tokenizer_type": "sentencepiece",
        "tokenizer_cfg": {"model_file": str(work / "spm.model")},
    }
    layers = {
        "type": "transformer",
        "num_layers": 3,
        "num_heads": 4,
        "embeddings": {"embedding_dim": 256, "scale": True, "dropout": 0.0},
        "hidden_size": 256,
        "ff_size": 1024,
        "dropout": 0.1,
        "layer_norm": "post",
    }
    data = {
        "train": str(data_root / "multi30k" / "train"),
        "dev": str(data_root / "multi30k" / "valid"),
        "test": str(data_root / "multi30k" / "test2016"),
        "dataset_type": "plain",
        "src": {"lang": "de", **side},
        "trg": {"lang": "en", **side},
    }
    if test_only:
        del data["dev"]
    return {
        "name": "joeynmt_benchmark",
        "model_dir": str(work / "joey_model"),
        "use_cuda": False,
        "random_seed": 1,
        "data": data,
        "testing": {
            "n_best": 1,
            "beam_size": BEAM,
            "beam_alpha": ALPHA,
            "batch_size": decode_tokens,
            "batch_type": "token",
            "max_output_length": -1,
            "eval_metrics": ["bleu"],
            "sacrebleu_cfg": {"tokenize": "13a"},
        },
        "training": {
            "optimizer": "adam",
            "adam_betas": [0.9, 0.98],
            "learning_rate": 1.5e-3,
            "learning_rate_min": 1.0e-8,
            "learning_rate_warmup": 400,
            "scheduling": "warmupinversesquareroot",
            "clip_grad_norm": 5.0,
            "label_smoothing": 0.1,
            "loss": "crossentropy",
            "normalization": "tokens",
            "batch_size": 4096,
            "batch_type": "token",
            "updates": steps,
            "epochs": 1000,
            "validation_freq": steps,  # JoeyNMT writes a checkpoint only when it validates
            "logging_freq": 10,
            "early_stopping_metric": "ppl",
            "keep_best_ckpts": 1,
            "overwrite": True,
            "shuffle": True,
            "print_valid_sents": [],
        },
        "model": {
            "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform",
            "tied_embeddings": True,
            "tied_softmax": True,
            "encoder": layers,
            "decoder": layers,
        },
    }


def median_after_first(values: list[float]) -> float:
    """Median of the logged rates, leaving out the first window (start-up, first allocations)."""
    return statistics.median(values[1:] if len(values) > 2 else values)


def run_logged(command: list[str], log_file: Path) -> str:
    with open(log_file, "w") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    text = log_file.read_text()
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed (exit {done.returncode}); log: {log_file}\n{text[-3000:]}")
    return text


def train_joeynmt(python: str, work: Path, data_root: Path, steps: int) -> None:
    train_cfg = work / "joey_train.yaml"
    train_cfg.write_text(yaml.safe_dump(joey_config(work, data_root, steps, DECODE_TOKENS[0])))
    run_logged([python, "-m", "joeynmt", "train", str(train_cfg), "--skip-test"], work / "joey_train.log")


def decode_joeynmt(python: str, work: Path, data_root: Path, steps: int, tokens: int) -> dict:
    test_cfg, out = work / f"joey_test_{tokens}.yaml", work / f"joey_hyps_{tokens}"
    test_cfg.write_text(yaml.safe_dump(joey_config(work, data_root, steps, tokens, test_only=True)))
    log = run_logged([python, "-m", "joeynmt", "test", str(test_cfg), "-o", str(out)], work / f"joey_test_{tokens}.log")
    bleu = re.findall(r"Evaluation result \(beam search\): bleu:\s+([\d.]+)", log)
    return {
        "decode_tokens": tokens,
        "decode_s": float(re.findall(r"Generation took ([\d.]+)\[sec\]", log)[-1]),
        "output_words": output_words(Path(f"{out}.test")),
        "test_bleu": float(bleu[-1]) if bleu else None,
    }


def output_words(hyp_file: Path) -> int:
    """Whitespace words in a hypothesis file: decoding time depends on how much was generated."""
    return sum(len(line.split()) for line in hyp_file.read_text(encoding="utf-8").splitlines())


def train_ours(work: Path, data_root: Path, steps: int) -> None:
    run_dir = work / "nmt_model"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, like JoeyNMT's overwrite: true
    overrides = [
        "experiment=quickstart",
        f"data.root={data_root}",
        f"run_dir={run_dir}",
        "resume=false",
        f"trainer.max_steps={steps}",
        "trainer.max_minutes=0",
        "trainer.log_every=10",
        "trainer.validate_every=0",
        "data.test_splits=[]",
    ]
    run_logged([sys.executable, "-m", "nmt.cli.train", *overrides], work / "nmt_train.log")


def decode_ours(work: Path, data_root: Path, tokens: int) -> dict:
    search = {"beam_size": BEAM, "length_penalty": ALPHA}
    translator = Translator.from_checkpoint(str(work / "nmt_model" / "best.pt"), search, "cpu", tokens)
    data_cfg = data_config_for(translator.config, str(data_root))
    eval_set = load_eval_set(data_cfg, "test2016", translator.src_tok, translator.tgt_tok)
    start = time.perf_counter()
    hyps = translator.translate(eval_set.sources)
    seconds = time.perf_counter() - start
    out = work / f"nmt_hyps_{tokens}.test"
    out.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    return {
        "decode_tokens": tokens,
        "decode_s": seconds,
        "output_words": output_words(out),
        "test_bleu": round(corpus_bleu(hyps, eval_set.references), 2),
    }


def export_tokenizer(work: Path, data_root: Path) -> None:
    """Our joint sentencepiece model and its pieces (JoeyNMT's vocabulary file) for JoeyNMT to use."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quickstart", f"data.root={data_root}"])
    tok = prepare_training_data(cfg.data).src_tok
    (work / "spm.model").write_bytes(tok.model_proto)
    specials = {"<pad>", "<unk>", "<s>", "</s>"}
    pieces = [p for p in tok.pieces(list(range(len(tok)))) if p not in specials]
    (work / "vocab.txt").write_text("".join(p + "\n" for p in pieces), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joey-python", required=True, help="python of a virtualenv with joeynmt==2.3.0")
    parser.add_argument("--steps", type=int, default=150, help="training updates for each toolkit")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmark_joeynmt"))
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("NMT_DATA_ROOT", "../shared/data")))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--decode-only", action="store_true", help="reuse the models and training logs already in --work"
    )
    args = parser.parse_args()
    work, data_root = args.work.resolve(), args.data_root.resolve()
    work.mkdir(parents=True, exist_ok=True)
    export_tokenizer(work, data_root)
    sentences = len((data_root / "multi30k" / "test2016.de").read_text(encoding="utf-8").splitlines())
    if not args.decode_only:
        train_joeynmt(args.joey_python, work, data_root, args.steps)
        train_ours(work, data_root, args.steps)
    joey_rates = re.findall(r"Tokens per Sec:\s+(\d+)", (work / "joey_train.log").read_text())
    rows = {
        "joeynmt 2.3.0": {
            "train_tgt_tok_s": median_after_first([float(r) for r in joey_rates]),
            "decoding": [decode_joeynmt(args.joey_python, work, data_root, args.steps, t) for t in DECODE_TOKENS],
        },
        "nmt": {
            "train_tgt_tok_s": median_after_first(training_rates(work / "nmt_model")),
            "decoding": [decode_ours(work, data_root, t) for t in DECODE_TOKENS],
        },
    }
    print(f"{args.steps} training updates each, test2016 ({sentences} sentences), beam {BEAM}, alpha {ALPHA}")
    print("| toolkit | train tgt tok/s | decoding batch (tokens) | beam-5 sent/s | beam-5 output words/s | test BLEU |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        for d in r["decoding"]:
            d["beam5_sent_s"] = round(sentences / d["decode_s"], 1)
            d["beam5_words_s"] = round(d["output_words"] / d["decode_s"], 1)
            print(
                f"| {name} | {r['train_tgt_tok_s']:.0f} | {d['decode_tokens']} | {d['beam5_sent_s']} "
                f"| {d['beam5_words_s']} | {d['test_bleu']} |"
            )
        r["fastest"] = max(r["decoding"], key=lambda d: d["beam5_sent_s"])
    joey, ours = rows["joeynmt 2.3.0"], rows["nmt"]
    ratio = {
        "train": round(ours["train_tgt_tok_s"] / joey["train_tgt_tok_s"], 2),
        "beam5": round(ours["fastest"]["beam5_sent_s"] / joey["fastest"]["beam5_sent_s"], 2),
        "beam5_words": round(ours["fastest"]["beam5_words_s"] / joey["fastest"]["beam5_words_s"], 2),
    }
    print(
        f"nmt / joeynmt: training {ratio['train']}x, beam-5 decoding (each at its faster batch size) "
        f"{ratio['beam5']}x in sentences/s, {ratio['beam5_words']}x in output words/s"
    )
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "toolkits": rows, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
