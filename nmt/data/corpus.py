"""Load parallel corpora into one schema: a ``datasets.Dataset`` with string columns ``src`` and ``tgt``.

Two sources share that schema. ``local``: aligned plain-text files ``<root>/<local_dir>/<stem>.<lang>``,
one segment per line (the layout of ``../shared/data``). ``hub``: a Hugging Face hub dataset (or a local
folder in hub layout) whose rows hold either a ``translation`` dict (``{"de": ..., "en": ...}``, the WMT /
IWSLT schema) or one column per language (e.g. ``bentrevett/multi30k``). ``auto`` (the default) takes the
local files of a split when they exist under ``data.root`` and the hub dataset otherwise, so a fresh
machine with internet needs no data set-up and an offline one uses its local copy.

Every line is stripped of surrounding white space and of a UTF-8 byte-order mark (U+FEFF, which
``str.strip`` keeps) at the start of a file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets

from nmt.data.config import DataConfig
from nmt.errors import DataError

log = logging.getLogger(__name__)


BOM = "\ufeff"
# The data functions take the typed config (nmt.data.config); a DictConfig or dict (tests, scripts) is
# typed, and checked, on the way in.
DataSection = DataConfig | Mapping[str, Any]


def split_names(data_cfg: DataSection) -> list[str]:
    """All split names the dataset config knows, in config order."""
    data_cfg = DataConfig.of(data_cfg)
    if data_cfg.source == "hub":
        return list(data_cfg.hub.splits)
    if data_cfg.source == "auto":
        return list(dict.fromkeys([*data_cfg.splits, *data_cfg.hub.splits]))
    return list(data_cfg.splits)


def _check_split(data_cfg: DataConfig, split: str) -> None:
    names = split_names(data_cfg)
    if split not in names:
        raise DataError(f"dataset '{data_cfg.name}' has no split '{split}'; choose one of: {', '.join(names)}")


def local_split_paths(data_cfg: DataSection, split: str) -> tuple[Path, Path]:
    """Source and target file of a split of a local dataset."""
    data_cfg = DataConfig.of(data_cfg)
    _check_split(data_cfg, split)
    folder = Path(data_cfg.root) / data_cfg.local_dir
    stem = data_cfg.splits[split]
    return folder / f"{stem}.{data_cfg.src_lang}", folder / f"{stem}.{data_cfg.tgt_lang}"


def _decode(raw: bytes, path: str, lineno: int) -> str:
    try:
        text = raw.decode("utf-8")
        return (text.removeprefix(BOM) if lineno == 1 else text).strip()
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _count_rest(f: Any) -> int:
    return sum(1 for _ in f)


def iter_parallel_files(src_path: str, tgt_path: str, stamp: str = "") -> Iterator[dict[str, str]]:
    """Stream aligned lines of two files as ``{"src", "tgt"}`` rows; refuse files of different length.

    ``stamp`` is unused here: it carries the files' sizes and times into the datasets cache key.
    """
    for path in (src_path, tgt_path):
        if not Path(path).is_file():
            raise DataError(
                f"data file not found: {path}. Data is looked for under data.root "
                f"(set NMT_DATA_ROOT or data.root=...; see data/README.md for where to get it), "
                f"or set data.source=auto to load it from the Hugging Face hub"
            )
    with open(src_path, "rb") as fs, open(tgt_path, "rb") as ft:
        lineno = 0
        while (a := fs.readline()) and (b := ft.readline()):
            lineno += 1
            yield {"src": _decode(a, src_path, lineno), "tgt": _decode(b, tgt_path, lineno)}
        # One file ended; the other may still hold lines (a line already read from fs counts too).
        n_src = lineno + (1 if a else 0) + _count_rest(fs)
        n_tgt = lineno + _count_rest(ft)
    if n_src != n_tgt:
        raise DataError(
            f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt}: "
            "parallel files must be line-aligned (one segment per line in each)"
        )


def read_parallel_files(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    """Both files as lists of lines (small files: evaluation sets)."""
    rows = list(iter_parallel_files(str(src_path), str(tgt_path)))
    return [r["src"] for r in rows], [r["tgt"] for r in rows]


def cached_parallel_files(src_path: Path, tgt_path: Path, cache_dir: Path) -> datasets.Dataset:
    """A large parallel corpus streamed once into a memory-mapped Arrow file under ``cache_dir``.

    The text never sits in Python lists: rows go from the files to Arrow in batches. Later runs reuse
    the Arrow file as long as both files keep their size and modification time.
    """
    stamp = "|".join(f"{p.stat().st_size}-{p.stat().st_mtime_ns}" for p in (src_path, tgt_path) if p.is_file())
    try:
        return datasets.Dataset.from_generator(
            iter_parallel_files,
            features=datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")}),
            cache_dir=str(cache_dir),
            gen_kwargs={"src_path": str(src_path), "tgt_path": str(tgt_path), "stamp": stamp},
        )
    except datasets.exceptions.DatasetGenerationError as e:
        if isinstance(e.__cause__, DataError):  # our own message, not the datasets wrapper
            raise e.__cause__ from None
        raise


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


def split_source(data_cfg: DataSection, split: str) -> str:
    """``local`` or ``hub``: where ``split`` is read from under ``data.source`` (auto: local files if present)."""
    data_cfg = DataConfig.of(data_cfg)
    _check_split(data_cfg, split)
    if data_cfg.source != "auto":
        return data_cfg.source
    local = split in data_cfg.splits and all(p.is_file() for p in local_split_paths(data_cfg, split))
    chosen = "local" if local or split not in data_cfg.hub.splits else "hub"
    where = Path(data_cfg.root) / data_cfg.local_dir if chosen == "local" else f"hub dataset {data_cfg.hub.path}"
    log.info("data.source=auto: split '%s' of %s from %s", split, data_cfg.name, where)
    return chosen


def _load_hub_split(data_cfg: DataConfig, split: str) -> datasets.Dataset:
    hub = data_cfg.hub
    try:
        ds = datasets.load_dataset(hub.path, hub.name, split=hub.splits[split])
    except Exception as e:  # no internet, unknown dataset, missing split: all end the same way for the user
        local = ", ".join(str(p) for p in local_split_paths(data_cfg, split)) if split in data_cfg.splits else None
        also = f"; no local files either ({local})" if data_cfg.source == "auto" and local else ""
        raise DataError(
            f"could not load split '{hub.splits[split]}' of the hub dataset '{hub.path}' "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}){also}. Either put the plain-text "
            f"files under data.root (set NMT_DATA_ROOT or data.root=...; layout <root>/{data_cfg.local_dir}/"
            f"<stem>.<lang>) or let the datasets library reach the hub"
        ) from None
    return _hub_rows(ds, data_cfg.src_lang, data_cfg.tgt_lang)


def load_split(data_cfg: DataSection, split: str, cache_dir: Path | None = None) -> datasets.Dataset:
    """Load one split as a Dataset with columns ``src`` and ``tgt`` (order and count kept as in the source).

    With ``cache_dir`` a local split is streamed into a memory-mapped Arrow cache (training corpora);
    without, it is read into memory (evaluation sets).
    """
    data_cfg = DataConfig.of(data_cfg)
    if split_source(data_cfg, split) == "hub":
        return _load_hub_split(data_cfg, split)
    paths = local_split_paths(data_cfg, split)
    if cache_dir is not None:
        return cached_parallel_files(*paths, cache_dir)
    src, tgt = read_parallel_files(*paths)
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt})


def drop_empty_pairs(ds: datasets.Dataset) -> datasets.Dataset:
    """Training only: remove pairs with an empty side, and log how many went."""
    kept = ds.filter(lambda b: [bool(s) and bool(t) for s, t in zip(b["src"], b["tgt"])], batched=True)
    dropped = len(ds) - len(kept)
    if dropped:
        log.info("dropped %d training pairs with an empty or whitespace-only side", dropped)
    return kept
