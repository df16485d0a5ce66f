"""Throughput benchmark: training tokens/s and model FLOPs utilisation, decoding sentences/s.

    python scripts/benchmark.py --quick                 # a few minutes on 2 CPU cores
    python scripts/benchmark.py --checkpoint runs/quickstart/best.pt --json bench.json
    python scripts/benchmark.py --models --checkpoint runs/quickstart/best.pt --ctranslate2   # decoding only
    python scripts/benchmark.py --device cuda --amp bf16 --models transformer_base --max-tokens 25000  # a GPU

Everything is measured in one run, so ratios are comparable: the matmul rate of this machine in the
compute dtype (fp32, or bf16 with ``--amp bf16``, the trainer's autocast; the roofline: the best of the
rounds measured before, between and after the training rounds), then for each
model at its Multi30k CPU size a number of real training steps on real Multi30k batches, in ``--repeats``
rounds interleaved across models, then greedy and beam-5 decoding of test2016, also in interleaved
rounds. Every figure is the median of its rounds with their range; a figure whose range exceeds
``--spread-limit`` % of its median is flagged as too unsteady to conclude from. With ``--cpu-kinds
native,avx2`` (the default) the training rounds run again in a child process under the AVX2 kernels
(``ATEN_CPU_CAPABILITY=avx2``, oneDNN and MKL limited to AVX2), with that kind's own roofline. With
``--device cuda`` the same rounds run on the GPU (synchronised before every clock read), the roofline
being the GPU's matmul rate in the compute dtype.

Model FLOPs are counted with ``torch.utils.flop_counter`` (plus the CPU attention and LSTM kernels it does
not know) on single unpadded pairs and summed over the real pairs of the timed batches, so padding counts
as waste, not as work. Decoding speed depends on output lengths: pass a trained ``--checkpoint`` for
meaningful decoding numbers (an untrained model decodes to the length limit). With ``--ctranslate2`` the
same weights, exported with nmt-export to CTranslate2 float32 and int8, decode beside ours (interleaved,
same threads, same sentences). CTranslate2's beam search stops once k hypotheses have ended and divides
by |Y| ** alpha; ours by default stops only when no live hypothesis can still win and divides by Wu et
al.'s penalty, so ``--searches exact ctranslate2`` (the default) also decodes with CTranslate2's search
(``search.stopping=k_finished search.length_normalization=length``): the same search, the same work.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torch import Tensor
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from nmt.cli.startup import setup_cpu
from nmt.data.batching import Batch, TokenBatchSampler, batch_loader, collate, lengths
from nmt.data.prepare import load_eval_set, prepare_training_data
from nmt.data.tokenizer import PAD_ID, shared_vocabulary
from nmt.decoding.backend import load_translator
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator
from nmt.evaluation.metrics import corpus_scores
from nmt.models import build_model
from nmt.paths import CONFIG_DIR
from nmt.training.config import TrainerConfig
from nmt.training.loss import label_smoothed_nll
from nmt.training.optim import build_optimizer
from nmt.training.trainer import autocast, autocast_dtype

MODELS = ["transformer_small", "rnnsearch", "rnnencdec", "luong"]
# our beam searches the decoding rows use: name -> (search options, label suffix)
SEARCHES = {
    "exact": ({}, ""),
    "ctranslate2": ({"stopping": "k_finished", "length_normalization": "length"}, ", CTranslate2's search"),
}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it times the work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _square_operands(size: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, float]:
    """Two random (size, size) matrices and the seconds one product of them takes (after a warm-up)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    a @ b
    synchronize(device)
    return a, b, time.perf_counter() - start


