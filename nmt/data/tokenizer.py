"""Sentencepiece subword tokenizers: trained on the training split, cached by data and settings.

Word-level set-ups put a Moses tokenization in front (``data.tokenizer.pretokenize: moses``): the
tokenizer then takes and returns plain text, tokenizing before sentencepiece and detokenizing after.

Every model uses the same special ids: pad 0, unk 1, bos 2, eos 3. A checkpoint stores the serialized
sentencepiece model(s), so translation needs nothing but the checkpoint file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2

from nmt.data.cache import cached_files
from nmt.data.config import DataConfig, TokenizerConfig
from nmt.data.pretokenize import MosesPretokenizer

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def _pretokenized(texts: list[str], pretokenizer: MosesPretokenizer | None) -> list[str]:
    return [pretokenizer.tokenize(t) for t in texts] if pretokenizer else texts


class SubwordTokenizer:
    """A thin wrapper around a sentencepiece model with the project's special ids, optionally behind a
    Moses tokenization of one language (``pretokenizer``; see nmt.data.pretokenize)."""

    def __init__(self, model_proto: bytes, moses_lang: str | None = None):
        self.model_proto, self.moses_lang = model_proto, moses_lang
        self.pretokenizer = MosesPretokenizer(moses_lang) if moses_lang else None
        spec = sentencepiece_model_pb2.ModelProto.FromString(model_proto).trainer_spec
        self.word_level = spec.model_type == sentencepiece_model_pb2.TrainerSpec.WORD
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

    def __getstate__(self) -> tuple[bytes, str | None]:  # worker processes rebuild the processor from these
        return self.model_proto, self.moses_lang

    def __setstate__(self, state: tuple[bytes, str | None]) -> None:
        self.__init__(*state)

    def for_language(self, moses_lang: str | None) -> SubwordTokenizer:
        """The same vocabulary behind another language's Moses tokenization (joint vocabularies)."""
        return self if moses_lang == self.moses_lang else SubwordTokenizer(self.model_proto, moses_lang)

    def pretokenize(self, texts: list[str]) -> list[str]:
        """The text sentencepiece sees: Moses tokens, or the text itself."""
        return _pretokenized(texts, self.pretokenizer)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text. A word model maps every word to its id or UNK (sentencepiece itself would
        merge consecutive unknown words into one UNK: the papers' shortlists give one UNK per word)."""
        texts = self.pretokenize(texts)
        if self.word_level:
            return [[self.sp.piece_to_id("▁" + w) for w in t.split()] for t in texts]
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: list[int]) -> str:
        """Detokenized text: sentencepiece pieces joined, then Moses detokenization if it was tokenized."""
        text = self.sp.decode([i for i in ids if i > EOS_ID or i == UNK_ID])
        return self.pretokenizer.detokenize(text) if self.pretokenizer else text

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in ids]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.model_proto).hexdigest()[:16]


def _train_sentencepiece(sentences: Iterable[str], tok_cfg: TokenizerConfig) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=tok_cfg.vocab_size,
        model_type=tok_cfg.model_type,
        character_coverage=tok_cfg.character_coverage,
        input_sentence_size=tok_cfg.input_sentence_size,
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


def _cached(cache_dir: Path, key: str, train: Callable[[], bytes]) -> bytes:
    """The sentencepiece model cached as ``spm-<key>/spm-<key>.model``, trained by ``train`` if the entry is
    absent or fails its checks (nmt.data.cache)."""
    name = f"spm-{key}"
    (model,) = cached_files(
        cache_dir / name, lambda folder: (folder / f"{name}.model").write_bytes(train()), "sentencepiece model"
    )
    return model.read_bytes()


