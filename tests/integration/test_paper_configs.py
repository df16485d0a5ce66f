"""Every paper experiment builds at the paper's sizes and learns; one of each distinct model and data
pipeline trains a step under 2-process gloo DDP, as its documented torchrun launch does, on a tiny real
slice laid out like the WMT14 files (English, German and French sentences from Multi30k)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DATA_ROOT, MULTI30K, compose_train, is_comparison, read_pairs, torchrun_many
from omegaconf import OmegaConf

from nmt.data.config import DataConfig
from nmt.models import build_model
from nmt.paths import CONFIG_DIR
from nmt.training.config import TrainerConfig

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


# Under DDP, one experiment per distinct model and data pipeline: the others differ from one of these only in
# the attention score or kind (every variant trains under DDP at tiny size in test_distributed.py), in
# data.max_words (Bahdanau's -30 / -50) or in the language pair of the same WMT14 layout (Vaswani's en-de /
# en-fr); they are built at the papers' sizes and run forward and backward below.
TRAINED_UNDER_DDP = [
    "bahdanau2014_rnnencdec30",
    "bahdanau2014_rnnsearch50",
    "luong2015_base_reverse_dropout",
    "luong2015_global_location",
    "luong2015_localp_general",
    "vaswani2017_base_en_fr",
    "vaswani2017_big_en_de",
]


# What an experiment outside TRAINED_UNDER_DDP may change against one inside it: the attention variant,
# dropout, the word limit, the language pair and its data, and its name and paper numbers.
VARIANT_KEYS = (
    "name",
    "run_dir",
    "paper.",
    "model.attention.",
    "model.input_feed",
    "model.dropout",
    "data.max_len",
    "data.name",
    "data.hub.",
    "data.splits.",
    "data.src_lang",
    "data.tgt_lang",
    "data.cache_dir",
    "data.tokenizer.vocab_size",
)


def _flat(cfg: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in cfg.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_each_experiment_not_trained_under_ddp_varies_one_that_is():
    """The reason the DDP test trains only TRAINED_UNDER_DDP holds: every other experiment differs from one
    of those only in VARIANT_KEYS."""
    configs = {e: _flat(OmegaConf.to_container(compose_train([f"experiment={e}"]), resolve=True)) for e in EXPERIMENTS}
    for experiment in set(EXPERIMENTS) - set(TRAINED_UNDER_DDP):
        differences = {
            trained: sorted(
                key
                for key in configs[experiment].keys() | configs[trained].keys()
                if configs[experiment].get(key) != configs[trained].get(key) and not key.startswith(VARIANT_KEYS)
            )
            for trained in TRAINED_UNDER_DDP
        }
        assert min(map(len, differences.values())) == 0, f"{experiment} differs from each trained one: {differences}"


def _overrides(experiment: str, wmt_root: Path, tmp_path: Path) -> list[str]:
    return [
        f"experiment={experiment}",
        "data.source=local",
        f"data.root={wmt_root}",
        f"data.cache_dir={tmp_path}/cache/{experiment}",
        f"run_dir={tmp_path}/{experiment}",
        "data.tokenizer.vocab_size=300",
        "trainer.max_steps=1",
        "trainer.max_epochs=0",
        "trainer.max_minutes=0",
        "trainer.validate_every=0",
        "trainer.validate_bleu=false",
        "trainer.early_stopping.metric=loss",
        "trainer.max_tokens=200",
        "trainer.device=cpu",
        "search.beam_size=2",  # the papers' beams of 10-12 add nothing here but time
        "search.max_len_b=5",
        "search.max_len_a=0.5",
    ]


def test_paper_configs_train_a_step_under_two_process_ddp(wmt_root, tmp_path):
    """At the papers' sizes, each distinct experiment under a 2-rank gloo group: one step, then rank 0
    decodes the test set."""
    assert set(TRAINED_UNDER_DDP) <= set(EXPERIMENTS)
    runs = {}
    for experiment in TRAINED_UNDER_DDP:
        cfg = compose_train(_overrides(experiment, wmt_root, tmp_path))
        assert cfg.paper.bleu > 0 and cfg.paper.table and cfg.paper.metric
        runs[experiment] = _overrides(experiment, wmt_root, tmp_path)
    printed = torchrun_many(runs)
    for experiment in TRAINED_UNDER_DDP:
        line = next(x for x in printed.splitlines() if x.startswith(f"ok {experiment} "))
        steps, scores = line.split(" ", 3)[2:]
        assert int(steps) == 1 and json.loads(scores)["newstest2014"]["sentences"] == 4


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e not in TRAINED_UNDER_DDP])
def test_the_other_paper_configs_build_and_learn_at_the_papers_sizes(experiment, tmp_path):
    """Each remaining experiment: its config validates, its model is built at the paper's size, and one
    teacher-forced pass and backward on two short sentences gives finite gradients everywhere."""
    cfg = compose_train(_overrides(experiment, Path("unused"), tmp_path))
    assert cfg.paper.bleu > 0 and cfg.paper.table and cfg.paper.metric
    TrainerConfig.from_cfg(cfg.trainer)
    DataConfig.from_cfg(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, 300, 300, shared_vocab=bool(cfg.data.tokenizer.joint))
    assert sum(p.numel() for p in model.parameters()) > 15_000_000  # even with 300 pieces: not a CPU size
    src = torch.randint(4, 300, (2, 7))
    tgt_in = torch.randint(4, 300, (2, 5))
    logits, _ = model(src, torch.tensor([7, 5]), tgt_in)
    assert logits.shape == (2, 5, 300)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_bahdanau_table_word_limits_keep_the_papers_shares():
    """bahdanau2014_table1's "-30" / "-50" runs use the Multi30k word limits that scripts/length_limits.py
    derives from the real files: the shares of WMT'14 En-Fr pairs within 30 and 50 words, matched."""
    sys.path.insert(0, str(CONFIG_DIR.parent / "scripts"))
    import length_limits

    found = length_limits.limits(DATA_ROOT)
    assert 0.6 < found[30][0] < found[50][0] < 0.95  # the paper's limits keep most WMT pairs, not all
    runs = yaml.safe_load((CONFIG_DIR / "experiment" / "bahdanau2014_table1.yaml").read_text())["compare"]["runs"]
    for name, overrides in runs.items():
        limit = int(name[-2:])
        assert f"data.max_words={found[limit][1]}" in overrides, name
        assert abs(found[limit][2] - found[limit][0]) < 0.05  # the shares match to within 5 points