def matmul_roofline(device: torch.device, dtype: torch.dtype, rounds: int = 5) -> float:
    """Sustained ``dtype`` matmul GFLOP/s of this device (on the CPU, with the current thread count).

    The best of several rounds: a shared machine's rate drifts by a few percent, and the MFU denominator
    should be what the hardware can do, not a slow moment. A GPU gets larger and more products per round
    (8192^3, 20 per round: ~30 ms on an H200 in bf16) than a CPU (2048^3, 4 per round). The size starts
    small and doubles while a product takes under 50 ms, so a dtype the CPU only emulates (bf16 on an AVX2
    CPU: about 1 GFLOP/s) is measured in seconds, not minutes; real kernels reach the full size.
    """
    largest, repeats = (8192, 20) if device.type == "cuda" else (2048, 4)
    size = 256
    a, b, once = _square_operands(size, device, dtype)
    while size < largest and once < 0.05:
        size *= 2
        a, b, once = _square_operands(size, device, dtype)
    if size < largest:
        repeats = 1
    best = 0.0
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _attention_flops(q: tuple, k: tuple, v: tuple) -> int:
    """QK^T and AV of (B, h, L, d) queries, keys and values: 2 multiply-adds per product element."""
    b, h, lq, d = q
    return 2 * b * h * lq * k[-2] * (d + v[-1])


def _lstm_layer_flops(x: tuple, w_ih: tuple, w_hh: tuple) -> int:
    """One LSTM layer over x (T, B, in): the input and recurrent products of every step."""
    return 2 * math.prod(x[:-1]) * (math.prod(w_ih) + math.prod(w_hh))


# torch.utils.flop_counter knows the CUDA attention kernels and plain matmuls only: without these, CPU
# attention and oneDNN's LSTM layers (nn.LSTM on unpacked input) would count as zero FLOPs.
UNCOUNTED_CPU_KERNELS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: _attention_flops(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda grad, q, k, v, *_, **__: 2 * _attention_flops(q, k, v)
    ),
    torch.ops.aten.mkldnn_rnn_layer: lambda x, w_ih, w_hh, *_, **__: _lstm_layer_flops(x, w_ih, w_hh),
    torch.ops.aten.mkldnn_rnn_layer_backward: lambda x, w_ih, w_hh, *_, **__: 2 * _lstm_layer_flops(x, w_ih, w_hh),
}


# The kernels that carry the counted FLOPs: the matrix products and the kernels above. A CPU step's time
# outside them is what keeps MFU below their own rate (see TrainingBench.time_flop_kernels).
FLOP_KERNELS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"} | {
    op._qualified_op_name for op in UNCOUNTED_CPU_KERNELS
}


def forward_backward(model: torch.nn.Module, batch: Batch, dtype: torch.dtype | None = None) -> None:
    """The training step's model work: teacher-forced logits, label-smoothed loss, gradients; the forward
    pass under autocast to ``dtype`` where one is given (what trainer.amp does)."""
    with autocast(batch.src.device, dtype):
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    loss, _, ntok = label_smoothed_nll(logits, batch.tgt_out, 0.1)
    (loss / ntok).backward()


