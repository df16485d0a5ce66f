"""Translate many sentences with one model: length-sorted token batches, original order restored.

Validation, ``nmt-evaluate``, ``nmt-translate``, ``nmt-compare`` and the Python API all decode through
:class:`Translator`, so every entry point returns exactly one output per input, in input order. Empty
inputs translate to empty outputs without touching the model. Sources longer than the model can encode
(``max_src_len`` subwords, from the model's position limit) are cut to that length before decoding (the
output line is still produced) and counted in ``truncated``.

Two ways to make one: ``Translator(model, src_tok, tgt_tok, search)`` around a model in memory (the
trainer's), or :meth:`Translator.from_checkpoint` / :meth:`Translator.from_payload` from a checkpoint,
which holds the config, the tokenizers and the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nmt.checkpoint import load_checkpoint
from nmt.data.batching import TokenBatchSampler, collate
from nmt.data.tokenizer import SubwordTokenizer, shared_vocabulary, tokenizers_from_checkpoint
from nmt.models import Seq2SeqModel, build_model
from nmt.search import Hypothesis, SearchConfig, generate


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
    truncated: int = 0  # inputs cut to max_src_len so far

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        search: SearchConfig | Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        max_tokens: int = 4096,
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
        return cls(model, src_tok, tgt_tok, settings, max_tokens, dev, cfg)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        search: SearchConfig | Mapping[str, Any] | None = None,
        device: str | torch.device = "auto",
        max_tokens: int = 4096,
        **search_options: Any,
    ) -> Translator:
        """Load a checkpoint file once, ready to translate::

            translator = Translator.from_checkpoint("runs/quickstart/best.pt", beam_size=5)
            translator.translate(["Ein Hund läuft im Schnee."])

        ``search_options`` (beam_size, length_penalty, max_len_a, max_len_b, n_best, need_attention) are
        merged over ``search`` (see :meth:`from_payload`).
        """
        if search_options:
            base = {} if search is None else dict(vars(search) if isinstance(search, SearchConfig) else search)
            search = {**base, **search_options}
        return cls.from_payload(load_checkpoint(path), search, device, max_tokens)

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
        sampler = TokenBatchSampler(lens, lens, budget, shuffle=False)
        was_training = self.model.training
        self.model.eval()
        try:
            for rows in sampler:
                batch = collate(rows, [clipped[r] for r in rows], None).to(self.device)
                hyps = generate(self.model, batch.src, batch.src_lengths, self.search)
                for r, h in zip(rows, hyps):
                    results[todo[r]] = h
        finally:
            self.model.train(was_training)
        return results

    def translate_nbest(self, lines: list[str]) -> list[list[Hypothesis]]:
        """The ``search.n_best`` hypotheses (token ids, score, attention if asked for) of each raw text line."""
        return self.translate_ids(self.src_tok.encode([line.strip() for line in lines]))

    def detokenize(self, hyp: Hypothesis) -> str:
        return self.tgt_tok.decode(hyp.tokens)

    def translate(self, lines: list[str]) -> list[str]:
        """The best detokenized translation of each line, in order."""
        return [self.detokenize(h[0]) for h in self.translate_nbest(lines)]


def search_origin(search: Mapping[str, Any] | None) -> str:
    """Where the decoding settings came from, for the user: the checkpoint, the command line, or both."""
    given = sorted(k for k, v in (search or {}).items() if v is not None and k in SearchConfig.STORED)
    if not given:
        return "(the checkpoint's settings)"
    return f"(the checkpoint's settings; {', '.join(given)} from the command line)"
