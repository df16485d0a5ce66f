"""Corpus loading (local files and the hub schema), tokenizer caching, batching and bad data files."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import read_pairs, tiny_config, write_split
from omegaconf import OmegaConf

from nmt.data.batching import TokenBatchSampler, collate, lengths
from nmt.data.corpus import load_split
from nmt.data.pretokenize import MosesPretokenizer
from nmt.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    load_or_train_tokenizers,
    moses_languages,
    shared_vocabulary,
)
from nmt.errors import DataError


def data_cfg(root: Path, **changes):
    cfg = tiny_config(root, root / "cache", root / "run", "transformer").data
    for k, v in changes.items():
        OmegaConf.update(cfg, k, v, merge=False)
    return cfg


def test_local_split_keeps_every_line_in_order(tiny_root):
    ds = load_split(data_cfg(tiny_root), "test2016")
    de, en = read_pairs("train", 64)
    assert ds["src"] == de and ds["tgt"] == en


@pytest.mark.parametrize("schema", ["translation", "columns"])
def test_hub_schema_loads_like_local(tiny_root, tmp_path, schema):
    """A folder in hub layout (parquet shards per split) goes through the same datasets.load_dataset call
    that fetches ``bentrevett/multi30k`` or ``wmt14`` from the hub."""
    de, en = read_pairs("train", 64)
    rows = (
        {"translation": [{"de": d, "en": e} for d, e in zip(de, en)]}
        if schema == "translation"
        else {"de": de, "en": en}
    )
    (tmp_path / "data").mkdir()
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    cfg = data_cfg(tiny_root, source="hub", **{"hub.path": str(tmp_path)})
    hub = load_split(cfg, "test2016")
    local = load_split(data_cfg(tiny_root), "test2016")
    assert hub["src"] == local["src"] and hub["tgt"] == local["tgt"]


def _hub_folder(folder: Path, de: list[str], en: list[str]) -> Path:
    """A local folder in hub layout (one parquet shard per split, bentrevett/multi30k's columns)."""
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict({"de": de, "en": en}).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet")
        )
    return folder


def test_auto_source_prefers_local_files_and_falls_back_to_the_hub(tiny_root, tmp_path, caplog):
    de, en = read_pairs("train", 8, start=100)
    hub = _hub_folder(tmp_path / "hub", de, en)
    with caplog.at_level("INFO"):
        local = load_split(data_cfg(tiny_root, source="auto", **{"hub.path": str(hub)}), "test2016")
        assert local["src"] == read_pairs("train", 64)[0]
        assert "split 'test2016' of multi30k_de_en from " + str(tiny_root / "multi30k") in caplog.text
        fallback = load_split(data_cfg(tmp_path / "empty", source="auto", **{"hub.path": str(hub)}), "test2016")
        assert fallback["src"] == de and fallback["tgt"] == en
        assert f"split 'test2016' of multi30k_de_en from hub dataset {hub}" in caplog.text


def test_auto_source_with_neither_names_both_ways(tmp_path):
    cfg = data_cfg(tmp_path, source="auto", **{"hub.path": str(tmp_path / "no-such-dataset")})
    with pytest.raises(DataError) as e:
        load_split(cfg, "train")
    message = str(e.value)
    assert "could not load split 'train' of the hub dataset" in message
    assert f"no local files either ({tmp_path / 'multi30k' / 'train.de'}" in message
    assert "NMT_DATA_ROOT" in message


@pytest.mark.parametrize("cached", [False, True])
def test_byte_order_mark_is_not_part_of_the_first_line(tmp_path, cached):
    write_split(tmp_path / "multi30k", "train", ["\ufeffEin Hund.", "\ufeffZwei"], ["\ufeffA dog.", "Two"])
    ds = load_split(data_cfg(tmp_path), "train", tmp_path / "cache" if cached else None)
    assert ds["src"] == ["Ein Hund.", "\ufeffZwei"] and ds["tgt"] == ["A dog.", "Two"]