def step_flops(model: torch.nn.Module, batch: Batch) -> int:
    """Matmul and attention FLOPs of one forward + backward pass (what the optimizer step adds is not counted)."""
    counter = FlopCounterMode(display=False, custom_mapping=UNCOUNTED_CPU_KERNELS)
    with counter:
        forward_backward(model, batch)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def pair_flops(model: torch.nn.Module, vocab_size: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """FLOPs of a training step on one unpadded pair, as a function of its source and target positions.

    Every model here costs, per pair, a polynomial of degree 2 in the source length s and the target
    length t (linear layers and RNN steps: s and t; attention: s^2, t^2, s*t), so the polynomial is fitted
    exactly on single pairs of a few lengths, and a batch's useful FLOPs are the sum over its real pairs:
    padding is waste, not work.
    """
    token, device = vocab_size - 1, next(model.parameters()).device
    points = [(s, t) for s in (2, 11, 30) for t in (2, 11, 30)]  # 9 points for 6 coefficients

    def features(s, t):
        s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
        return np.stack([np.ones_like(s), s, t, s * s, t * t, s * t], axis=-1)

    measured = np.array(
        [step_flops(model, collate([0], [[token] * (s - 1)], [[token] * (t - 1)]).to(device)) for s, t in points],
        dtype=np.float64,
    )
    design = features(*zip(*points))
    coef, *_ = np.linalg.lstsq(design, measured, rcond=None)
    error = np.abs(design @ coef - measured).max() / measured.max()
    if error > 1e-6:
        raise RuntimeError(f"FLOPs are not quadratic in the lengths (relative error {error:.2g}); the count is off")
    return lambda s, t: features(s, t) @ coef


class TrainingBench:
    """One model config with its optimizer and a fixed list of real training batches on ``device``, timed in
    rounds (:meth:`time_round`) so that the models of a benchmark can be interleaved; ``dtype``: the
    autocast dtype of the forward pass (None: fp32)."""

    def __init__(
        self,
        model_name: str,
        data,
        steps: int,
        max_tokens: int,
        device: torch.device,
        dtype: torch.dtype | None,
        compile_model: bool = False,
    ):
        cfg = compose_cfg([f"model={model_name}"])
        torch.manual_seed(1)
        self.name, self.device, self.dtype = model_name, device, dtype
        self.model = build_model(
            cfg.model, len(data.src_tok), len(data.tgt_tok), shared_vocab=shared_vocabulary(data.src_tok, data.tgt_tok)
        ).to(device)
        self.optimizer = build_optimizer(self.model.parameters(), TrainerConfig.from_cfg(cfg.trainer).optimizer)
        src_lens, tgt_lens = lengths(data.train)
        sampler = TokenBatchSampler(src_lens, tgt_lens, max_tokens, shuffle=True, seed=1, rows=data.train_rows)
        batches = []
        for batch in batch_loader(data.train, sampler):
            batches.append(batch.to(device))
            if len(batches) == steps:
                break
        self.model.train()
        flops = pair_flops(self.model, len(data.tgt_tok))  # on the eager model: the counter sees its kernels
        self.stepped = torch.compile(self.model, dynamic=True) if compile_model else self.model
        self.batches = batches
        # One untimed pass over every timed batch: each new batch shape makes kernels, plans and allocations
        # (on an H200 under bf16, cuDNN attention graphs: a first round 9x slower than the next ones).
        for batch in self.batches:
            self._step(batch)
        self.src_real = np.concatenate([b.src_lengths.cpu().numpy() for b in self.batches])
        self.tgt_real = np.concatenate([(b.tgt_out != PAD_ID).sum(1).cpu().numpy() for b in self.batches])
        self.padded = sum(b.src.numel() + b.tgt_in.numel() for b in self.batches)
        self.useful_flops = float(flops(self.src_real, self.tgt_real).sum())
        self.seconds: list[float] = []
        self.flop_kernel_share: float | None = None

    def _step(self, batch: Batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        forward_backward(self.stepped, batch, self.dtype)
        self.optimizer.step()

    def time_round(self) -> None:
        synchronize(self.device)
        start = time.perf_counter()
        for batch in self.batches:
            self._step(batch)
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - start)

    def time_flop_kernels(self) -> None:
        """One more round under torch.profiler (CPU only): the share of its wall time spent inside the
        :data:`FLOP_KERNELS`. MFU divided by it is the MFU a step would reach if everything else (dropout,
        norms, the loss, the optimizer, copies) took no time: what those kernels alone allow at these shapes.
        The profiler's own overhead lengthens the round, so the share errs low and the bound high."""
        if self.device.type != "cpu":
            return
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for batch in self.batches:
                self._step(batch)
            wall = time.perf_counter() - start
        inside = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in FLOP_KERNELS) / 1e6
        self.flop_kernel_share = min(inside / wall, 1.0)

    def result(self, roofline: float) -> dict:
        """Median and range over the rounds; MFU against ``roofline`` (GFLOP/s)."""
        real, median_s = self.src_real.sum() + self.tgt_real.sum(), float(np.median(self.seconds))
        tgt = summary([self.tgt_real.sum() / t for t in self.seconds])
        gflops = summary([self.useful_flops / t / 1e9 for t in self.seconds])
        mfu = 100 * gflops["median"] / roofline
        share = self.flop_kernel_share
        return {
            "model": self.name,
            "compiled": self.stepped is not self.model,
            "parameters_M": round(sum(p.numel() for p in self.model.parameters()) / 1e6, 2),
            "steps": len(self.batches),
            "rounds": len(self.seconds),
            "step_s": round(median_s / len(self.batches), 3),
            "tgt_tok_s": round(tgt["median"]),
            "tgt_tok_s_range": [round(x) for x in tgt["range"]],
            "src_tgt_tok_s": round(real / median_s),
            "padding_pct": round(100 * (1 - real / self.padded), 1),
            "model_gflop_s": round(gflops["median"], 1),
            "mfu_pct": round(mfu, 1),
            "mfu_pct_range": [round(100 * x / roofline, 1) for x in gflops["range"]],
            "spread_pct": round(tgt["spread_pct"], 1),
            "flop_kernels_pct": None if share is None else round(100 * share, 1),
            "mfu_bound_pct": None if not share else round(mfu / share, 1),
        }


