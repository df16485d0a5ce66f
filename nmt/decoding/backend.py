"""Pick the decoding backend for a path: PyTorch for checkpoints, CTranslate2 for ``nmt-export`` directories.

The one place that knows both backends, so that :mod:`~nmt.decoding.translator` and
:mod:`~nmt.decoding.ctranslate2_translator` need not import each other; the decoding commands
(nmt-translate, nmt-evaluate, nmt-serve) load through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nmt.decoding.ctranslate2_translator import CTranslate2Translator, is_ctranslate2_dir
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator, merge_search


def load_translator(
    path: str | Path | Sequence[str | Path],
    search: SearchConfig | Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    max_tokens: int = 4096,
    inter_threads: int = 1,
    quantization: str = "none",
    **search_options: Any,
) -> Translator:
    """A Translator for ``path``: an ``nmt-export`` directory decodes with CTranslate2 (``quantization=int8``:
    its int8 compute type), anything else is a checkpoint or a list of them
    (:meth:`Translator.from_checkpoint`, same arguments)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if len(paths) == 1 and is_ctranslate2_dir(paths[0]):
        settings = merge_search(search, search_options)
        return CTranslate2Translator.from_directory(
            paths[0], settings, str(device), max_tokens, inter_threads, quantization
        )
    return Translator.from_checkpoint(path, search, device, max_tokens, inter_threads, quantization, **search_options)


def translator_from_cfg(cfg: Mapping[str, Any], search: Mapping[str, Any] | None = None) -> Translator:
    """The Translator that a command's config asks for: ``checkpoint``, ``search`` (or the ``search``
    given) and the options of configs/decoding.yaml (nmt-evaluate, nmt-translate, nmt-serve)."""
    return load_translator(
        cfg["checkpoint"],
        cfg["search"] if search is None else search,
        cfg["device"],
        int(cfg["max_tokens"]),
        int(cfg["inter_threads"]),
        str(cfg["quantization"]),
    )
