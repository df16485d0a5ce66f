"""From a dataset config to training-ready data: splits loaded, tokenizers trained (or reused), encoded."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from nmt.data.batching import encode_corpus, filter_long
from nmt.data.corpus import drop_empty_pairs, load_split
from nmt.data.tokenizer import SubwordTokenizer, corpus_fingerprint, load_or_train_tokenizers

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
    train: datasets.Dataset  # encoded, filtered
    valid: EvalSet
    src_tok: SubwordTokenizer
    tgt_tok: SubwordTokenizer


def load_eval_set(data_cfg: Any, split: str, src_tok: SubwordTokenizer, tgt_tok: SubwordTokenizer) -> EvalSet:
    """Load and encode an evaluation split without filtering, dropping or reordering anything."""
    raw = load_split(data_cfg, split)
    return EvalSet(split, encode_corpus(raw, src_tok, tgt_tok), raw["src"], raw["tgt"])


def prepare_training_data(data_cfg: Any) -> TrainingData:
    """Load train/valid, train or reuse the sentencepiece model(s), encode and length-filter train."""
    train_raw = drop_empty_pairs(load_split(data_cfg, data_cfg.train_split))
    fingerprint = corpus_fingerprint(train_raw)
    cache_dir = Path(data_cfg.cache_dir)
    src_tok, tgt_tok = load_or_train_tokenizers(train_raw, data_cfg.tokenizer, cache_dir, fingerprint)
    key = hashlib.sha256(f"{fingerprint}-{src_tok.digest}-{tgt_tok.digest}".encode()).hexdigest()[:16]
    train = encode_corpus(train_raw, src_tok, tgt_tok, cache_file=cache_dir / f"train-{key}.arrow")
    train = filter_long(train, int(data_cfg.max_len))
    log.info("training pairs: %d (vocab src %d, tgt %d)", len(train), len(src_tok), len(tgt_tok))
    valid = load_eval_set(data_cfg, data_cfg.valid_split, src_tok, tgt_tok)
    return TrainingData(train, valid, src_tok, tgt_tok)
