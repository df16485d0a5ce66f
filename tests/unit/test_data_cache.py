"""Caches verify themselves: a truncated or damaged sentencepiece model or encoded Arrow file is detected at
load, logged and rebuilt, never used; a good cache is reused as it is."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import read_pairs, tiny_config, write_split

from nmt.data import prepare, tokenizer
from nmt.data.cache import cached_files
from nmt.data.corpus import load_split
from nmt.data.prepare import prepare_training_data
from nmt.data.tokenizer import load_or_train_tokenizers


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def remove_manifest(path: Path) -> None:
    (path.parent / "manifest.json").unlink()


def garble_manifest(path: Path) -> None:
    (path.parent / "manifest.json").write_text('{"files": ')


# What can happen to a cache entry, and a word the warning must say about it.
DAMAGES = [
    (truncate, "truncated"),
    (flip_byte, "checksum"),
    (remove_manifest, "no manifest"),
    (garble_manifest, "unreadable"),
]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """How often a sentencepiece model was trained ("spm") and the training set encoded ("encode")."""
    counts: Counter = Counter()
    train_spm, encode = tokenizer._train_sentencepiece, prepare.encode_corpus

    def counted_train(*args, **kwargs):
        counts["spm"] += 1
        return train_spm(*args, **kwargs)

    def counted_encode(*args, **kwargs):
        counts["encode"] += kwargs.get("cache_file") is not None  # the training set, not the validation set
        return encode(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "_train_sentencepiece", counted_train)
    monkeypatch.setattr(prepare, "encode_corpus", counted_encode)
    return counts


def corpus(root: Path):
    """A data config over 200 real pairs written under ``root``, caching in ``root/cache``."""
    de, en = read_pairs("train", 200)
    for stem in ("train", "valid"):
        write_split(root / "multi30k", stem, de, en)
    return tiny_config(root, root / "cache", root / "run", "transformer").data


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_good_caches_are_reused_not_rebuilt(tmp_path, builds, caplog):
    cfg = corpus(tmp_path)
    prepare_training_data(cfg)
    assert builds == {"spm": 1, "encode": 1}
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    with caplog.at_level("INFO"):
        prepare_training_data(cfg)
    assert builds == {"spm": 1, "encode": 1} and not warnings(caplog)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()} == files


@pytest.mark.parametrize(("damage", "said"), DAMAGES)
def test_damaged_sentencepiece_model_is_rebuilt(
    tiny_root, tmp_path, builds, caplog, damage: Callable[[Path], None], said: str
):
    cfg = tiny_config(tiny_root, tmp_path, tmp_path / "run", "transformer").data
    ds = load_split(cfg, "train")
    first, _ = load_or_train_tokenizers(ds, cfg.tokenizer, tmp_path)
    (model,) = tmp_path.rglob("spm-*.model")
    original = model.read_bytes()
    damage(model)
    with caplog.at_level("WARNING"):
        again, _ = load_or_train_tokenizers(ds, cfg.tokenizer, tmp_path)
    (warning,) = warnings(caplog)
    assert model.parent.name in warning and said in warning
    assert builds["spm"] == 2 and again.model_proto == first.model_proto == model.read_bytes() == original
    assert (model.parent / "manifest.json").is_file()


@pytest.mark.parametrize(("damage", "said"), DAMAGES)
def test_damaged_encoded_training_set_is_rebuilt(tmp_path, builds, caplog, damage: Callable[[Path], None], said: str):
    cfg = corpus(tmp_path)
    first = prepare_training_data(cfg)
    expected = first.train["src_ids"][:], first.train["tgt_len"][:]
    del first  # its memory map must not see the damage
    (arrow,) = (tmp_path / "cache").rglob("train-*.arrow")
    original = arrow.read_bytes()
    damage(arrow)
    with caplog.at_level("WARNING"):
        again = prepare_training_data(cfg)
    (warning,) = warnings(caplog)
    assert arrow.parent.name in warning and said in warning
    assert builds == {"spm": 1, "encode": 2}
    assert (again.train["src_ids"][:], again.train["tgt_len"][:]) == expected
    assert arrow.read_bytes() == original  # the rebuilt entry is the same bytes as the first build


def test_sharded_training_set_is_one_entry(tmp_path, builds, caplog, monkeypatch):
    """With data.num_proc the encoded set is one Arrow file per process: one entry, verified and read in order."""
    monkeypatch.setattr(prepare, "worker_processes", lambda *args: 2)
    cfg = corpus(tmp_path)
    first = prepare_training_data(cfg)
    expected = first.src_tok.encode(read_pairs("train", 200)[0])
    del first
    shards = sorted((tmp_path / "cache").rglob("train-*.arrow"))
    assert len(shards) == 2
    flip_byte(shards[1])
    with caplog.at_level("WARNING"):
        again = prepare_training_data(cfg)
    (warning,) = warnings(caplog)
    assert shards[1].name in warning and "checksum" in warning
    assert builds["encode"] == 2 and again.train["src_ids"][:] == expected


def write(text: bytes) -> Callable[[Path], None]:
    """A build that writes one file."""
    return lambda folder: (folder / "data.bin").write_bytes(text)


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def interrupted(folder: Path) -> None:
        write(b"half")(folder)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_files(tmp_path / "entry", interrupted, "test entry")
    assert not any(tmp_path.iterdir())


def test_what_a_killed_build_left_is_never_read_and_removed(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f"entry.partial{int(gone.stdout)}.x1y2"
    left.mkdir()
    write(b"half")(left)
    (data,) = cached_files(tmp_path / "entry", write(b"whole"), "test entry")
    assert data.read_bytes() == b"whole" and not left.exists()


def test_an_entry_another_process_published_first_is_kept(tmp_path):
    """Two builders of one entry (parallel runs): each publishes a whole entry; the first stays, and the
    second builder's directory, still in use while it builds, is not taken for an abandoned one."""
    entry = tmp_path / "entry"

    def overtaken(folder: Path) -> None:
        write(b"ours")(folder)
        cached_files(entry, write(b"theirs"), "test entry")

    (data,) = cached_files(entry, overtaken, "test entry")
    assert data.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["entry"]
