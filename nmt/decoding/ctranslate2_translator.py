"""Decode an exported CTranslate2 directory (``nmt-export``) through the :class:`Translator` interface.

``nmt.load_translator(DIR)`` (:mod:`nmt.decoding.backend`) and every decoding command (``nmt-translate``,
``nmt-evaluate``, ``nmt-serve`` with ``checkpoint=DIR``) accept the directory, so the same command scores
PyTorch and CTranslate2 decoding of the same weights. ``quantization=int8`` loads it with CTranslate2's
``compute_type`` int8 (on a CPU or a GPU), whatever it was exported as.

How ``search.*`` maps onto CTranslate2's options:

- ``beam_size``, ``n_best`` (``num_hypotheses``) and attention (``return_attention``) map exactly.
- ``length_penalty``: CTranslate2 divides a hypothesis' log-probability by ``|Y| ** alpha``
  (``search.length_normalization=length``), not by Wu et al.'s ``((5 + |Y|) / 6) ** alpha`` (the default,
  ``wu``); the same alpha is passed on, so with ``wu`` beam search can rank finished hypotheses
  differently (a warning says so when alpha != 0; greedy search is unaffected).
- ``max_len_a`` / ``max_len_b``: CTranslate2 takes one length limit per call; each length-sorted batch
  decodes to the longest limit in it, and every output is then cut to its own sentence's limit, which is
  exact for greedy search (its output is a prefix of the longer run) and close for beam search.
- ``stopping``: CTranslate2's beam search always stops as ``k_finished`` does (once k hypotheses have
  ended; at alpha 0, once the best live hypothesis has ended and ``n_best`` have), whatever is asked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from nmt.data.tokenizer import SubwordTokenizer, moses_languages
from nmt.decoding.search import Hypothesis, SearchConfig
from nmt.decoding.translator import Translator, check_inter_threads, check_quantization
from nmt.errors import ConfigError

log = logging.getLogger(__name__)

# The files of an export directory besides CTranslate2's own (written by nmt-export).
MODEL_FILE = "model.bin"
CONFIG_FILE = "nmt_config.yaml"  # the run's training config
SOURCE_SPM, TARGET_SPM = "source.spm.model", "target.spm.model"  # the target one only for separate vocabularies


def is_ctranslate2_dir(path: str | Path) -> bool:
    """True for a directory written by ``nmt-export``."""
    path = Path(path)
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


@dataclass
class CTranslate2Translator(Translator):
    """A Translator whose ``model`` is a ``ctranslate2.Translator``; batching and order as for PyTorch."""

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        search: SearchConfig | Mapping[str, Any] | None = None,
        device: str = "auto",
        max_tokens: int = 4096,
        inter_threads: int = 1,
        quantization: str = "none",
    ) -> CTranslate2Translator:
        try:
            import ctranslate2
        except ImportError:
            raise ConfigError(f"{path} is a CTranslate2 model: pip install ctranslate2 to decode it") from None
        path = Path(path)
        cfg = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8"))
        src_lang, tgt_lang = moses_languages(cfg["data"])
        src_tok = SubwordTokenizer((path / SOURCE_SPM).read_bytes(), src_lang)
        target = path / TARGET_SPM
        shared = not target.is_file()
        tgt_tok = src_tok.for_language(tgt_lang) if shared else SubwordTokenizer(target.read_bytes(), tgt_lang)
        ct2_device = "cuda" if device in ("auto", "cuda") and ctranslate2.get_cuda_device_count() > 0 else "cpu"
        check_inter_threads(inter_threads)
        compute_type = "int8" if check_quantization(quantization) == "int8" else "default"
        # As for PyTorch decoding: inter_threads batches at once (one engine replica each), sharing the threads.
        threads = torch.get_num_threads()
        intra = max(1, threads // inter_threads) if ct2_device == "cpu" else 0
        model = ctranslate2.Translator(
            str(path), device=ct2_device, compute_type=compute_type, inter_threads=inter_threads, intra_threads=intra
        )
        torch.set_num_threads(threads)  # CTranslate2 set this process's OpenMP thread count to its intra_threads
        settings = search if isinstance(search, SearchConfig) else SearchConfig.from_cfg(search, cfg.get("search"))
        if settings.beam_size > 1 and settings.length_penalty != 0 and settings.length_normalization != "length":
            log.warning(
                "CTranslate2 normalises beam scores by |Y|^%g, not by ((5+|Y|)/6)^%g as nmt's search does: "
                "beam outputs can differ slightly from PyTorch decoding of the same weights",
                settings.length_penalty,
                settings.length_penalty,
            )
        if settings.beam_size > 1 and settings.stopping != "k_finished":
            log.warning(
                "CTranslate2's beam search stops once %d hypotheses have ended (search.stopping=k_finished), "
                "not by search.stopping=%s",
                settings.beam_size,
                settings.stopping,
            )
        dev = torch.device(ct2_device)
        return cls(model, src_tok, tgt_tok, settings, max_tokens, dev, cfg, inter_threads, quantization=quantization)

    @property
    def has_attention(self) -> bool:
        return True  # every exported model is a Transformer

    @property
    def max_positions(self) -> int:
        """The exported Transformer's position limit (its config; the CTranslate2 model does not say)."""
        return int(self.config["model"]["max_positions"])

    @property
    def max_src_len(self) -> int | None:
        return self.max_positions - 1

    def decode_batch(self, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
        cfg, sp_src, sp_tgt = self.search, self.src_tok.sp, self.tgt_tok.sp
        src_lengths = torch.tensor([len(s) + 1 for s in src_ids])  # with the EOS the source ends in
        limits = cfg.output_limits(src_lengths, self.max_positions).tolist()
        outputs = self.model.translate_batch(
            [[sp_src.id_to_piece(t) for t in s] + ["</s>"] for s in src_ids],
            beam_size=cfg.beam_size,
            num_hypotheses=cfg.n_best,
            length_penalty=cfg.length_penalty,
            max_decoding_length=max(limits),
            return_scores=True,
            return_end_token=True,
            return_attention=cfg.need_attention,
        )
        results = []
        for out, limit in zip(outputs, limits):
            hyps = []
            for k, pieces in enumerate(out.hypotheses):
                ended = bool(pieces) and pieces[-1] == "</s>"
                tokens = [sp_tgt.piece_to_id(p) for p in (pieces[:-1] if ended else pieces)][: limit - 1]
                att = None
                if cfg.need_attention:  # (len(tokens) + 1, S): a row per output token and the EOS
                    att = torch.tensor(out.attention[k], dtype=torch.float)[: len(tokens) + 1]
                hyps.append(Hypothesis(tokens, float(out.scores[k]), att))
            results.append(hyps)
        return results
