"""Where the project looks for data, caches and configs.

Data is never committed: ``data.root`` defaults to ``$NMT_DATA_ROOT`` or, if unset, the repository's
``data/`` directory. Derived artefacts (sentencepiece models, tokenized Arrow files) go to
``$NMT_CACHE_DIR`` or ``data/cache``.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"


def data_root() -> str:
    """Root folder that dataset configs resolve their files against."""
    return os.environ.get("NMT_DATA_ROOT") or str(REPO_ROOT / "data")


def cache_root() -> str:
    """Folder for cached tokenizers and tokenized corpora (safe to delete)."""
    return os.environ.get("NMT_CACHE_DIR") or str(REPO_ROOT / "data" / "cache")


def register_resolvers() -> None:
    """Register ``${nmt_data_root:}`` and ``${nmt_cache_root:}`` for the Hydra configs."""
    for name, fn in (("nmt_data_root", data_root), ("nmt_cache_root", cache_root)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
