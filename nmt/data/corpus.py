"""Load parallel corpora into one schema: a ``datasets.Dataset`` with string columns ``src`` and ``tgt``.

Two sources share that schema. ``local``: aligned plain-text files ``<root>/<local_dir>/<stem>.<lang>``,
one segment per line (the layout of ``../shared/data``). ``hub``: a Hugging Face hub dataset (or a local
folder in hub layout) whose rows hold either a ``translation`` dict (``{"de": ..., "en": ...}``, the WMT /
IWSLT schema) or one column per language (e.g. ``bentrevett/multi30k``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from nmt.errors import DataError

log = logging.getLogger(__name__)


def split_names(data_cfg: Any) -> list[str]:
    """All split names the dataset config knows, in config order."""
    source = data_cfg.hub.splits if data_cfg.source == "hub" else data_cfg.splits
    return list(source.keys())


def _check_split(data_cfg: Any, split: str) -> None:
    names = split_names(data_cfg)
    if split not in names:
        raise DataError(f"dataset '{data_cfg.name}' has no split '{split}'; choose one of: {', '.join(names)}")


def local_split_paths(data_cfg: Any, split: str) -> tuple[Path, Path]:
    """Source and target file of a split of a local dataset."""
    _check_split(data_cfg, split)
    folder = Path(data_cfg.root) / data_cfg.local_dir
    stem = data_cfg.splits[split]
    return folder / f"{stem}.{data_cfg.src_lang}", folder / f"{stem}.{data_cfg.tgt_lang}"


def _read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file, one segment per line, naming the line of any undecodable bytes."""
    lines: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                lines.append(raw.decode("utf-8").strip())
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
    return lines


def read_parallel_files(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    """Read two line-aligned files; refuse files that are missing or of different length."""
    for path in (src_path, tgt_path):
        if not path.is_file():
            raise DataError(
                f"data file not found: {path}. Data is looked for under data.root "
                f"(set NMT_DATA_ROOT or data.root=...; see data/README.md for where to get it)"
            )
    src, tgt = _read_lines(src_path), _read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "parallel files must be line-aligned (one segment per line in each)"
        )
    return src, tgt


def _hub_rows(ds: datasets.Dataset, src_lang: str, tgt_lang: str) -> datasets.Dataset:
    """Normalise either hub schema to columns ``src``/``tgt``."""
    if "translation" in ds.column_names:

        def pick(batch: dict[str, list]) -> dict[str, list[str]]:
            pairs = batch["translation"]
            return {"src": [p[src_lang].strip() for p in pairs], "tgt": [p[tgt_lang].strip() for p in pairs]}
    elif src_lang in ds.column_names and tgt_lang in ds.column_names:

        def pick(batch: dict[str, list]) -> dict[str, list[str]]:
            return {"src": [s.strip() for s in batch[src_lang]], "tgt": [t.strip() for t in batch[tgt_lang]]}
    else:
        raise DataError(
            f"hub dataset has columns {ds.column_names}; expected 'translation' or '{src_lang}' and '{tgt_lang}'"
        )
    return ds.map(pick, batched=True, remove_columns=ds.column_names)


def load_split(data_cfg: Any, split: str) -> datasets.Dataset:
    """Load one split as a Dataset with columns ``src`` and ``tgt`` (order and count kept as in the source)."""
    _check_split(data_cfg, split)
    if data_cfg.source == "hub":
        hub = data_cfg.hub
        ds = datasets.load_dataset(hub.path, hub.get("name"), split=hub.splits[split])
        return _hub_rows(ds, data_cfg.src_lang, data_cfg.tgt_lang)
    if data_cfg.source != "local":
        raise DataError(f"data.source={data_cfg.source!r}: use 'local' or 'hub'")
    src, tgt = read_parallel_files(*local_split_paths(data_cfg, split))
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt})


def iter_pairs(ds: datasets.Dataset, batch_size: int = 10_000) -> Iterator[tuple[str, str]]:
    """Stream (src, tgt) pairs without materialising the whole corpus."""
    for batch in ds.iter(batch_size=batch_size):
        yield from zip(batch["src"], batch["tgt"])


def drop_empty_pairs(ds: datasets.Dataset) -> datasets.Dataset:
    """Training only: remove pairs with an empty side, and log how many went."""
    kept = ds.filter(lambda b: [bool(s) and bool(t) for s, t in zip(b["src"], b["tgt"])], batched=True)
    dropped = len(ds) - len(kept)
    if dropped:
        log.info("dropped %d training pairs with an empty or whitespace-only side", dropped)
    return kept
