"""The benchmark's model-FLOPs count (exact for unpadded batches, padding never counted as work) and its
repeated, per-CPU-kind measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY, tiny_config
from torch.utils.flop_counter import FlopCounterMode

from nmt.data.batching import collate
from nmt.data.prepare import prepare_training_data
from nmt.decoding.backend import load_translator
from nmt.decoding.search import SearchConfig
from nmt.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import benchmark  # noqa: E402


@pytest.mark.parametrize("name", ["transformer", "rnnsearch", "luong"])
def test_pair_flops_match_executed_flops(name):
    model = build_model(TINY[name], 40, 40, shared_vocab=True).train()
    flops = benchmark.pair_flops(model, 40)
    unpadded = collate(range(3), [[7] * 6] * 3, [[9] * 4] * 3)  # 7 source, 5 target positions each
    assert benchmark.step_flops(model, unpadded) == pytest.approx(3 * flops(7, 5), rel=1e-9)
    padded = collate(range(3), [[7] * 6, [7] * 2, [7] * 11], [[9] * 4, [9] * 8, [9] * 1])
    useful = flops(np.array([7, 3, 12]), np.array([5, 9, 2])).sum()
    assert useful < benchmark.step_flops(model, padded) <= 3 * flops(12, 9) * (1 + 1e-9)


@pytest.mark.parametrize("name", ["transformer", "luong"])
def test_cpu_attention_and_lstm_kernels_are_counted(name):
    """FlopCounterMode alone counts CPU SDPA and oneDNN LSTM layers as zero."""
    model = build_model(TINY[name], 40, 40, shared_vocab=True).train()
    batch = collate([0], [[7] * 6], [[9] * 4])
    plain = FlopCounterMode(display=False)
    with plain:
        benchmark.forward_backward(model, batch)
    model.zero_grad(set_to_none=True)
    assert benchmark.step_flops(model, batch) > plain.get_total_flops()


def test_summary_and_spread_flag():
    s = benchmark.summary([110.0, 90.0, 100.0])
    assert s["median"] == 100.0 and s["range"] == [90.0, 110.0] and s["spread_pct"] == pytest.approx(20.0)
    assert benchmark.too_wide(s["spread_pct"], 10.0) and not benchmark.too_wide(s["spread_pct"], 25.0)


def test_benchmark_reports_median_and_range_per_cpu_kind(tmp_path):
    """Two interleaved rounds of real training steps, then the same under the AVX2 kernels in a child
    process (skipped where this CPU is AVX2 already): each kind with its own roofline and MFU range."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(Path(benchmark.__file__)), "--models", "rnnencdec", "--steps", "2", "--repeats", "2"]
    done = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    kinds = result["cpu_kinds"]
    assert len(kinds) == (1 if torch.backends.cpu.get_cpu_capability() == "AVX2" else 2)
    assert "emulated by ATEN_CPU_CAPABILITY" in kinds[-1]["machine"] or len(kinds) == 1
    for kind in kinds:
        (row,) = kind["training"]
        assert row["model"] == "rnnencdec" and row["rounds"] == 2 and row["steps"] == 2
        low, high = row["tgt_tok_s_range"]
        assert 0 < low <= row["tgt_tok_s"] <= high
        assert 0 < row["mfu_pct_range"][0] <= row["mfu_pct"] <= row["mfu_pct_range"][1] < 100
        # a profiled round finds the products (their names are the profiler's) and bounds MFU from above
        assert 20 < row["flop_kernels_pct"] <= 100 and row["mfu_pct"] <= row["mfu_bound_pct"]
        assert kind["matmul_dtype"] == "float32" and kind["matmul_gflop_s"] > 0
    assert "MFU % (range)" in done.stdout and "MFU % if only those ran" in done.stdout


