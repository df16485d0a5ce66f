"""Worker processes that decode batches, each with its own copy of the model (``Translator(processes=N)``).

Why processes and not only threads (``inter_threads``): a decoding step is hundreds of small PyTorch ops,
and each call holds Python's interpreter lock while its arguments are parsed and its result wrapped, so
two decoding threads of one process wait on each other for it. Multi30k Transformer, 1000 test2016
sentences, 2-core Intel Xeon (AVX512), one thread per batch, int8: two threads of one process 584 / 171
sent/s (greedy / beam 5), two processes 729 / 258 (README, Benchmark). Outputs are the same.

Workers start with ``spawn`` (forking a process whose OpenMP and oneDNN thread pools have run is not
safe), receive the model by pickling when the pool starts, and decode one short sentence before their
first batch so that packing the weights is not timed as decoding. The search settings travel with every
batch, so a Translator whose settings change between calls decodes with the current ones; the weights are
those the model had when the workers started (a model loaded to decode, which nothing trains).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import torch

from nmt.cli import setup_cpu
from nmt.data.batching import collate
from nmt.data.tokenizer import UNK_ID
from nmt.models import Seq2SeqModel
from nmt.models.linear import fixed_weights, keep_packed, quantize_int8
from nmt.search import Hypothesis, SearchConfig, generate

_model: Seq2SeqModel | None = None  # the worker's copy (set in each worker process by _start)


def _start(model: Seq2SeqModel, quantization: str, threads: int, search: SearchConfig) -> None:
    """Each worker once: its thread count and allocator (a spawned process starts with glibc's defaults),
    the model in eval mode with its weights kept packed, a warm-up."""
    global _model
    setup_cpu(threads)
    model.eval()
    keep_packed(model)
    if quantization == "int8":
        quantize_int8(model)
    _model = model
    _decode(search, [[UNK_ID] * 3])


def _decode(search: SearchConfig, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
    """One batch of non-empty token-id sources, as ``Translator.decode_batch``."""
    assert _model is not None, "a decoding worker runs _start before any batch"
    with torch.no_grad(), fixed_weights():
        batch = collate(range(len(src_ids)), src_ids, None)
        return generate(_model, batch.src, batch.src_lengths, search)


class DecodeWorkers:
    """``processes`` worker processes decoding batches at once on a CPU, ``threads`` PyTorch threads each."""

    def __init__(
        self, model: Seq2SeqModel, quantization: str, processes: int, threads: int, search: SearchConfig
    ) -> None:
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(model, quantization, threads, search),
        )

    def map(self, search: SearchConfig, batches: list[list[list[int]]]) -> list[list[list[Hypothesis]]]:
        """The n-best of each batch, in order; the largest batches go first so no worker is left with one."""
        order = sorted(range(len(batches)), key=lambda i: -sum(len(s) for s in batches[i]))
        futures = {i: self._pool.submit(_decode, search, batches[i]) for i in order}
        return [futures[i].result() for i in range(len(batches))]

    def close(self) -> None:
        self._pool.shutdown()
