"""The papers' parameter initialisations, applied after a model is built.

Bahdanau et al. (2014) App. B.1: recurrent matrices U, U_z, U_r random orthogonal; W_a and U_a from
N(0, 0.001^2); v_a and every bias 0; every other weight matrix (embeddings included) from N(0, 0.01^2).
Luong et al. (2015) Sec. 4.1: every parameter, embeddings included, uniform in [-0.1, 0.1].
Padding embeddings are set back to 0 afterwards (they never receive a gradient). ``model.init`` picks
the paper's scheme (the paper configs), PyTorch's defaults (the CPU RNNsearch / RNNencdec configs), or,
for Luong, ``uniform_weights``: U(-0.1, 0.1) on every weight and bias while the embeddings keep PyTorch's
N(0, 1) (the CPU Luong config: its LSTMs learn far slower on Multi30k from PyTorch's smaller default
ranges, and the embeddings slower from the paper's small ones; docs/results/luong_init).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nmt.errors import ConfigError

Scheme = Callable[[nn.Module], None]


def initialize(model: nn.Module, scheme: str, schemes: dict[str, Scheme]) -> None:
    """``model.init``: one of the architecture's ``schemes`` (name -> function), or ``pytorch`` to keep
    PyTorch's defaults."""
    if scheme != "pytorch" and scheme not in schemes:
        raise ConfigError(f"model.init={scheme!r}: use {', '.join([*schemes, 'pytorch'])}")
    if scheme != "pytorch":
        schemes[scheme](model)


def _orthogonal_gates(weight: torch.Tensor) -> None:
    """A GRU's recurrent matrix stacks one (H, H) block per gate (r, z, n): each block orthogonal."""
    hidden = weight.size(1)
    for block in weight.split(hidden, dim=0):
        nn.init.orthogonal_(block)


def _zero_padding_rows(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()


@torch.no_grad()
def bahdanau_init(model: nn.Module) -> None:
    """Bahdanau et al. (2014) App. B.1 on an RNNsearch / RNNencdec built by nmt.models.rnnsearch."""
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("bias") or name == "attention.v_a.weight":
            nn.init.zeros_(p)
        elif leaf.startswith("weight_hh"):  # GRU / GRUCell recurrent matrices
            _orthogonal_gates(p)
        elif name.startswith("attention."):  # W_a, U_a
            nn.init.normal_(p, 0.0, 0.001)
        else:
            nn.init.normal_(p, 0.0, 0.01)
    _zero_padding_rows(model)


@torch.no_grad()
def luong_init(model: nn.Module) -> None:
    """Luong et al. (2015) Sec. 4.1: every parameter uniform in [-0.1, 0.1]."""
    for p in model.parameters():
        nn.init.uniform_(p, -0.1, 0.1)
    _zero_padding_rows(model)


@torch.no_grad()
def uniform_weights_init(model: nn.Module) -> None:
    """U(-0.1, 0.1) on every parameter except the embeddings, which keep PyTorch's N(0, 1)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for p in model.parameters():
        if id(p) not in embeddings:
            nn.init.uniform_(p, -0.1, 0.1)
