"""The typed trainer config: every trainer YAML and experiment composes into it, and an unknown, mistyped or
invalid option is a ConfigError that names it before training starts; configs saved before later options
existed still load."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml
from conftest import compose_train, is_comparison
from omegaconf import OmegaConf

from nmt.errors import ConfigError
from nmt.paths import CONFIG_DIR
from nmt.training.config import METRICS, EarlyStoppingConfig, TrainerConfig, plain_number

TRAINERS = sorted(p.stem for p in (CONFIG_DIR / "trainer").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml") if not is_comparison(p.stem))
# Options added after runs were saved, with the value that computes what their absence did.
ADDED = {
    "loss_norm": "tokens",
    "checkpoint_every": 0,
    "checkpoint_every_minutes": 0,
    "optimizer.name": "adam",
    "optimizer.rho": 0.95,
    "optimizer.momentum": 0.0,
    "scheduler.decay_start": 5,
}


def _as_dict(typed) -> dict:
    """The typed config as the YAML writes it (tuples as lists)."""
    return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(typed)))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_yaml_is_the_typed_config_with_the_same_values(trainer):
    section = compose_train([f"trainer={trainer}"]).trainer
    typed = TrainerConfig.from_cfg(section)
    assert _as_dict(typed) == OmegaConf.to_container(section)
    assert isinstance(typed.max_minutes, float) and isinstance(typed.optimizer.betas, tuple)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_has_a_valid_trainer_config(experiment):
    TrainerConfig.from_cfg(compose_train([f"experiment={experiment}"]).trainer)


def _fields(cls, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Dotted option name -> field, nested configs flattened."""
    out, hints = {}, typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        nested = dataclasses.is_dataclass(hints[f.name])
        out.update(_fields(hints[f.name], f"{prefix}{f.name}.") if nested else {prefix + f.name: f})
    return out


def _yaml_options(section: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in section.items():
        out |= _yaml_options(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_the_fields_are_the_options_of_the_default_yaml_and_only_added_ones_have_defaults():
    """configs/trainer/default.yaml holds every value; the dataclass defaults are only for old configs."""
    options = _fields(TrainerConfig)
    assert set(options) == _yaml_options(OmegaConf.to_container(compose_train(["trainer=default"]).trainer))
    with_default = {name: f.default for name, f in options.items() if f.default is not dataclasses.MISSING}
    assert with_default == ADDED


def test_an_unknown_option_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"trainer.max_step: no such option; valid options of trainer: .*max_steps"):
        TrainerConfig.from_cfg(compose_train(["+trainer.max_step=3"]).trainer)
    with pytest.raises(ConfigError, match=r"trainer.optimizer.beta: no such option; .*trainer.optimizer: betas"):
        TrainerConfig.from_cfg(compose_train(["+trainer.optimizer.beta=0.9"]).trainer)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_steps=abc", "trainer.max_steps='abc': expected a whole number"),
        ("trainer.max_tokens=40.5", "trainer.max_tokens=40.5: expected a whole number"),
        ("trainer.validate_bleu=yes", "trainer.validate_bleu='yes': expected true or false"),
        ("trainer.optimizer.lr=fast", "trainer.optimizer.lr='fast': expected a number"),
        ("trainer.optimizer.betas=[0.9]", r"trainer.optimizer.betas=\[0.9\]: expected a list of 2 values"),
        ("trainer.early_stopping=3", "trainer.early_stopping=3: expected a group of options"),
        ("trainer.device=1", "trainer.device=1: expected a string"),
    ],
)
def test_a_wrong_type_is_named(override, message):
    with pytest.raises(ConfigError, match=message):
        TrainerConfig.from_cfg(compose_train([override]).trainer)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.early_stopping.metric=accuracy"], "metric='accuracy': use bleu, loss, ppl"),
        (["trainer.loss_norm=words"], "trainer.loss_norm='words': use tokens, sentences"),
        (["trainer.optimizer.name=rmsprop"], "trainer.optimizer.name='rmsprop': use adam, adadelta, sgd"),
        (["trainer.scheduler.kind=cosine"], "trainer.scheduler.kind='cosine': use inverse_sqrt, noam"),
        (["trainer.amp=fp32"], "trainer.amp='fp32': use auto, bf16, fp16, none"),
        (["trainer.log_every=0"], "trainer.log_every=0: must be at least 1"),
        (["trainer.max_steps=-1"], "trainer.max_steps=-1: must be at least 0"),
        (["trainer.validate_bleu=false"], "needs trainer.validate_bleu=true"),  # metric: bleu
    ],
)
def test_an_invalid_value_is_refused_at_start_up(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainerConfig.from_cfg(compose_train(overrides).trainer)


def test_numbers_are_taken_in_either_form():
    typed = TrainerConfig.from_cfg(compose_train(["trainer.max_minutes=1", "trainer.max_steps=1e3"]).trainer)
    assert typed.max_minutes == 1.0 and isinstance(typed.max_minutes, float)
    assert typed.max_steps == 1000 and isinstance(typed.max_steps, int)
    assert (plain_number(1.0), plain_number(1e-6), plain_number(0.2)) == ("1", "1e-06", "0.2")


def test_metric_choices_are_the_metrics():
    assert set(typing.get_args(typing.get_type_hints(EarlyStoppingConfig)["metric"])) == set(METRICS)


def test_a_trainer_config_saved_before_later_options_still_loads():
    """A checkpoint's config is YAML (floats such as 1.0e-09 included); one written before loss_norm,
    the checkpoint cadences and the Adadelta / SGD / halving options existed gets what it trained with."""
    now = TrainerConfig.from_cfg(compose_train([]).trainer)
    saved = yaml.safe_load(OmegaConf.to_yaml(compose_train([]).trainer, resolve=True))
    assert TrainerConfig.from_cfg(saved) == now
    for option in ADDED:
        section, _, key = option.rpartition(".")
        del (saved[section] if section else saved)[key]
    old = TrainerConfig.from_cfg(saved)
    assert old == now  # the YAML's values of those options are what their absence computed
