"""Translate many sentences with one model: length-sorted token batches, original order restored.

Validation, ``nmt-evaluate``, ``nmt-translate``, ``nmt-compare`` and the Python API all decode through
:class:`Translator`, so every entry point returns exactly one output per input, in input order. Empty
inputs translate to empty outputs without touching the model. Sources longer than the model can encode
(``max_src_len`` subwords, from the model's position limit) are cut to that length before decoding (the
output line is still produced) and counted in ``truncated``.

Two ways to make one: ``Translator(model, src_tok, tgt_tok, search)`` around a model in memory (the
trainer's), or :meth:`Translator.from_checkpoint` / :meth:`Translator.from_payload` from a checkpoint,
which holds the config, the tokenizers and the weights. :func:`nmt.decoding.backend.load_translator` also takes an
``nmt-export`` directory (decoded by CTranslate2, ``nmt.decoding.ctranslate2_translator``).

On a CPU, ``inter_threads`` > 1 decodes that many batches at once, each on an equal share of PyTorch's
threads (as CTranslate2's ``inter_threads`` / ``intra_threads``): a decoding step is many small ops whose
fork-join over threads costs more than it gains, so one-thread batches side by side use the cores
better. Outputs are the same; memory grows with the batches in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nmt.data.batching import TokenBatchSampler, collate
from nmt.data.tokenizer import SubwordTokenizer, shared_vocabulary, tokenizers_from_checkpoint
from nmt.decoding.ensemble import Ensemble
from nmt.decoding.search import Hypothesis, SearchConfig, generate
from nmt.errors import ConfigError
from nmt.models import Seq2SeqModel, build_model
from nmt.training.checkpoint import load_checkpoint


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` selects CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Translator:
    """A model with its tokenizers and search settings; ``config`` is the training config it came with."""

    model: Seq2SeqModel
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    search: SearchConfig = field(default_factory=SearchConfig)
    max_tokens: int = 4096  # padded source tokens x beam rows per decoding batch
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    config: dict[str, Any] = field(default_factory=dict)
    inter_threads: int = 1  # batches decoded at once on a CPU, each on threads / inter_threads threads
    quantization: str = "none"  # "int8": a CTranslate2 model loaded with compute_type int8
    truncated: int = field(default=0, init=False, compare=False)  # inputs cut to max_src_len so far

    def __post_init__(self) -> None:
        check_inter_threads(self.inter_threads)

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        search: SearchConfig | Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        max_tokens: int = 4096,
        inter_threads: int = 1,
    ) -> Translator:
        """A ready Translator from a checkpoint's contents (config, tokenizers, ``model`` weights).

        ``search``: a SearchConfig is used as given; otherwise the settings are those the checkpoint's own
        experiment decodes with (e.g. Vaswani et al.'s beam 4, alpha 0.6, |x| + 50), with every non-null
        option of the ``search`` mapping taking precedence.
        """
        cfg = yaml.safe_load(payload["config"])
        src_tok, tgt_tok = tokenizers_from_checkpoint(payload, cfg["data"])
        model = build_model(cfg["model"], len(src_tok), len(tgt_tok), shared_vocab=shared_vocabulary(src_tok, tgt_tok))
        model.load_state_dict(payload["model"])
        dev = device if isinstance(device, torch.device) else pick_device(device)
        model.to(dev).eval()
        settings = search if isinstance(search, SearchConfig) else SearchConfig.from_cfg(search, cfg.get("search"))
        return cls(model, src_tok, tgt_tok, settings, max_tokens, dev, cfg, inter_threads)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Sequence[str | Path],
        search: SearchConfig | Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        max_tokens: int = 4096,
        inter_threads: int = 1,
        quantization: str = "none",
        **search_options: Any,
    ) -> Translator:
        """Load once, ready to translate::

            translator = Translator.from_checkpoint("runs/quickstart/best.pt", beam_size=5)
            translator.translate(["Ein Hund läuft im Schnee."])

        ``path``: a checkpoint file, or a list of them (an ensemble: the mean of their log-probabilities,
        decoded with the first one's settings); an ``nmt-export`` directory loads with
        :func:`nmt.decoding.backend.load_translator`. ``inter_threads``: batches decoded at once on a CPU.
        ``quantization``: only ``none`` here; int8 decoding is CTranslate2's (:func:`check_quantization`).
        ``search_options`` (beam_size, length_penalty, max_len_a, max_len_b, n_best, need_attention) are
        merged over ``search`` (see :meth:`from_payload`).
        """
        search = merge_search(search, search_options)
        paths = [path] if isinstance(path, str | Path) else list(path)
        if not paths:
            raise ConfigError("checkpoint=[]: give a checkpoint file, a list of them, or an nmt-export directory")
        for p in paths:
            if Path(p).is_dir():
                raise ConfigError(f"{p} is a directory: an nmt-export directory loads with nmt.load_translator")
        if check_quantization(quantization) != "none":  # int8 decoding is CTranslate2's
            raise ConfigError(
                f"quantization={quantization} decodes exported models only: run nmt-export checkpoint={paths[0]} "
                f"output=DIR quantization={quantization}, then decode with checkpoint=DIR"
            )
        payloads = [load_checkpoint(p) for p in paths]
        for p, other in zip(paths[1:], payloads[1:]):
            if not _same_tokenizers(payloads[0]["tokenizers"], other["tokenizers"]):
                raise ConfigError(
                    f"an ensemble's checkpoints must share their vocabularies, but {p} and {paths[0]} do not: "
                    "ensemble runs trained on the same data with the same data.tokenizer settings"
                )
        members = [cls.from_payload(payload, search, device, max_tokens, inter_threads) for payload in payloads]
        if len(members) == 1:
            return members[0]
        first = members[0]
        model = Ensemble([m.model for m in members])
        return cls(
            model, first.src_tok, first.tgt_tok, first.search, max_tokens, first.device, first.config, inter_threads
        )

    @property
    def max_src_len(self) -> int | None:
        """Longest source (in subwords, before the EOS the batch adds) the model can encode; None: no limit."""
        limit = self.model.max_positions
        return None if limit is None else limit - 1

    def translate_ids(self, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
        """n-best hypotheses for each token-id source, in input order (empty source -> empty hypothesis)."""
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in src_ids]
        todo = [i for i, s in enumerate(src_ids) if s]
        if not todo:
            return results
        limit = self.max_src_len
        clipped = []
        for i in todo:
            s = src_ids[i]
            if limit is not None and len(s) > limit:
                self.truncated += 1
                s = s[:limit]
            clipped.append(s)
        lens = np.array([len(s) for s in clipped])
        # Beam search holds beam_size rows per sentence: budget the batch by that.
        budget = max(self.max_tokens // max(self.search.beam_size, 1), 1)
        batches = list(TokenBatchSampler(lens, lens, budget, shuffle=False))
        with self._decoding():
            decoded = self._decode_batches([[clipped[r] for r in rows] for rows in batches])
        for rows, hyps in zip(batches, decoded):
            for r, h in zip(rows, hyps):
                results[todo[r]] = h
        return results

    def _decode_batches(self, batches: list[list[list[int]]]) -> list[list[list[Hypothesis]]]:
        """:meth:`decode_batch` of each batch, in order; on a CPU up to ``inter_threads`` at once in threads,
        PyTorch's threads shared out among them."""
        workers = min(self.inter_threads, len(batches)) if self.device.type == "cpu" else 1
        if workers == 1:
            return [self.decode_batch(b) for b in batches]
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="nmt-decode") as pool:
                return list(pool.map(self.decode_batch, batches))
        finally:
            torch.set_num_threads(threads)

    @contextmanager
    def _decoding(self) -> Iterator[None]:
        """Eval mode (no dropout) for one decoding call; a model in training (validation) is put back
        afterwards. Set once per call, not per batch: concurrent batches must not switch training back on
        under each other."""
        model = self.model
        if not isinstance(model, torch.nn.Module):  # a CTranslate2 engine
            yield
            return
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)

    def decode_batch(self, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
        """The n-best of one batch of non-empty, length-limited sources (greedy or beam search); the model
        is in eval mode (:meth:`translate_ids` sees to it)."""
        batch = collate(range(len(src_ids)), src_ids, None).to(self.device)
        return generate(self.model, batch.src, batch.src_lengths, self.search)

    def translate_nbest(self, lines: list[str]) -> list[list[Hypothesis]]:
        """The ``search.n_best`` hypotheses (token ids, score, attention if asked for) of each raw text line."""
        return self.translate_ids(self.src_tok.encode([line.strip() for line in lines]))

    @property
    def has_attention(self) -> bool:
        """False for models whose attention weights are a placeholder (the no-attention RNN baseline)."""
        return self.model.has_attention

    def alignment(self, src_ids: list[int], hyp: Hypothesis) -> dict[str, Any]:
        """A hypothesis' attention as plain data: source and output subwords (each ending in ``</s>``) and
        the (output, source) weight matrix, or None where the model has no attention or none was kept."""
        weights = hyp.attention if self.has_attention and hyp.attention is not None else None
        return {
            "source": self.src_tok.pieces(src_ids[: self.max_src_len]) + ["</s>"] if src_ids else [],
            "output": self.tgt_tok.pieces(hyp.tokens) + ["</s>"] if src_ids else [],
            "attention": None if weights is None else weights.tolist(),
        }

    def detokenize(self, hyp: Hypothesis) -> str:
        return self.tgt_tok.decode(hyp.tokens)

    def translate(self, lines: list[str]) -> list[str]:
        """The best detokenized translation of each line, in order."""
        return [self.detokenize(h[0]) for h in self.translate_nbest(lines)]


QUANTIZATIONS = ("none", "int8")


def check_quantization(quantization: str) -> str:
    """``quantization`` if it is one of QUANTIZATIONS, else a ConfigError that says what to give."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={quantization}: give one of {', '.join(QUANTIZATIONS)}")
    return quantization


def merge_search(
    search: SearchConfig | Mapping[str, Any] | None, search_options: Mapping[str, Any]
) -> SearchConfig | Mapping[str, Any] | None:
    """``search`` with the ``search_options`` keyword arguments over it (a mapping), or as given if none."""
    if not search_options:
        return search
    base = {} if search is None else dict(vars(search) if isinstance(search, SearchConfig) else search)
    return {**base, **search_options}


def check_inter_threads(inter_threads: int) -> None:
    if inter_threads < 1:
        raise ConfigError(f"inter_threads={inter_threads}: give the number of batches decoded at once, 1 or more")


def _same_tokenizers(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """The sentencepiece model(s) two checkpoints store are byte for byte the same."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def search_origin(search: Mapping[str, Any] | None) -> str:
    """Where the decoding settings came from, for the user: the checkpoint, the command line, or both."""
    given = sorted(k for k, v in (search or {}).items() if v is not None and k in SearchConfig.STORED)
    if not given:
        return "(the checkpoint's settings)"
    return f"(the checkpoint's settings; {', '.join(given)} from the command line)"