def moses_languages(data_cfg: DataConfig | Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The languages to Moses-tokenize source and target in (None, None without pretokenization)."""
    data_cfg = DataConfig.of(data_cfg)
    moses = data_cfg.tokenizer.pretokenize == "moses"
    return (data_cfg.src_lang, data_cfg.tgt_lang) if moses else (None, None)


def shared_vocabulary(src: SubwordTokenizer, tgt: SubwordTokenizer) -> bool:
    """One vocabulary on both sides (a joint model, possibly behind two languages' Moses tokenizers)."""
    return src.model_proto is tgt.model_proto or src.model_proto == tgt.model_proto


def checkpoint_tokenizers(src: SubwordTokenizer, tgt: SubwordTokenizer) -> dict[str, torch.Tensor]:
    """The sentencepiece model(s) as uint8 tensors for a checkpoint (loadable with weights_only=True);
    ``tgt`` only when the vocabularies differ. :func:`tokenizers_from_checkpoint` reads them back."""

    def as_tensor(proto: bytes) -> torch.Tensor:
        return torch.frombuffer(bytearray(proto), dtype=torch.uint8)

    toks = {"src": as_tensor(src.model_proto)}
    if not shared_vocabulary(src, tgt):
        toks["tgt"] = as_tensor(tgt.model_proto)
    return toks


def tokenizers_from_checkpoint(
    payload: Mapping[str, Any], data_cfg: DataConfig | Mapping[str, Any]
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """The tokenizers :func:`checkpoint_tokenizers` stored, behind the run's Moses stage if it had one
    (``data_cfg``: the run's data config, as the checkpoint saved it)."""
    toks = payload["tokenizers"]
    src_lang, tgt_lang = moses_languages(data_cfg)
    src = SubwordTokenizer(bytes(toks["src"].numpy().tobytes()), src_lang)
    if "tgt" not in toks:
        return src, src.for_language(tgt_lang)
    return src, SubwordTokenizer(bytes(toks["tgt"].numpy().tobytes()), tgt_lang)


def load_or_train_tokenizers(
    train: datasets.Dataset,
    tok_cfg: TokenizerConfig | Mapping[str, Any],
    cache_dir: str | Path,
    fingerprint: str | None = None,
    moses: tuple[str | None, str | None] = (None, None),
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """Source and target tokenizers (the same vocabulary when ``tok_cfg.joint``), trained on the
    training split as the model will see it (Moses-tokenized in the ``moses`` languages, if given)."""
    tok_cfg, cache_dir = TokenizerConfig.of(tok_cfg), Path(cache_dir)
    fingerprint = fingerprint or corpus_fingerprint(train)
    # The settings that decide the model, as text: part of its cache key.
    settings = f"{tok_cfg.vocab_size}-{tok_cfg.model_type}-{tok_cfg.character_coverage}-{tok_cfg.input_sentence_size}"
    if moses != (None, None):
        settings += f"-moses-{moses[0]}-{moses[1]}"
    limit = tok_cfg.input_sentence_size
    pre = {column: MosesPretokenizer(lang) if lang else None for column, lang in zip(("src", "tgt"), moses)}

    def side(column: str) -> Iterator[str]:
        for batch in train.iter(batch_size=10_000):
            yield from _pretokenized(batch[column], pre[column])

    def both() -> Iterator[str]:
        for batch in train.iter(batch_size=10_000):
            yield from _pretokenized(batch["src"], pre["src"])
            yield from _pretokenized(batch["tgt"], pre["tgt"])

    if tok_cfg.joint:
        key = hashlib.sha256(f"{fingerprint}-joint-{settings}".encode()).hexdigest()[:16]
        proto = _cached(cache_dir, key, lambda: _train_sentencepiece(_sample(both(), 2 * limit, 0), tok_cfg))
        tok = SubwordTokenizer(proto, moses[0])
        return tok, tok.for_language(moses[1])
    toks = []
    for column, lang in zip(("src", "tgt"), moses):
        key = hashlib.sha256(f"{fingerprint}-{column}-{settings}".encode()).hexdigest()[:16]
        proto = _cached(cache_dir, key, lambda c=column: _train_sentencepiece(_sample(side(c), limit, 0), tok_cfg))
        toks.append(SubwordTokenizer(proto, lang))
    return toks[0], toks[1]
