"""Inverted dropout (nmt/models/dropout.py): PyTorch's semantics with a cheaper mask."""

from __future__ import annotations

import pytest
import torch

from nmt.models.dropout import dropout


def test_dropout_keeps_the_expectation_and_masks_the_gradient():
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    zeros = (y == 0).float().mean().item()
    assert abs(zeros - 0.3) < 0.01 and abs(y.mean().item() - 1.0) < 0.02
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.7)]
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d y_i / d x_i is the same scaled mask
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0, training=True) is x
    assert not dropout(x, 1.0, training=True).any()
