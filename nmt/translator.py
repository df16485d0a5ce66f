"""Translate many sentences with one model: length-sorted token batches, original order restored.

Validation, ``nmt-evaluate`` and ``nmt-translate`` all decode through :class:`Translator`, so every
entry point returns exactly one output per input, in input order. Empty inputs translate to empty
outputs without touching the model. Sources longer than ``max_src_len`` subwords are cut to that length
before decoding (the output line is still produced) and counted in ``truncated``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

from nmt.checkpoint import load_checkpoint
from nmt.data.batching import TokenBatchSampler, collate
from nmt.data.tokenizer import SubwordTokenizer, moses_languages, shared_vocabulary
from nmt.models import Seq2SeqModel, build_model
from nmt.search import Hypothesis, SearchConfig, generate


@dataclass
class Translator:
    model: Seq2SeqModel
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer
    search: SearchConfig = field(default_factory=SearchConfig)
    max_tokens: int = 4096
    max_src_len: int = 1022
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    truncated: int = 0

    def translate_ids(self, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
        """n-best hypotheses for each token-id source, in input order (empty source -> empty hypothesis)."""
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in src_ids]
        todo = [i for i, s in enumerate(src_ids) if s]
        if not todo:
            return results
        clipped = []
        for i in todo:
            s = src_ids[i]
            if len(s) > self.max_src_len:
                self.truncated += 1
                s = s[: self.max_src_len]
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

    def translate(self, lines: list[str]) -> list[list[Hypothesis]]:
        """n-best hypotheses for raw text lines, in order."""
        return self.translate_ids(self.src_tok.encode([line.strip() for line in lines]))

    def detokenize(self, hyp: Hypothesis) -> str:
        return self.tgt_tok.decode(hyp.tokens)

    def translate_text(self, lines: list[str]) -> list[str]:
        """Best detokenized translation of each line."""
        return [self.detokenize(h[0]) for h in self.translate(lines)]


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` selects CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def tokenizers_from_checkpoint(
    payload: dict[str, Any], data_cfg: dict[str, Any]
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """The sentencepiece model(s) stored in the checkpoint, behind the run's Moses stage if it had one."""
    toks = payload["tokenizers"]
    src_lang, tgt_lang = moses_languages(OmegaConf.create(data_cfg))
    src = SubwordTokenizer(bytes(toks["src"].numpy().tobytes()), src_lang)
    if "tgt" not in toks:
        return src, src.for_language(tgt_lang)
    return src, SubwordTokenizer(bytes(toks["tgt"].numpy().tobytes()), tgt_lang)


def load_translator(
    path: str, search: SearchConfig | Mapping[str, Any] | None = None, device: str = "auto", max_tokens: int = 4096
) -> tuple[Translator, dict]:
    """A ready Translator from a checkpoint file alone, plus the training config stored in it.

    ``search``: a SearchConfig is used as given; otherwise the settings are those the checkpoint's own
    experiment decodes with (e.g. Vaswani et al.'s beam 4, alpha 0.6, |x| + 50), with every non-null
    option of the ``search`` mapping taking precedence.
    """
    payload = load_checkpoint(path)
    cfg = yaml.safe_load(payload["config"])
    src_tok, tgt_tok = tokenizers_from_checkpoint(payload, cfg["data"])
    model = build_model(cfg["model"], len(src_tok), len(tgt_tok), shared_vocab=shared_vocabulary(src_tok, tgt_tok))
    model.load_state_dict(payload["model"])
    dev = pick_device(device)
    model.to(dev).eval()
    max_src = int(cfg["model"].get("max_positions", 1024)) - 2
    settings = search if isinstance(search, SearchConfig) else SearchConfig.from_cfg(search, cfg.get("search"))
    return Translator(model, src_tok, tgt_tok, settings, max_tokens, max_src, dev), cfg


def search_origin(search: Mapping[str, Any] | None) -> str:
    """Where the decoding settings came from, for the user: the checkpoint, the command line, or both."""
    given = sorted(k for k, v in (search or {}).items() if v is not None and k in SearchConfig.STORED)
    if not given:
        return "(the checkpoint's settings)"
    return f"(the checkpoint's settings; {', '.join(given)} from the command line)"
