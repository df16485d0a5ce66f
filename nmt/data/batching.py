"""Token-bucketed batches: subword-encoded corpora, a length-bucketing batch sampler and collation.

Training batches are built the fairseq way: shuffle, cut the corpus into large pools, sort each pool by
length, fill batches up to ``max_tokens`` padded tokens, then shuffle the batch order. Padding is
therefore small while batch composition still changes every epoch. The batch order of an epoch is a pure
function of (seed, epoch), so resuming needs only the epoch and the number of batches already consumed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from torch import Tensor

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, SubwordTokenizer

log = logging.getLogger(__name__)


def encode_corpus(
    ds: datasets.Dataset,
    src_tok: SubwordTokenizer,
    tgt_tok: SubwordTokenizer,
    cache_file: str | Path | None = None,
    keep_text: bool = True,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Add ``src_ids``, ``tgt_ids`` and their lengths; with ``cache_file`` the result is a mapped Arrow file.

    ``keep_text=False`` drops the text columns (training needs only ids and lengths, and the smaller file
    is what the data loader pages in); ``num_proc`` tokenizes in that many processes.
    """

    def encode(batch: dict[str, list[str]]) -> dict[str, list]:
        src_ids, tgt_ids = src_tok.encode(batch["src"]), tgt_tok.encode(batch["tgt"])
        return {
            "src_ids": src_ids,
            "tgt_ids": tgt_ids,
            "src_len": [len(x) for x in src_ids],
            "tgt_len": [len(x) for x in tgt_ids],
        }

    kwargs: dict = {"remove_columns": [] if keep_text else ["src", "tgt"], "num_proc": num_proc}
    if cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        kwargs |= {"cache_file_name": str(cache_file), "new_fingerprint": Path(cache_file).stem}
    return ds.map(encode, batched=True, batch_size=2000, desc="encoding", **kwargs)


def rows_within(src_lens: np.ndarray, tgt_lens: np.ndarray, max_len: int, unit: str = "subwords") -> np.ndarray:
    """Training only: the rows whose sides are both at most ``max_len`` ``unit``, logging how many are not.

    The result selects rows for the batch sampler instead of filtering the dataset: a filtered Arrow
    dataset reads every column through an indices mapping, which costs minutes on a WMT-size corpus.
    """
    rows = np.flatnonzero((np.asarray(src_lens) <= max_len) & (np.asarray(tgt_lens) <= max_len))
    if len(rows) < len(src_lens):
        log.info("dropped %d training pairs longer than %d %s", len(src_lens) - len(rows), max_len, unit)
    return rows


