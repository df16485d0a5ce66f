"""From a dataset config to training-ready data: splits loaded, tokenizers trained (or reused), encoded."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from nmt.data.batching import encode_corpus, lengths, rows_within
from nmt.data.cache import cached_files
from nmt.data.config import DataConfig
from nmt.data.corpus import DataSection, drop_empty_pairs, load_split, read_parallel_files
from nmt.data.tokenizer import SubwordTokenizer, load_or_train_tokenizers, moses_languages
from nmt.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """An evaluation split: encoded sources and the raw references, all lines, in file order."""

    name: str
    encoded: datasets.Dataset
    sources: list[str]
    references: list[str]


@dataclass
class TrainingData:
    train: datasets.Dataset  # encoded (ids and lengths), memory-mapped, every non-empty pair
    train_rows: np.ndarray  # (N,) rows of ``train`` within data.max_len and max_words: what batches draw from
    valid: EvalSet
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer


def load_eval_set(data_cfg: DataSection, split: str, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> EvalSet:
    """Load and encode an evaluation split without filtering, dropping or reordering anything."""
    raw = load_split(data_cfg, split)
    return EvalSet(split, encode_corpus(raw, src_tok, tgt_tok), raw["src"], raw["tgt"])


def eval_set_from_files(
    source: str | Path, reference: str | Path, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer
) -> EvalSet:
    """Any parallel pair of files a user brings (e.g. ../shared/data/wmt14/newstest2014.de / .en), every
    line kept in order; named after the source file."""
    for what, path in (("source", source), ("reference", reference)):
        if not Path(path).is_file():
            raise DataError(f"{what}={path}: no such file; give a text file with one segment per line")
    sources, references = read_parallel_files(Path(source), Path(reference))
    raw = datasets.Dataset.from_dict({"src": sources, "tgt": references})
    return EvalSet(Path(source).name, encode_corpus(raw, src_tok, tgt_tok), sources, references)


def word_counts(raw: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace-separated words of each pair's raw source and target: (N,), (N,). ``data.max_words``
    limits these, the units of the papers' sentence-length limits (Bahdanau et al. 2014 "-30" / "-50"),
    which subword counts would not match across vocabularies."""
    counts = raw.map(
        lambda b: {"src_words": [len(s.split()) for s in b["src"]], "tgt_words": [len(t.split()) for t in b["tgt"]]},
        batched=True,
        remove_columns=raw.column_names,
        desc="counting words",
    )
    return np.asarray(counts["src_words"], dtype=np.int32), np.asarray(counts["tgt_words"], dtype=np.int32)


def worker_processes(data_cfg: DataSection, rows: int) -> int | None:
    """Processes for tokenizing a training corpus: ``data.num_proc`` (null: one per core, at most 8);
    corpora under 200k pairs are done in-process, where starting workers would cost more than it saves."""
    if rows < 200_000:
        return None
    wanted = DataConfig.of(data_cfg).num_proc or min(8, os.cpu_count() or 1)
    return wanted if wanted > 1 else None


def prepare_training_data(data_cfg: DataSection) -> TrainingData:
    """Load train/valid, train or reuse the sentencepiece model(s), encode and length-filter train."""
    data_cfg = DataConfig.of(data_cfg)
    cache_dir = Path(data_cfg.cache_dir)
    train_raw = drop_empty_pairs(load_split(data_cfg, data_cfg.train_split, cache_dir / "raw"))
    # The datasets fingerprint of a cached corpus follows its files (local) or hub revision; hashing the
    # text itself would cost a full pass over a WMT-size corpus at every start.
    fingerprint = train_raw._fingerprint
    src_tok, tgt_tok = load_or_train_tokenizers(
        train_raw, data_cfg.tokenizer, cache_dir, fingerprint, moses_languages(data_cfg)
    )
    key = hashlib.sha256(f"{fingerprint}-{src_tok.digest}-{tgt_tok.digest}".encode()).hexdigest()[:16]
    num_proc = worker_processes(data_cfg, len(train_raw))

    def encode(folder: Path) -> None:  # one Arrow file, or one per process with num_proc
        encode_corpus(
            train_raw, src_tok, tgt_tok, cache_file=folder / f"train-{key}.arrow", keep_text=False, num_proc=num_proc
        )

    files = cached_files(cache_dir / f"train-{key}", encode, "encoded training set")
    train = datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in files])
    rows = rows_within(*lengths(train), data_cfg.max_len)
    if data_cfg.max_words is not None:
        rows = np.intersect1d(rows, rows_within(*word_counts(train_raw), data_cfg.max_words, "words"))
    log.info("training pairs: %d (vocab src %d, tgt %d)", len(rows), len(src_tok), len(tgt_tok))
    valid = load_eval_set(data_cfg, data_cfg.valid_split, src_tok, tgt_tok)
    return TrainingData(train, rows, valid, src_tok, tgt_tok)
