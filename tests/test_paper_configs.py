"""Every paper experiment builds at the paper's sizes and trains a couple of steps, under 2-process gloo DDP
as its documented torchrun launch does, on a tiny real slice laid out like the WMT14 files (English,
German and French sentences from Multi30k)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MULTI30K, compose_train, is_comparison, read_pairs, torchrun_many

from nmt.paths import CONFIG_DIR

EXPERIMENTS = sorted(
    p.stem
    for p in (CONFIG_DIR / "experiment").glob("*.yaml")
    if p.stem.startswith(("bahdanau2014_", "luong2015_", "vaswani2017_")) and not is_comparison(p.stem)
)


@pytest.fixture(scope="module")
def wmt_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wmt")
    folder = root / "wmt14"
    folder.mkdir()
    de, en = read_pairs("train", 24)
    fr = (MULTI30K / "train.fr").read_text(encoding="utf-8").splitlines()[:24]
    texts = {"de": de, "en": en, "fr": [s.strip() for s in fr]}
    for lang, lines in texts.items():
        (folder / f"train.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / f"newstest2013.{lang}").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    for pair in ("de-en", "fr-en"):
        for lang in pair.split("-"):
            (folder / f"newstest2014-{pair}.{lang}").write_text("\n".join(texts[lang][4:8]) + "\n", encoding="utf-8")
    return root


def test_every_paper_is_covered():
    assert {e.split("_")[0] for e in EXPERIMENTS} == {"bahdanau2014", "luong2015", "vaswani2017"}
    assert len(EXPERIMENTS) == 14


def test_paper_configs_train_a_few_steps_under_two_process_ddp(wmt_root, tmp_path):
    """At the papers' sizes, each experiment under a 2-rank gloo group: 2 steps, then rank 0 decodes the test set."""
    runs = {}
    for experiment in EXPERIMENTS:
        overrides = [
            f"experiment={experiment}",
            "data.source=local",
            f"data.root={wmt_root}",
            f"data.cache_dir={tmp_path}/cache/{experiment}",
            f"run_dir={tmp_path}/{experiment}",
            "data.tokenizer.vocab_size=300",
            "trainer.max_steps=2",
            "trainer.max_epochs=0",
            "trainer.max_minutes=0",
            "trainer.validate_every=0",
            "trainer.validate_bleu=false",
            "trainer.early_stopping.metric=loss",
            "trainer.max_tokens=200",
            "trainer.device=cpu",
            "search.max_len_b=5",
            "search.max_len_a=0.5",
        ]
        cfg = compose_train(overrides)
        assert cfg.paper.bleu > 0 and cfg.paper.table and cfg.paper.metric
        runs[experiment] = overrides
    printed = torchrun_many(runs)
    for experiment in EXPERIMENTS:
        line = next(x for x in printed.splitlines() if x.startswith(f"ok {experiment} "))
        steps, scores = line.split(" ", 3)[2:]
        assert int(steps) == 2 and json.loads(scores)["newstest2014"]["sentences"] == 4
