"""Inverted dropout (nmt/models/dropout.py): PyTorch's semantics with a cheaper mask."""

from __future__ import annotations

import pytest
import torch

from nmt.models.dropout import dropout, keep_mask


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


def test_each_of_the_four_elements_of_a_draw_drops_at_rate_p():
    """Four elements share one 64-bit draw; each position drops with probability p. (``random_()``'s default
    range, [0, 2^63), would never make the top 16 bits negative: one element in four would never drop.)"""
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([250_000, 4]), 0.1, torch.device("cpu"))
    assert keep.dtype == torch.bool and keep.shape == (250_000, 4)
    rates = 1 - keep.float().mean(0)
    torch.testing.assert_close(rates, torch.full((4,), 0.1), atol=0.003, rtol=0)
    odd = keep_mask(torch.Size([3, 7]), 0.5, torch.device("cpu"))  # not a multiple of four elements
    assert odd.shape == (3, 7)


def test_only_cpu_tensors_take_the_custom_mask(monkeypatch):
    """The cheaper mask is for CPUs: any other device (MPS, XPU, ...; here the meta device) goes to
    ``F.dropout`` as CUDA does."""
    calls = []
    original = torch.nn.functional.dropout

    def spy(x, p, training):
        calls.append(x.device.type)
        return original(x, p, training)

    monkeypatch.setattr(torch.nn.functional, "dropout", spy)
    y = dropout(torch.ones(8, 4, device="meta"), 0.3, training=True)
    assert y.device.type == "meta" and y.shape == (8, 4) and calls == ["meta"]
    dropout(torch.ones(8, 4), 0.3, training=True)
    assert calls == ["meta"]  # a CPU tensor takes the custom mask