def test_unknown_split_names_choices(tiny_root):
    with pytest.raises(DataError, match="no split 'test2099'.*test2016"):
        load_split(data_cfg(tiny_root), "test2099")


@pytest.mark.parametrize("cached", [False, True])
def test_line_count_mismatch_names_both_files(tmp_path, cached):
    write_split(tmp_path / "multi30k", "train", ["a", "b", "c"], ["x", "y"])
    with pytest.raises(DataError, match=r"train\.de has 3 lines but .*train\.en has 2"):
        load_split(data_cfg(tmp_path), "train", tmp_path / "cache" if cached else None)


@pytest.mark.parametrize("cached", [False, True])
def test_non_utf8_names_file_and_line(tmp_path, cached):
    write_split(tmp_path / "multi30k", "train", ["a", "b", "c"], ["x", "y", "z"])
    (tmp_path / "multi30k" / "train.de").write_bytes(b"a\nb\xe4c\nc\n")
    with pytest.raises(DataError, match=r"train\.de:2: not valid UTF-8"):
        load_split(data_cfg(tmp_path), "train", tmp_path / "cache" if cached else None)


@pytest.mark.parametrize("cached", [False, True])
def test_missing_files_say_where_data_is_looked_for(tmp_path, cached):
    with pytest.raises(DataError, match=r"data file not found: .*multi30k/train\.de.*NMT_DATA_ROOT.*source=auto"):
        load_split(data_cfg(tmp_path, source="local"), "train", tmp_path / "cache" if cached else None)


def test_tokenizer_is_trained_once_and_reused(tiny_root, tmp_path):
    cfg = data_cfg(tiny_root)
    ds = load_split(cfg, "train")
    src, tgt = load_or_train_tokenizers(ds, cfg.tokenizer, tmp_path)
    assert src is tgt  # joint vocabulary
    files = list(tmp_path.rglob("spm-*.model"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again, _ = load_or_train_tokenizers(ds, cfg.tokenizer, tmp_path)
    assert again.digest == src.digest and files[0].stat().st_mtime_ns == mtime
    assert (src.pad_id, src.unk_id, src.bos_id, src.eos_id) == (0, 1, 2, 3)
    assert src.decode(src.encode([ds["src"][0]])[0]) == ds["src"][0]


def _sampler(n=500, **kw):
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 60, n), rng.integers(1, 60, n)
    return src, tgt, TokenBatchSampler(src, tgt, max_tokens=kw.pop("max_tokens", 400), **kw)


def test_sampler_covers_each_example_once_within_budget():
    src, tgt, sampler = _sampler(shuffle=True, seed=3)
    batches = sampler.epoch_batches(0)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(src)))
    for b in batches:
        assert len(b) * max((src[b] + 1).max(), (tgt[b] + 1).max()) <= 400
    assert [b.tolist() for b in sampler.epoch_batches(0)] == [b.tolist() for b in batches]
    _, _, other = _sampler(shuffle=True, seed=3)
    assert [b.tolist() for b in other.epoch_batches(1)] != [b.tolist() for b in batches]


def test_sampler_resume_skips_consumed_batches_and_shards():
    _, _, sampler = _sampler(shuffle=True, seed=3)
    full = list(sampler)
    sampler.set_epoch(0, start=5)
    assert list(sampler) == full[5:]
    shards = [list(_sampler(shuffle=True, seed=3, rank=r, world_size=2)[2]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(full) // 2
    assert not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))


def test_sorted_sampler_for_decoding_keeps_everything():
    src, _, sampler = _sampler(shuffle=False)
    flat = np.concatenate(sampler.epoch_batches(0))
    assert sorted(flat.tolist()) == list(range(len(src)))
    assert np.all(np.diff(src[flat]) >= 0)


def test_collate_adds_specials_and_pads():
    b = collate([7, 9], [[5, 6, 7], [8]], [[10], [11, 12]])
    assert b.src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert b.src_lengths.tolist() == [4, 2]
    assert b.tgt_in.tolist() == [[BOS_ID, 10, PAD_ID], [BOS_ID, 11, 12]]
    assert b.tgt_out.tolist() == [[10, EOS_ID, PAD_ID], [11, 12, EOS_ID]]
    assert b.ntokens == 5 and b.indices.tolist() == [7, 9]