class TokenBatchSampler:
    """Yields lists of dataset indices whose padded size stays within ``max_tokens``.

    With ``shuffle`` the batches follow the pooled-sort recipe above and are sharded across
    ``world_size`` ranks (every rank gets the same number of batches). Without it, examples are sorted
    by length for fast decoding; callers restore the original order with the indices. ``rows`` limits
    the batches to those dataset rows (default: all), e.g. the ones :func:`rows_within` keeps.
    """

    def __init__(
        self,
        src_lens: np.ndarray,
        tgt_lens: np.ndarray,
        max_tokens: int,
        shuffle: bool,
        seed: int = 0,
        pool_size: int = 131_072,
        max_sentences: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        rows: np.ndarray | None = None,
    ):
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        take = slice(None) if self.rows is None else self.rows
        # int32: on a 36M-pair corpus every per-pair array costs 144 MB per 4 bytes of width
        self.src_lens = np.asarray(src_lens, dtype=np.int32)[take] + 1  # (N,) + eos
        self.tgt_lens = np.asarray(tgt_lens, dtype=np.int32)[take] + 1  # (N,) + bos/eos
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.pool_size, self.max_sentences = pool_size, max_sentences
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` batches (used when resuming mid-epoch)."""
        self.epoch, self.start = epoch, start

    def _fill(self, order: np.ndarray) -> list[np.ndarray]:
        size = np.maximum(self.src_lens[order], self.tgt_lens[order])
        batches, begin, longest = [], 0, 0
        limit = self.max_sentences or len(order)
        for i, n in enumerate(size):
            longest_if_added = max(longest, int(n))
            count = i - begin
            if count and (longest_if_added * (count + 1) > self.max_tokens or count >= limit):
                batches.append(order[begin:i])
                begin, longest_if_added = i, int(n)
            longest = longest_if_added
        if begin < len(order):
            batches.append(order[begin:])
        return batches

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of an epoch for this rank, deterministic in (seed, epoch)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if not self.shuffle:
            order = np.lexsort((self.tgt_lens, self.src_lens))
            batches = self._fill(order)
        else:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(len(self.src_lens))
            batches = []
            for p in range(0, len(perm), self.pool_size):
                pool = perm[p : p + self.pool_size]
                src, tgt = self.src_lens[pool], self.tgt_lens[pool]
                pool = pool[np.lexsort((src, tgt, np.maximum(src, tgt)))]  # longer side, then target, then source
                batches.extend(self._fill(pool))
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
            if self.world_size > 1:
                usable = len(batches) - len(batches) % self.world_size
                batches = batches[self.rank : usable : self.world_size]
        if self.rows is not None:
            batches = [self.rows[b] for b in batches]
        self._cache = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.epoch_batches(self.epoch)[self.start :]:
            yield b.tolist()

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch)) - self.start


@dataclass
class Batch:
    """Padded tensors of one batch. Sources end in EOS; ``tgt_in`` starts with BOS, ``tgt_out`` ends in EOS."""

    src: Tensor  # (B, S)
    src_lengths: Tensor  # (B,)
    tgt_in: Tensor | None  # (B, T)
    tgt_out: Tensor | None  # (B, T)
    indices: Tensor  # (B,) row numbers in the dataset

    @property
    def ntokens(self) -> int:
        """Number of real target tokens (the loss normaliser)."""
        return int((self.tgt_out != PAD_ID).sum()) if self.tgt_out is not None else 0

    def to(self, device: torch.device | str) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.src), move(self.src_lengths), move(self.tgt_in), move(self.tgt_out), self.indices)


def pad_sequences(seqs: Sequence[Sequence[int]], prefix: int | None = None, suffix: int | None = None) -> Tensor:
    """Right-pad token id lists (optionally wrapped in ``prefix``/``suffix``) into a (B, L) tensor."""
    extra = (prefix is not None) + (suffix is not None)
    longest = max((len(s) for s in seqs), default=0) + extra
    out = torch.full((len(seqs), max(longest, 1)), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        row = ([prefix] if prefix is not None else []) + list(s) + ([suffix] if suffix is not None else [])
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(indices: Sequence[int], src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]] | None) -> Batch:
    """Build a Batch from token id lists (targets optional, for translation)."""
    src = pad_sequences(src_ids, suffix=EOS_ID)
    src_lengths = torch.tensor([len(s) + 1 for s in src_ids], dtype=torch.long)
    tgt_in = tgt_out = None
    if tgt_ids is not None:
        tgt_in = pad_sequences(tgt_ids, prefix=BOS_ID)
        tgt_out = pad_sequences(tgt_ids, suffix=EOS_ID)
    return Batch(src, src_lengths, tgt_in, tgt_out, torch.tensor(list(indices), dtype=torch.long))


class _EncodedRows(torch.utils.data.Dataset):
    """Map-style view on an encoded corpus that fetches a whole batch of rows in one Arrow read."""

    def __init__(self, ds: datasets.Dataset, with_target: bool):
        self.ds, self.with_target = ds, with_target

    def __len__(self) -> int:
        return len(self.ds)

    def __getitems__(self, indices: list[int]) -> Batch:
        rows = self.ds[indices]
        return collate(indices, rows["src_ids"], rows["tgt_ids"] if self.with_target else None)


def batch_loader(
    ds: datasets.Dataset, sampler: TokenBatchSampler, num_workers: int = 0, with_target: bool = True
) -> torch.utils.data.DataLoader:
    """A DataLoader over an encoded corpus; workers (if any) prepare batches while the model trains."""
    return torch.utils.data.DataLoader(
        _EncodedRows(ds, with_target),
        batch_sampler=sampler,
        collate_fn=lambda b: b,
        num_workers=num_workers,
        persistent_workers=False,
        # Its own generator: creating an iterator must not draw from the global RNG that dropout uses,
        # or a run resumed mid-epoch would see other dropout masks than the uninterrupted run.
        generator=torch.Generator().manual_seed(0),
    )


def lengths(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Source and target subword lengths of an encoded corpus as (N,) arrays.

    Read as Arrow columns: the numpy formatter converts row by row and takes minutes on 4.5M pairs.
    """
    cols = ds.with_format("arrow", columns=["src_len", "tgt_len"])[:]
    return cols.column("src_len").to_numpy(), cols.column("tgt_len").to_numpy()