def summary(values: list[float]) -> dict:
    """Median, range and spread ((max - min) / median, in %) of repeated measurements of one figure."""
    ordered = sorted(values)
    median = float(np.median(ordered))
    return {
        "median": median,
        "range": [ordered[0], ordered[-1]],
        "spread_pct": 100 * (ordered[-1] - ordered[0]) / median if median else math.inf,
    }


def too_wide(spread_pct: float, limit_pct: float) -> bool:
    """A figure whose repeats spread by more than ``limit_pct`` of its median cannot carry a conclusion."""
    return spread_pct > limit_pct


def bench_training(
    names: list[str],
    data,
    steps: int,
    max_tokens: int,
    rounds: int,
    device: torch.device,
    dtype: torch.dtype | None,
    compile_model: bool = False,
) -> tuple[list[dict], float]:
    """Every model's training steps, ``rounds`` times, interleaved (model 1, 2, ..., then again), with the
    matmul roofline (in the compute dtype) measured between rounds, then one profiled round each (on the CPU)
    for the share of the step spent in the FLOP-carrying kernels; returns the rows and the roofline (the best
    rate seen)."""
    benches = [TrainingBench(name, data, steps, max_tokens, device, dtype, compile_model) for name in names]
    compute_dtype = dtype or torch.float32
    roofline = matmul_roofline(device, compute_dtype)
    for _ in range(rounds):
        for bench in benches:
            bench.time_round()
        roofline = max(roofline, matmul_roofline(device, compute_dtype))
    for bench in benches:
        bench.time_flop_kernels()
    return [b.result(roofline) for b in benches], roofline