def test_empty_and_whitespace_training_pairs_are_dropped_and_counted(tmp_path, caplog):
    from nmt.data.prepare import prepare_training_data

    de, en = read_pairs("train", 20)
    de[3], en[7], de[9], en[9] = "", "   \t", " ", ""
    for stem in ("train", "valid"):
        write_split(tmp_path / "multi30k", stem, de, en)
    cfg = data_cfg(tmp_path)
    caplog.set_level("INFO")
    data = prepare_training_data(cfg)
    assert len(data.train) == len(data.train_rows) == 17
    assert "dropped 3 training pairs with an empty or whitespace-only side" in caplog.text
    assert len(data.valid.sources) == 20  # evaluation data keeps every line


def test_training_corpus_is_cached_as_arrow_ids_only_and_reused(tmp_path):
    """The training text is streamed into Arrow once; later starts map the cached files and re-encode nothing."""
    from nmt.data.prepare import prepare_training_data

    de, en = read_pairs("train", 200)
    for stem in ("train", "valid"):
        write_split(tmp_path / "multi30k", stem, de, en)
    cfg = data_cfg(tmp_path)
    first = prepare_training_data(cfg)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.arrow")}
    again = prepare_training_data(cfg)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.arrow")} == files
    cache = str(tmp_path / "cache")
    assert again.train.cache_files and all(f["filename"].startswith(cache) for f in again.train.cache_files)
    assert set(again.train.column_names) == {"src_ids", "tgt_ids", "src_len", "tgt_len"}  # no text kept
    assert again.train["src_ids"][:] == first.train["src_ids"][:] == first.src_tok.encode(de)


def test_multiprocess_encoding_equals_in_process(tiny_root, tmp_path):
    from nmt.data.batching import encode_corpus
    from nmt.data.prepare import worker_processes

    ds = load_split(data_cfg(tiny_root), "train")
    tok, _ = load_or_train_tokenizers(ds, data_cfg(tiny_root).tokenizer, tmp_path)
    one = encode_corpus(ds, tok, tok)
    two = encode_corpus(ds, tok, tok, cache_file=tmp_path / "enc.arrow", keep_text=False, num_proc=2)
    assert two["src_ids"][:] == one["src_ids"][:] and two["tgt_len"][:] == one["tgt_len"][:]
    assert worker_processes(data_cfg(tiny_root), 64) is None  # small corpora: no worker start-up cost
    assert worker_processes(data_cfg(tiny_root, num_proc=3), 4_500_000) == 3


def test_long_pairs_are_left_out_of_training_batches_without_filtering_the_dataset(tmp_path, caplog):
    """Pairs over data.max_len never reach a batch, and the training set stays a plain memory-mapped table:
    a datasets filter would add an indices mapping through which reading the length columns of 4.5M pairs
    took 9 minutes at every start."""
    from nmt.data.prepare import prepare_training_data

    de, en = read_pairs("train", 60)
    de[5], en[11] = " ".join(["Hund"] * 50), " ".join(["dog"] * 40)
    for stem in ("train", "valid"):
        write_split(tmp_path / "multi30k", stem, de, en)
    caplog.set_level("INFO")
    data = prepare_training_data(data_cfg(tmp_path, max_len=30))
    assert data.train._indices is None and len(data.train) == 60
    src_lens, tgt_lens = lengths(data.train)
    assert src_lens.tolist() == [len(x) for x in data.train["src_ids"]]
    assert tgt_lens.tolist() == [len(x) for x in data.train["tgt_ids"]]
    long = {i for i in range(60) if max(src_lens[i], tgt_lens[i]) > 30}
    assert {5, 11} <= long and sorted(data.train_rows.tolist()) == sorted(set(range(60)) - long)
    assert f"dropped {len(long)} training pairs longer than 30 subwords" in caplog.text
    sampler = TokenBatchSampler(src_lens, tgt_lens, 200, shuffle=True, seed=3, rows=data.train_rows)
    seen = np.concatenate(sampler.epoch_batches(0))
    assert sorted(seen.tolist()) == data.train_rows.tolist()
    for b in sampler.epoch_batches(0):  # the token budget holds for the real lengths of the rows
        assert len(b) * (max(src_lens[b].max(), tgt_lens[b].max()) + 1) <= 200 or len(b) == 1