def test_benchmark_trains_under_bf16_autocast_against_a_bf16_roofline(tmp_path):
    """--amp bf16 (the GPU rows' set-up: trainer.amp=bf16's autocast) runs on the CPU too, slowly: the
    roofline is then the bf16 matmul rate; no AVX2 rows, whose bf16 products would be an emulation."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(Path(benchmark.__file__)), "--models", "transformer_small", "--steps", "1"]
    cmd += ["--repeats", "1", "--max-tokens", "256", "--amp", "bf16", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (kind,) = json.loads(out.read_text())["cpu_kinds"]
    (row,) = kind["training"]
    assert kind["matmul_dtype"] == "bfloat16" and kind["matmul_gflop_s"] > 0
    assert row["tgt_tok_s"] > 0 and row["mfu_pct"] > 0
    assert "bfloat16 matmul roofline" in done.stdout and "no AVX2 rows" in done.stdout


def test_roofline_of_an_emulated_dtype_takes_seconds():
    """bf16 under the AVX2 kernels runs at about 1 GFLOP/s: the roofline shrinks its products to match
    instead of spending 6+ minutes on 23 products of 2048^3 (which hit this timeout before)."""
    code = (
        "import sys, torch; sys.path.insert(0, 'scripts'); import benchmark; "
        "print(benchmark.matmul_roofline(torch.device('cpu'), torch.bfloat16))"
    )
    root = Path(benchmark.__file__).resolve().parents[1]
    env = {**os.environ, **benchmark.AVX2_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout) > 0


def test_every_timed_batch_is_stepped_once_before_the_clock_starts(tiny_root, cache_dir, tmp_path, monkeypatch):
    """A batch shape met for the first time makes kernels and plans: on an H200 under bf16 the first timed
    round ran 9x slower than the next ones when only one batch had been warmed up."""
    data = prepare_training_data(tiny_config(tiny_root, cache_dir, tmp_path, "transformer").data)
    stepped = []
    monkeypatch.setattr(benchmark.TrainingBench, "_step", lambda self, batch: stepped.append(batch))
    bench = benchmark.TrainingBench("transformer_small", data, 3, 200, torch.device("cpu"), None)
    assert len(bench.batches) == 3
    assert [id(b) for b in stepped] == [id(b) for b in bench.batches]
    bench.time_round()
    assert len(stepped) == 6 and len(bench.seconds) == 1


class SlowFirstTranslator:
    """A decoder whose first call of each search takes 0.3 s (kernels and plans being made) and later ones
    none: what the H200 showed (greedy rounds spread by 54%)."""

    def __init__(self, references: list[str]):
        self.references, self.search, self.seen = references, SearchConfig(), set()

    def translate_nbest(self, sources: list[str]) -> list[list[SimpleNamespace]]:
        if self.search.beam_size not in self.seen:
            self.seen.add(self.search.beam_size)
            time.sleep(0.3)
        return [[SimpleNamespace(tokens=[1, 2], text=ref)] for ref in self.references[: len(sources)]]

    def detokenize(self, hyp: SimpleNamespace) -> str:
        return hyp.text


def test_decoding_rounds_are_timed_after_an_untimed_one():
    refs = ["a small dog runs .", "two men sit on a bench ."]
    test = SimpleNamespace(sources=["x", "y"], references=refs)
    (row,) = benchmark.bench_decoding({"slow start": SlowFirstTranslator(refs)}, test, 2, 2, 1.0)
    for beam in (1, 5):
        assert row[f"beam{beam}_sent_s_range"][0] > 2 / 0.3  # the 0.3 s call is in no timed round
        assert row[f"beam{beam}_bleu"] == 100.0


def test_decoders_come_once_per_inter_threads_setting(tiny_checkpoint, tmp_path):
    """``--ctranslate2 --inter-threads 1 2``: PyTorch with our search and with CTranslate2's, and both
    CTranslate2 exports, each decoding one batch at a time and two at once, on the same weights."""
    found = benchmark.decoders(
        str(tiny_checkpoint), True, tmp_path, torch.device("cpu"), [1, 2], ["exact", "ctranslate2"]
    )
    pytorch = f"nmt PyTorch ({tiny_checkpoint.name})"
    engines = [pytorch, f"{pytorch}, CTranslate2's search", "CTranslate2 float32", "CTranslate2 int8"]
    assert list(found) == [name for engine in engines for name in (engine, f"{engine}, inter_threads 2")]
    assert [t.inter_threads for t in found.values()] == [1, 2] * 4
    theirs = found[f"{pytorch}, CTranslate2's search, inter_threads 2"]
    assert benchmark.decode_round(theirs, ["Ein Hund."], 5, 1.0)  # a round keeps the decoder's own rules
    assert (theirs.search.stopping, theirs.search.length_normalization) == ("k_finished", "length")
    assert found[f"{pytorch}, inter_threads 2"].translate(["Ein Hund."]) == found[pytorch].translate(["Ein Hund."])
    # CTranslate2 decodes in processes of its own (in PyTorch's process it slowed PyTorch's decoding), with
    # the output it gives in this one
    lines = ["Ein Hund.", "Zwei Männer sitzen."]
    in_process = load_translator(tmp_path / "float32", device="cpu")
    for label in ("CTranslate2 float32", "CTranslate2 float32, inter_threads 2"):
        assert isinstance(found[label], benchmark.EngineProcess)
        for beam in (1, 5):
            assert (
                found[label].decode_round(lines, beam, 1.0)[1:]
                == benchmark.decode_round(in_process, lines, beam, 1.0)[1:]
            )
    for engine in found.values():
        if isinstance(engine, benchmark.EngineProcess):
            engine.close()


def test_compiled_training_counts_flops_on_the_eager_model(tiny_root, cache_dir, tmp_path, monkeypatch):
    """--compile times torch.compile(model, dynamic=True) (dynamo with the eager backend here: inductor's
    compiling takes minutes on 2 cores) and reports the same exact FLOPs as the eager model."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compile_(model, backend="eager", **kw))
    data = prepare_training_data(tiny_config(tiny_root, cache_dir, tmp_path, "transformer").data)
    eager = benchmark.TrainingBench("transformer_small", data, 2, 200, torch.device("cpu"), None)
    compiled = benchmark.TrainingBench("transformer_small", data, 2, 200, torch.device("cpu"), None, True)
    assert compiled.stepped is not compiled.model and eager.stepped is eager.model
    assert compiled.useful_flops == eager.useful_flops > 0
    compiled.time_round()
    eager.time_round()
    assert compiled.result(100.0)["compiled"] and not eager.result(100.0)["compiled"]
