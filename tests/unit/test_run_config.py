"""Which config differences make two runs different: resume (nmt-train) and reuse (nmt-compare) decide by it."""

from __future__ import annotations

import copy

from conftest import compose_train
from omegaconf import OmegaConf

from nmt.training.run_config import comparable_config, computed_settings


def _config(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_train(["model=transformer_small", *overrides]), resolve=True)


def test_machine_and_runtime_options_do_not_make_runs_differ():
    here = _config()
    there = _config("data.root=/elsewhere", "data.num_proc=4", "trainer.threads=1", "trainer.device=cpu")
    assert computed_settings(here) == computed_settings(there)
    assert computed_settings(here) != computed_settings(_config("trainer.max_steps=7"))
    assert comparable_config(here) != comparable_config(_config("model.d_model=128"))


def test_options_added_later_match_runs_saved_before_them_at_their_old_meaning():
    """A run saved before data.max_words, model.positions or model.key_dim existed is still the same run
    under today's config (it resumes and nmt-compare reuses it); setting one of them makes it another."""
    now = _config()
    saved = copy.deepcopy(now)
    for section, key in (("data", "max_words"), ("model", "positions"), ("model", "key_dim")):  # a Transformer
        del saved[section][key]
    assert computed_settings(saved) == computed_settings(now)
    assert comparable_config(saved) == comparable_config(now)
    for override in ("data.max_words=12", "model.positions=learned", "model.key_dim=16"):
        assert comparable_config(saved) != comparable_config(_config(override)), override