def training_in_child(env_changes: dict[str, str], argv: list[str]) -> dict:
    """Run this script's training part in a child process with ``env_changes`` (e.g. the AVX2 kernels) and
    return its JSON: ATEN_CPU_CAPABILITY and the oneDNN / MKL ISA limits are read once, at start-up."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "child.json"
        subprocess.run(
            [sys.executable, __file__, *argv, "--child", "--cpu-kinds", "native", "--json", str(out)],
            env={**os.environ, **env_changes},
            check=True,
        )
        return json.loads(out.read_text())


def decode_round(translator: Translator, sources: list[str], beam: int, alpha: float) -> tuple[float, list[str], int]:
    """One timed decoding of ``sources``: seconds, the detokenized best outputs and their token count (EOS
    included)."""
    own = translator.search  # the decoder's own beam search rules, kept
    translator.search = SearchConfig(
        beam_size=beam, length_penalty=alpha, stopping=own.stopping, length_normalization=own.length_normalization
    )
    start = time.perf_counter()
    hyps = translator.translate_nbest(sources)
    seconds = time.perf_counter() - start
    return seconds, [translator.detokenize(h[0]) for h in hyps], sum(len(h[0].tokens) + 1 for h in hyps)


def _serve_engine(conn, path: str, device: str, inter_threads: int, threads: int) -> None:
    """Child process of :class:`EngineProcess`: build the decoder, then answer decode_round requests.
    Its search settings name the rules CTranslate2 follows (else it warns, every round, that they differ);
    its threads are set as in this process."""
    setup_cpu(threads)
    translator = load_translator(path, device=device, inter_threads=inter_threads, **SEARCHES["ctranslate2"][0])
    conn.send("ready")
    while (request := conn.recv()) is not None:
        conn.send(decode_round(translator, *request))


class EngineProcess:
    """A CTranslate2 decoder in a process of its own, timed there.

    In one process with PyTorch, a CTranslate2 decoding slows PyTorch's own decoding for the rest of the
    process (their thread pools compete), so an in-process comparison would measure the mix, not either
    engine. Users run one engine per process.
    """

    def __init__(self, path: str | Path, device: str, inter_threads: int):
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        args = (child, str(path), device, inter_threads, torch.get_num_threads())
        self._process = context.Process(target=_serve_engine, args=args, daemon=True)
        self._process.start()
        self.inter_threads = inter_threads
        if self._conn.recv() != "ready":
            raise RuntimeError(f"the decoder of {path} did not start")

    def decode_round(self, sources: list[str], beam: int, alpha: float) -> tuple[float, list[str], int]:
        self._conn.send((sources, beam, alpha))
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(None)
        self._process.join()


def bench_decoding(
    translators: dict[str, Translator | EngineProcess], test, n_sent: int, repeats: int, alpha: float
) -> list[dict]:
    """Greedy and beam-5 decoding of the first ``n_sent`` test sentences by each decoder: sentences/s and
    output tokens/s (median and range of ``repeats`` runs after an untimed one; decoders and searches
    interleaved in every round, so a slow moment of a shared machine hits all of them), and the BLEU of
    the output."""
    sources, references = test.sources[:n_sent], test.references[:n_sent]
    rows = {label: {"model": label, "sentences": len(sources), "length_penalty": alpha} for label in translators}
    times: dict[tuple[str, int], list[float]] = {(label, beam): [] for label in translators for beam in (1, 5)}
    for round_ in range(repeats + 1):  # round 0 is untimed: new batch shapes make kernels and plans
        for label, beam in times:
            translator, out = translators[label], rows[label]
            if isinstance(translator, EngineProcess):
                seconds, texts, tokens = translator.decode_round(sources, beam, alpha)
            else:
                seconds, texts, tokens = decode_round(translator, sources, beam, alpha)
            if round_:
                times[label, beam].append(seconds)
                continue
            out[f"beam{beam}_bleu"] = round(corpus_scores(texts, references).bleu, 2)  # the same every round
            out[f"beam{beam}_tokens"] = tokens
    for (label, beam), seconds in times.items():
        out, rates = rows[label], summary([len(sources) / t for t in seconds])
        out[f"beam{beam}_sent_s"] = round(rates["median"], 1)
        out[f"beam{beam}_sent_s_range"] = [round(x, 1) for x in rates["range"]]
        out[f"beam{beam}_spread_pct"] = round(rates["spread_pct"], 1)
        out[f"beam{beam}_tok_s"] = round(out[f"beam{beam}_tokens"] / float(np.median(seconds)))
    return list(rows.values())


def decoders(
    checkpoint: str,
    ctranslate2_exports: bool,
    work: Path,
    device: torch.device,
    inter_threads: list[int],
    searches: list[str],
) -> dict[str, Translator | EngineProcess]:
    """Our PyTorch decoder on ``checkpoint`` with each beam search of ``searches`` (:data:`SEARCHES`) and,
    with ``ctranslate2_exports``, CTranslate2 float32 and int8 on the same weights (exported with
    nmt-export), each in a process of its own (:class:`EngineProcess`), all on ``device`` (on the CPU with
    this process's thread count), each once per ``inter_threads`` value (batches decoded at once, sharing
    the threads)."""
    # label -> the decoder for a given inter_threads
    engines: dict[str, Callable[[int], Translator | EngineProcess]] = {
        f"nmt PyTorch ({Path(checkpoint).name})" + SEARCHES[name][1]: (
            lambda n, name=name: Translator.from_checkpoint(
                checkpoint, device=device, inter_threads=n, **SEARCHES[name][0]
            )
        )
        for name in searches
    }
    if ctranslate2_exports:
        from nmt.decoding.export import export_ctranslate2

        for quantization in ("float32", "int8"):
            directory = export_ctranslate2(checkpoint, work / quantization, quantization)
            engines[f"CTranslate2 {quantization}"] = lambda n, d=directory: EngineProcess(d, device.type, n)
    return {
        label if n == 1 else f"{label}, inter_threads {n}": make(n)
        for label, make in engines.items()
        for n in inter_threads
    }


def machine_description(device: torch.device) -> str:
    """The CPU and the kernels PyTorch picked (AVX-512 or AVX2: speeds differ, so every number says which),
    and the GPU where the benchmark runs on one."""
    emulated = " (emulated by ATEN_CPU_CAPABILITY)" if os.environ.get("ATEN_CPU_CAPABILITY") else ""
    gpu = f"GPU {torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    return (
        f"{gpu}{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}{emulated}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


# The AVX2-only CPU kind, emulated on an AVX-512 machine (what the suite's second run sets too).
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def print_training(kind: dict, spread_limit: float) -> None:
    print(f"\n{kind['machine']}; {kind['matmul_dtype']} matmul roofline {kind['matmul_gflop_s']} GFLOP/s\n")
    print(
        "| model | params | step s | tgt tok/s (range) | src+tgt tok/s | padding % | GFLOP/s | MFU % (range) "
        "| in FLOP kernels % | MFU % if only those ran |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in kind["training"]:
        low, high = r["tgt_tok_s_range"]
        mlow, mhigh = r["mfu_pct_range"]
        name = r["model"] + (" (compiled)" if r["compiled"] else "")
        print(
            f"| {name} | {r['parameters_M']}M | {r['step_s']} | {r['tgt_tok_s']} ({low}-{high}) "
            f"| {r['src_tgt_tok_s']} | {r['padding_pct']} | {r['model_gflop_s']} | {r['mfu_pct']} ({mlow}-{mhigh}) "
            f"| {r['flop_kernels_pct'] or '-'} | {r['mfu_bound_pct'] or '-'} |"
        )
    wide = [r["model"] for r in kind["training"] if too_wide(r["spread_pct"], spread_limit)]
    if wide:
        print(
            f"WARNING: the {kind['rounds']} rounds of {', '.join(wide)} spread by more than {spread_limit:g}% of "
            "the median: the machine was busy or unsteady; do not conclude from these rows (rerun on a quiet machine)"
        )


def print_decoding(rows: list[dict], spread_limit: float) -> None:
    print(
        "\n| decoder | sentences | greedy sent/s (range) | greedy tok/s | greedy BLEU "
        "| beam-5 sent/s (range) | beam-5 tok/s | beam-5 BLEU |\n|---|---|---|---|---|---|---|---|"
    )
    wide = []
    for r in rows:
        cells = [r["model"], r["sentences"]]
        for beam in (1, 5):
            low, high = r[f"beam{beam}_sent_s_range"]
            cells += [f"{r[f'beam{beam}_sent_s']} ({low}-{high})", r[f"beam{beam}_tok_s"], r[f"beam{beam}_bleu"]]
            if too_wide(r[f"beam{beam}_spread_pct"], spread_limit):
                wide.append(f"{r['model']} beam {beam}")
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if wide:
        print(f"WARNING: repeats of {', '.join(wide)} spread by more than {spread_limit:g}%: do not conclude from them")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and sentences (a few minutes on 2 cores)")
    parser.add_argument("--models", nargs="*", default=MODELS, help="model configs to train")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU: its own roofline, no AVX2 child)")
    parser.add_argument(
        "--amp", choices=["none", "bf16"], default="none", help="bf16: train under autocast, as trainer.amp=bf16"
    )
    parser.add_argument(
        "--compile", action="store_true", help="train torch.compile(model, dynamic=True); compiling is untimed"
    )
    parser.add_argument("--steps", type=int, help="timed training steps per round (default 30, --quick 8)")
    parser.add_argument("--sentences", type=int, help="test sentences decoded (default 1000, --quick 300)")
    parser.add_argument("--checkpoint", help="trained checkpoint for the decoding benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every figure (median and range)")
    parser.add_argument("--spread-limit", type=float, default=10.0, help="warn above this spread, %% of the median")
    parser.add_argument(
        "--cpu-kinds",
        default="native,avx2",
        help="native: this CPU's own kernels; avx2: also train under the AVX2 kernels (a child process)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # training only, JSON only
    parser.add_argument("--length-penalty", type=float, default=0.6, help="alpha of the decoding benchmark")
    parser.add_argument(
        "--ctranslate2", action="store_true", help="also decode the checkpoint's CTranslate2 float32 / int8 exports"
    )
    parser.add_argument(
        "--inter-threads",
        type=int,
        nargs="+",
        default=[1],
        help="decode with each of these inter_threads (batches at once on the CPU, sharing its threads), e.g. 1 2",
    )
    parser.add_argument(
        "--searches",
        nargs="+",
        choices=list(SEARCHES),
        default=list(SEARCHES),
        help="our beam searches to decode with: exact (the default search), ctranslate2 (CTranslate2's rules)",
    )
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    steps, n_sent = (8, 300) if args.quick else (30, 1000)
    steps, n_sent = args.steps or steps, args.sentences or n_sent
    kinds = args.cpu_kinds.split(",")
    setup_cpu(0)  # what nmt-train does: default threads
    device = torch.device(args.device)
    dtype = autocast_dtype(args.amp, device)
    compute_dtype = dtype or torch.float32

    data = prepare_training_data(compose_cfg([]).data)
    rows, roofline = [], 0.0
    if args.models:
        rows, roofline = bench_training(
            args.models, data, steps, args.max_tokens, args.repeats, device, dtype, args.compile
        )
    native = {
        "machine": machine_description(device),
        "matmul_dtype": str(compute_dtype).removeprefix("torch."),
        "matmul_gflop_s": round(roofline or matmul_roofline(device, compute_dtype), 1),
        "rounds": args.repeats,
        "training": rows,
    }
    results = {"machine": native["machine"], "cpu_kinds": [native], "decoding": []}
    for row in rows:
        print(json.dumps(row), flush=True)
    if dtype is not None and "avx2" in kinds:
        # AVX2 has no bf16 instructions: its matmuls would run a ~1 GFLOP/s fallback, not the model's speed.
        print("--amp bf16: no AVX2 rows (bf16 matmuls on AVX2 CPUs run an emulation, not a kernel)", flush=True)
    elif "avx2" in kinds and args.models and device.type == "cpu" and torch.backends.cpu.get_cpu_capability() != "AVX2":
        child_argv = ["--models", *args.models, "--max-tokens", str(args.max_tokens), "--repeats", str(args.repeats)]
        child_argv += ["--compile"] if args.compile else []
        child = training_in_child(AVX2_ENV, [*child_argv, "--steps", str(steps)])
        results["cpu_kinds"] += child["cpu_kinds"]

    if args.checkpoint and not args.child:
        test = load_eval_set(compose_cfg([]).data, "test2016", data.src_tok, data.tgt_tok)
        with tempfile.TemporaryDirectory() as work:
            translators = decoders(
                args.checkpoint,
                args.ctranslate2,
                Path(work),
                device,
                args.inter_threads,
                args.searches,
            )
            results["decoding"] = bench_decoding(translators, test, n_sent, args.repeats, args.length_penalty)
            for translator in translators.values():
                if isinstance(translator, EngineProcess):
                    translator.close()
        for row in results["decoding"]:
            print(json.dumps(row), flush=True)
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.child:
        return
    for kind in results["cpu_kinds"]:
        if kind["training"]:
            print_training(kind, args.spread_limit)
    if results["decoding"]:
        print(f"\nDecoding: {results['machine']}")
        print_decoding(results["decoding"], args.spread_limit)


if __name__ == "__main__":
    main()
