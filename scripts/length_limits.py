"""The Multi30k word limits that keep the same share of training pairs as Bahdanau et al.'s 30 and 50 words.

    python scripts/length_limits.py [--data-root ../shared/data]

RNNencdec-30 / RNNsearch-30 were trained on the WMT'14 En-Fr pairs of at most 30 words, the "-50" models on
those of at most 50 (Bahdanau et al. 2014, Sec. 4.2). Captions are shorter than news, so the same limits
would keep every Multi30k pair. This prints the share of WMT'14 En-Fr pairs within each limit, counted in
Moses tokens on both sides (the paper's units), and the Multi30k de-en word limit (``data.max_words``:
whitespace words of the raw text, both sides) whose share of the training pairs is closest to it.

The WMT'14 training corpora are not available offline; newstest2014 (3003 news pairs from the same
source as much of the training text) stands in for them, and the output says so.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from sacremoses import MosesTokenizer

from nmt.data.corpus import drop_empty_pairs, load_split
from nmt.data.prepare import word_counts
from nmt.paths import CONFIG_DIR

PAPER_LIMITS = (30, 50)


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def share_within(src_lens: np.ndarray, tgt_lens: np.ndarray, limit: int) -> float:
    """The fraction of pairs whose sides both have at most ``limit`` units."""
    return float(np.mean(np.maximum(src_lens, tgt_lens) <= limit))


def wmt14_shares(root: Path) -> dict[int, float]:
    """Share of newstest2014 fr-en pairs within 30 and 50 Moses tokens (both sides)."""
    counts = []
    for lang in ("en", "fr"):
        tok = MosesTokenizer(lang=lang)
        lines = read_lines(root / "wmt14" / f"newstest2014-fr-en.{lang}")
        counts.append(np.array([len(tok.tokenize(x, escape=False)) for x in lines]))
    return {limit: share_within(*counts, limit) for limit in PAPER_LIMITS}


def multi30k_word_counts(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Words of each Multi30k de-en training pair, loaded and counted by the code data.max_words filters with."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        data = compose("train", overrides=["data=multi30k_de_en", f"data.root={root}", "data.source=local"]).data
    return word_counts(drop_empty_pairs(load_split(data, data.train_split)))


def matching_limit(src_lens: np.ndarray, tgt_lens: np.ndarray, share: float) -> tuple[int, float]:
    """The word limit whose share of pairs is closest to ``share`` (the smaller limit on a tie)."""
    longest = int(np.maximum(src_lens, tgt_lens).max())
    shares = {n: share_within(src_lens, tgt_lens, n) for n in range(1, longest + 1)}
    best = min(shares, key=lambda n: (abs(shares[n] - share), n))
    return best, shares[best]


def limits(root: Path) -> dict[int, tuple[float, int, float]]:
    """paper limit -> (WMT'14 share, Multi30k word limit, Multi30k share)."""
    counts = multi30k_word_counts(root)
    return {paper: (share, *matching_limit(*counts, share)) for paper, share in wmt14_shares(root).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("NMT_DATA_ROOT", "../shared/data"))
    root = Path(parser.parse_args().data_root)
    print("WMT'14 En-Fr share: newstest2014 fr-en (3003 pairs, Moses tokens), standing in for the training data")
    print("| paper limit | WMT'14 En-Fr pairs within it | Multi30k de-en limit (data.max_words) | Multi30k pairs |")
    print("|---:|---:|---:|---:|")
    for paper, (share, words, m_share) in limits(root).items():
        print(f"| {paper} words | {share:.1%} | {words} words | {m_share:.1%} |")


if __name__ == "__main__":
    main()
