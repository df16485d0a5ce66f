"""Sentencepiece subword tokenizers: trained on the training split, cached by data and settings.

Every model uses the same special ids: pad 0, unk 1, bos 2, eos 3. A checkpoint stores the serialized
sentencepiece model(s), so translation needs nothing but the checkpoint file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
import sentencepiece as spm

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class SubwordTokenizer:
    """A thin wrapper around a sentencepiece model with the project's special ids."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (
            PAD_ID,
            UNK_ID,
            BOS_ID,
            EOS_ID,
        ):
            raise ValueError("sentencepiece model was not trained with pad=0 unk=1 bos=2 eos=3")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def __getstate__(self) -> bytes:  # worker processes receive the model bytes and rebuild the processor
        return self.model_proto

    def __setstate__(self, proto: bytes) -> None:
        self.__init__(proto)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i > EOS_ID or i == UNK_ID])

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in ids]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.model_proto).hexdigest()[:16]


def _train_sentencepiece(sentences: Iterable[str], tok_cfg: Any) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=int(tok_cfg.vocab_size),
        model_type=str(tok_cfg.model_type),
        character_coverage=float(tok_cfg.character_coverage),
        input_sentence_size=int(tok_cfg.input_sentence_size),
        shuffle_input_sentence=True,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    return model.getvalue()


def _sample(sentences: Iterator[str], limit: int, seed: int) -> list[str]:
    """Reservoir sample so that sentencepiece sees a bounded, unbiased sample of a large corpus."""
    rng = random.Random(seed)
    sample: list[str] = []
    for n, s in enumerate(sentences):
        if len(sample) < limit:
            sample.append(s)
        else:
            j = rng.randint(0, n)
            if j < limit:
                sample[j] = s
    return sample


def corpus_fingerprint(ds: datasets.Dataset) -> str:
    """Content hash of a parallel corpus, so caches follow the data rather than its file names."""
    h = hashlib.sha256()
    for batch in ds.iter(batch_size=10_000):
        for s, t in zip(batch["src"], batch["tgt"]):
            h.update(s.encode())
            h.update(b"\t")
            h.update(t.encode())
            h.update(b"\n")
    return h.hexdigest()[:16]


def _cached(cache_dir: Path, key: str, build) -> bytes:
    path = cache_dir / f"spm-{key}.model"
    if path.is_file():
        log.info("reusing sentencepiece model %s", path)
        return path.read_bytes()
    proto = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(proto)
    tmp.replace(path)
    log.info("trained sentencepiece model %s", path)
    return proto


def load_or_train_tokenizers(
    train: datasets.Dataset, tok_cfg: Any, cache_dir: str | Path, fingerprint: str | None = None
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """Source and target tokenizers (the same object when ``tok_cfg.joint``)."""
    cache_dir = Path(cache_dir)
    fingerprint = fingerprint or corpus_fingerprint(train)
    settings = f"{tok_cfg.vocab_size}-{tok_cfg.model_type}-{tok_cfg.character_coverage}-{tok_cfg.input_sentence_size}"
    limit = int(tok_cfg.input_sentence_size)

    def side(column: str) -> Iterator[str]:
        for batch in train.iter(batch_size=10_000):
            yield from batch[column]

    def both() -> Iterator[str]:
        for batch in train.iter(batch_size=10_000):
            yield from batch["src"]
            yield from batch["tgt"]

    if tok_cfg.joint:
        key = hashlib.sha256(f"{fingerprint}-joint-{settings}".encode()).hexdigest()[:16]
        proto = _cached(cache_dir, key, lambda: _train_sentencepiece(_sample(both(), 2 * limit, 0), tok_cfg))
        tok = SubwordTokenizer(proto)
        return tok, tok
    toks = []
    for column in ("src", "tgt"):
        key = hashlib.sha256(f"{fingerprint}-{column}-{settings}".encode()).hexdigest()[:16]
        proto = _cached(cache_dir, key, lambda c=column: _train_sentencepiece(_sample(side(c), limit, 0), tok_cfg))
        toks.append(SubwordTokenizer(proto))
    return toks[0], toks[1]
