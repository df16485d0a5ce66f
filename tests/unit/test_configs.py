"""Every config composes: the six primary configs, every model / data / trainer / search option, every experiment
(and every run of the comparison experiments), and each composed model section is a valid typed config."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import is_comparison
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from nmt.data.corpus import split_names
from nmt.decoding.search import SearchConfig
from nmt.experiments.compare import RunSpec, compose_runs
from nmt.experiments.kept_rows import fingerprint
from nmt.models import model_config
from nmt.paths import CONFIG_DIR


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


EXPERIMENTS = _options("experiment")
COMPARISONS = [e for e in EXPERIMENTS if is_comparison(e)]


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("train", []),
        ("evaluate", ["checkpoint=x.pt"]),
        ("translate", ["checkpoint=x.pt"]),
        ("serve", ["checkpoint=x.pt"]),
        ("export", ["checkpoint=x.pt", "output=out"]),
        ("compare", [f"experiment={COMPARISONS[0]}"]),
    ],
)
def test_primary_configs_compose_and_resolve(name, overrides):
    cfg = _compose(name, overrides)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if "search" in cfg:
        SearchConfig.from_cfg(cfg.search)


@pytest.mark.parametrize("model", _options("model"))
def test_every_model_option_is_a_typed_config(model):
    cfg = _compose("train", [f"model={model}"])
    arch, typed = model_config(cfg.model)
    assert arch == cfg.model.arch and typed is not None


@pytest.mark.parametrize("data", _options("data"))
def test_every_data_option_names_its_splits(data):
    required = ["data.root=/corpus", "data.src_lang=xx", "data.tgt_lang=yy"] if data == "custom" else []  # its ???s
    cfg = _compose("train", [f"data={data}", *required]).data
    names = split_names(cfg)
    assert cfg.train_split in names and cfg.valid_split in names
    assert all(split in names for split in cfg.test_splits)
    assert set(cfg.hub.splits) <= set(cfg.splits)  # every hub split also has a local file stem


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_every_trainer_option_composes(trainer):
    cfg = _compose("train", [f"trainer={trainer}"])
    assert cfg.trainer.loss_norm in ("tokens", "sentences")


@pytest.mark.parametrize("search", _options("search"))
@pytest.mark.parametrize("name", ["train", "evaluate", "translate", "serve"])
def test_every_search_option_composes_for_every_decoding_entry_point(search, name):
    """One search group serves nmt-train, nmt-evaluate, nmt-translate and nmt-serve; each option composes in each."""
    cfg = _compose(name, [f"search={search}"] + ([] if name == "train" else ["checkpoint=x.pt"]))
    assert set(cfg.search) == set(SearchConfig.STORED) | {"n_best"}
    stored = {"beam_size": 4, "length_penalty": 0.6, "max_len_a": 1.0, "max_len_b": 50}
    settings = SearchConfig.from_cfg(cfg.search, stored)
    if search == "checkpoint":  # every null option takes the checkpoint's value
        assert (settings.beam_size, settings.max_len_b) == (4, 50)
    else:
        assert (settings.beam_size, settings.max_len_b) == (cfg.search.beam_size, cfg.search.max_len_b)


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e not in COMPARISONS])
def test_every_experiment_composes_to_a_valid_model_and_search(experiment):
    cfg = _compose("train", [f"experiment={experiment}"])
    model_config(cfg.model)
    SearchConfig.from_cfg(cfg.search)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


# Comparisons that train one seed a row: they choose a setting on valid BLEU and claim nothing.
ONE_SEED = {"lr_grid_multi30k"}
TEST_SPLITS = ["test2016", "test2017", "test2018"]


def _composed(comparison: str) -> tuple[DictConfig, list[RunSpec]]:
    """The ``nmt-compare`` config of ``comparison`` and its runs' specs (composing them needs Hydra's context)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("compare", overrides=[f"experiment={comparison}"])
        return cfg, compose_runs(cfg)


@pytest.mark.parametrize("comparison", COMPARISONS)
def test_every_run_of_a_comparison_composes(comparison):
    """Every run of a comparison composes once per seed, into its own run directory, is tested on all three
    Multi30k test sets, and is a distinct row (no two train the same thing); at least 3 seeds a row."""
    cfg, specs = _composed(comparison)
    c = cfg.compare
    seeds = list(c.seeds)
    if comparison in ONE_SEED:  # no interval from one seed: such a comparison may claim nothing
        assert seeds == [1] and not c.paper and not c.length_claims and not c.reference
    else:
        assert len(seeds) >= 3 and len(set(seeds)) == len(seeds)
    assert [s.name for s in specs] == [f"{run}/seed{k}" for run in c.runs for k in seeds]
    assert set(c.paper) <= set(c.runs) and set(c.reference) <= set(c.runs)
    assert set(c.reference.values()) <= set(c.runs)
    for spec in specs:
        model_config(spec.cfg.model)
        assert list(spec.cfg.data.test_splits) == TEST_SPLITS, spec.name
        assert spec.cfg.trainer.seed == spec.seed
        assert spec.run_dir == Path(c.sweep_dir) / spec.run / f"seed{spec.seed}"
    assert len({fingerprint(s.cfg) for s in specs}) == len(specs)


def _model_and_warmup(spec) -> tuple[str, int]:
    return str(spec.cfg.model.name), int(spec.cfg.trainer.scheduler.warmup)


def test_the_learning_rate_grid_covers_every_model_of_the_tables():
    """Each architecture's learning rate is chosen on valid by lr_grid_multi30k: every model config a
    comparison table trains (model name, with its warm-up) is in the grid at three or more peak rates."""
    grid: dict[tuple[str, int], set[float]] = {}
    for spec in _composed("lr_grid_multi30k")[1]:
        grid.setdefault(_model_and_warmup(spec), set()).add(float(spec.cfg.trainer.optimizer.lr))
    assert all(len(rates) >= 3 for rates in grid.values()), grid
    for comparison in [c for c in COMPARISONS if c not in ONE_SEED]:
        for spec in _composed(comparison)[1]:
            key = _model_and_warmup(spec)
            assert key in grid, f"{comparison} {spec.name}: {key} is not in lr_grid_multi30k"
            assert float(spec.cfg.trainer.optimizer.lr) in grid[key], (comparison, spec.name)
