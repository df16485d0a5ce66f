"""The label-smoothed loss (nmt/loss.py): value and fused gradient against PyTorch's own."""

from __future__ import annotations

import torch

from nmt.training.loss import label_smoothed_nll


def test_label_smoothed_loss_matches_pytorch():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    target = torch.randint(1, 11, (2, 5))
    target[0, 3:] = 0
    loss, nll, n = label_smoothed_nll(logits, target, 0.1)
    ref = torch.nn.functional.cross_entropy(
        logits.view(-1, 11), target.view(-1), ignore_index=0, label_smoothing=0.1, reduction="sum"
    )
    torch.testing.assert_close(loss, ref)
    assert n == 8
    (g,), (g_ref,) = torch.autograd.grad(loss, logits), torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g, g_ref)
