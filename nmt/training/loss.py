"""Label-smoothed cross-entropy (Szegedy et al. 2016; Vaswani et al. 2017 Sec. 5.4) with a fused gradient.

loss = sum over non-pad targets of (1 - eps) * (-log p_y) + eps * mean_v(-log p_v).

Written as an autograd Function because the gradient has a closed form, softmax - smoothed one-hot,
which avoids the vocabulary-sized temporaries (zero fills, index copies, divisions) that the composed
PyTorch ops allocate in the backward pass; on a CPU this is a fifth of a small Transformer's step time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.data.tokenizer import PAD_ID


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
        """logits: (N, V) float; target: (N,). Returns summed smoothed loss and summed NLL (scalars)."""
        lprobs = torch.log_softmax(logits, dim=-1)
        mask = (target != PAD_ID).to(lprobs.dtype)
        nll = -(lprobs.gather(1, target[:, None]).squeeze(1) * mask).sum()
        smooth = -(lprobs.mean(-1) * mask).sum() if epsilon > 0 else torch.zeros_like(nll)
        ctx.save_for_backward(lprobs, target, mask)
        ctx.epsilon = epsilon
        return (1 - epsilon) * nll + epsilon * smooth, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor, None, None]:
        lprobs, target, mask = ctx.saved_tensors
        eps = ctx.epsilon
        grad = lprobs.exp_()  # softmax, in place: lprobs is not needed any more
        grad.sub_(eps / grad.size(-1))
        grad.scatter_add_(1, target[:, None], torch.full_like(mask[:, None], eps - 1))
        grad.mul_((mask * grad_loss)[:, None])
        return grad, None, None


def label_smoothed_nll(logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor, int]:
    """Summed label-smoothed loss and summed NLL over non-pad targets, and the number of those targets.

    logits: (B, T, V); target: (B, T). The NLL carries no gradient (it is for logging and perplexity).
    """
    flat = logits.float().reshape(-1, logits.size(-1))
    loss, nll = _SmoothedCrossEntropy.apply(flat, target.reshape(-1), float(epsilon))
    return loss, nll.detach(), int((target != PAD_ID).sum())
