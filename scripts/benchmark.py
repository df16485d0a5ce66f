"""Throughput benchmark: training tokens/s and model FLOPs utilisation, decoding sentences/s.

    python scripts/benchmark.py --quick                 # a few minutes on 2 CPU cores
    python scripts/benchmark.py --checkpoint runs/quickstart/best.pt --json bench.json

Everything is measured in one process, one run, so ratios are comparable: the fp32 matmul rate of this
machine (the roofline), then for each model at its Multi30k CPU size a number of real training steps
on real Multi30k batches, then greedy and beam-5 decoding of test2016. Model FLOPs are counted with
``torch.utils.flop_counter`` on the executed step and scaled by real / padded tokens, so padding counts
as waste, not as work. Decoding speed depends on output lengths: pass a trained ``--checkpoint`` for
meaningful decoding numbers (an untrained model decodes to the length limit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from nmt.data.batching import TokenBatchSampler, batch_loader, lengths
from nmt.data.prepare import load_eval_set, prepare_training_data
from nmt.loss import label_smoothed_nll
from nmt.models import build_model
from nmt.paths import CONFIG_DIR
from nmt.search import SearchConfig
from nmt.translator import Translator, load_translator

MODELS = ["transformer_small", "rnnsearch", "rnnencdec", "luong"]


def matmul_roofline(size: int = 2048, repeats: int = 10) -> float:
    """Sustained fp32 matmul GFLOP/s of this machine with the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def bench_training(model_name: str, data, steps: int, max_tokens: int, roofline: float) -> dict:
    cfg = compose_cfg([f"model={model_name}"])
    torch.manual_seed(1)
    model = build_model(cfg.model, len(data.src_tok), len(data.tgt_tok), shared_vocab=data.src_tok is data.tgt_tok)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), foreach=True)
    src_lens, tgt_lens = lengths(data.train)
    sampler = TokenBatchSampler(src_lens, tgt_lens, max_tokens, shuffle=True, seed=1, rows=data.train_rows)
    batches = []
    for batch in batch_loader(data.train, sampler):
        batches.append(batch)
        if len(batches) == steps + 2:
            break

    def step(batch) -> None:
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, _, ntok = label_smoothed_nll(logits, batch.tgt_out, 0.1)
        optimizer.zero_grad(set_to_none=True)
        (loss / ntok).backward()
        optimizer.step()

    model.train()
    step(batches[0])  # warm-up (allocations, kernels)
    counter = FlopCounterMode(display=False)
    with counter:
        step(batches[1])
    flops_per_padded_token = counter.get_total_flops() / _padded(batches[1])
    timed = batches[2:]
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    seconds = time.perf_counter() - start
    tgt = sum(b.ntokens for b in timed)
    src = sum(int((b.src != 0).sum()) for b in timed)
    padded = sum(_padded(b) for b in timed)
    useful_flops = flops_per_padded_token * (src + tgt)  # executed FLOPs minus the share spent on padding
    return {
        "model": model_name,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "steps": len(timed),
        "step_s": round(seconds / len(timed), 3),
        "tgt_tok_s": round(tgt / seconds),
        "src_tgt_tok_s": round((src + tgt) / seconds),
        "padding_pct": round(100 * (1 - (src + tgt) / padded), 1),
        "model_gflop_s": round(useful_flops / seconds / 1e9, 1),
        "mfu_pct": round(100 * useful_flops / seconds / 1e9 / roofline, 1),
    }


def _padded(batch) -> int:
    """Token slots actually computed: source and target, padding included."""
    return batch.src.numel() + batch.tgt_in.numel()


def bench_decoding(translator: Translator, sources: list[str], label: str) -> dict:
    out = {"model": label}
    for beam in (1, 5):
        translator.search = SearchConfig(beam_size=beam, length_penalty=0.6)
        start = time.perf_counter()
        hyps = translator.translate(sources)
        seconds = time.perf_counter() - start
        tokens = sum(len(h[0].tokens) + 1 for h in hyps)
        out[f"beam{beam}_sent_s"] = round(len(sources) / seconds, 1)
        out[f"beam{beam}_tok_s"] = round(tokens / seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and sentences (a few minutes on 2 cores)")
    parser.add_argument("--models", nargs="*", default=MODELS, help="model configs to train")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--checkpoint", help="trained checkpoint for the decoding benchmark")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    steps, n_sent = (8, 300) if args.quick else (30, 1000)

    roofline = matmul_roofline()
    data = prepare_training_data(compose_cfg([]).data)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "matmul_fp32_gflop_s": round(roofline, 1),
        "training": [],
        "decoding": [],
    }
    for name in args.models:
        results["training"].append(bench_training(name, data, steps, args.max_tokens, roofline))
        print(json.dumps(results["training"][-1]), flush=True)

    test = load_eval_set(compose_cfg([]).data, "test2016", data.src_tok, data.tgt_tok)
    sources = test.sources[:n_sent]
    if args.checkpoint:
        translator, _ = load_translator(args.checkpoint, SearchConfig())
        results["decoding"].append(bench_decoding(translator, sources, Path(args.checkpoint).name))
        print(json.dumps(results["decoding"][-1]), flush=True)
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    print(f"\n{results['machine']}; fp32 matmul roofline {results['matmul_fp32_gflop_s']} GFLOP/s\n")
    print("| model | params | step s | tgt tok/s | src+tgt tok/s | padding % | GFLOP/s | MFU % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["training"]:
        print(
            f"| {r['model']} | {r['parameters_M']}M | {r['step_s']} | {r['tgt_tok_s']} | {r['src_tgt_tok_s']} "
            f"| {r['padding_pct']} | {r['model_gflop_s']} | {r['mfu_pct']} |"
        )
    if results["decoding"]:
        print("\n| checkpoint | greedy sent/s | greedy tok/s | beam-5 sent/s | beam-5 tok/s |\n|---|---|---|---|---|")
        for r in results["decoding"]:
            cells = [r["model"], r["beam1_sent_s"], r["beam1_tok_s"], r["beam5_sent_s"], r["beam5_tok_s"]]
            print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
