"""The initialisation schemes of ``model.init`` and the ones the CPU configs pick."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_train
from omegaconf import OmegaConf

from nmt.errors import ConfigError
from nmt.models import build_model

UNIFORM_STD = 0.1 / math.sqrt(3)  # std of U(-0.1, 0.1)


def cpu_model(name: str, **overrides) -> dict:
    cfg = OmegaConf.to_container(compose_train([f"model={name}"]).model)
    cfg.pop("name")
    return {**cfg, "embed_dim": 48, "hidden_dim": 64, **overrides}


def test_uniform_weights_keeps_normal_embeddings():
    """uniform_weights: every weight and bias in U(-0.1, 0.1), the embeddings PyTorch's N(0, 1)."""
    torch.manual_seed(0)
    model = build_model(cpu_model("luong", init="uniform_weights"), 500, 500, False)
    for name, p in model.named_parameters():
        values = p.detach()
        if "embed" in name:
            assert abs(float(values[1:].std()) - 1) < 0.05, name  # row 0 is padding, all zeros
            assert float(values[0].abs().max()) == 0, name
        else:
            assert float(values.abs().max()) <= 0.1, name
            assert abs(float(values.std()) / UNIFORM_STD - 1) < 0.15, name


def test_the_cpu_luong_config_uses_uniform_weights():
    """PyTorch's default ranges made the CPU Luong model learn far slower on Multi30k (the learning-speed
    record, tests/learning_speed.json, guards the curve; this pins the choice)."""
    assert cpu_model("luong")["init"] == "uniform_weights"


def test_an_unknown_scheme_is_named_with_the_choices():
    with pytest.raises(ConfigError, match=r"model.init='glorot': use paper, uniform_weights, pytorch"):
        build_model(cpu_model("luong", init="glorot"), 50, 50, False)
    with pytest.raises(ConfigError, match=r"model.init='uniform_weights': use paper, pytorch"):
        build_model(cpu_model("rnnsearch", init="uniform_weights"), 50, 50, False)