def test_word_limit_keeps_pairs_of_at_most_max_words_on_both_sides(tmp_path, caplog):
    """data.max_words counts the raw text's words (the papers' "-30" / "-50" units), on both sides."""
    from nmt.data.prepare import prepare_training_data

    de, en = read_pairs("train", 60)
    for stem in ("train", "valid"):
        write_split(tmp_path / "multi30k", stem, de, en)
    caplog.set_level("INFO")
    data = prepare_training_data(data_cfg(tmp_path, max_words=12))
    kept = [i for i in range(60) if len(de[i].split()) <= 12 and len(en[i].split()) <= 12]
    assert 0 < len(kept) < 60 and data.train_rows.tolist() == kept
    assert f"dropped {60 - len(kept)} training pairs longer than 12 words" in caplog.text
    assert len(prepare_training_data(data_cfg(tmp_path, max_words=None)).train_rows) == 60


def test_lengths_follow_an_indices_mapping():
    ds = datasets.Dataset.from_dict({"src_len": [3, 1, 4, 1, 5], "tgt_len": [9, 2, 6, 5, 3]})
    src, tgt = lengths(ds.select([4, 0, 2]))
    assert src.tolist() == [5, 3, 4] and tgt.tolist() == [3, 9, 6]


def test_moses_pretokenization_on_real_lines(tiny_root, tmp_path):
    """Word-level set-ups (the RNN papers): Moses tokens before a word vocabulary, so 'Haus,' is 'Haus' ','
    and max_len counts words; output is detokenized back to plain text for sacreBLEU."""
    de, en = read_pairs("train", 64)
    moses = MosesPretokenizer("de")
    assert moses.tokenize("Zwei junge, weiße Männer sind im Freien.") == "Zwei junge , weiße Männer sind im Freien ."
    assert sum(moses.detokenize(moses.tokenize(s)) == s for s in de) >= 60  # the round trip keeps real text
    words = {"tokenizer.model_type": "word", "tokenizer.pretokenize": "moses", "tokenizer.vocab_size": 2000}
    cfg = data_cfg(tiny_root, **words)  # every word of the 64 pairs in the vocabulary
    src, tgt = load_or_train_tokenizers(load_split(cfg, "train"), cfg.tokenizer, tmp_path, moses=moses_languages(cfg))
    assert (src.moses_lang, tgt.moses_lang) == ("de", "en") and shared_vocabulary(src, tgt)
    pieces = set(src.pieces(range(len(src))))
    assert "▁Männer" in pieces and not any(p.endswith((",", ".")) and len(p) > 2 for p in pieces)
    ids = src.encode(de)
    assert [len(i) for i in ids] == [len(moses.tokenize(s).split()) for s in de]  # one id per Moses token
    assert sum(src.decode(i) == s for i, s in zip(ids, de)) >= 60
    plain, _ = load_or_train_tokenizers(load_split(cfg, "train"), cfg.tokenizer, tmp_path)
    assert plain.digest != src.digest  # cached apart: trained on other text
    small = data_cfg(tiny_root, **{**words, "tokenizer.vocab_size": 300})  # a shortlist: the rest is UNK
    short, _ = load_or_train_tokenizers(load_split(small, "train"), small.tokenizer, tmp_path, moses=("de", "en"))
    ids = short.encode(de)
    assert [len(i) for i in ids] == [len(moses.tokenize(s).split()) for s in de]  # one UNK per unknown word
    assert sum(i.count(UNK_ID) for i in ids) > 50
