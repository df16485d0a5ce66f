"""Attention mechanisms of the RNN models, written after the papers' equations.

Every function here returns weights that are exactly 0 on padded source positions. Global weights sum
to 1 over the real source positions; local attention follows Luong et al. (2015) Eq. 10 literally, so
its weights are the window softmax times a Gaussian and sum to at most 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NEG_INF = float("-inf")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dimension (source positions) with ``mask`` False positions set to exactly 0."""
    return scores.masked_fill(~mask, NEG_INF).softmax(-1)


def uniform_attention(mask: Tensor, steps: int) -> Tensor:
    """The weights of a model without attention, for dumps: uniform over the real source positions.

    mask: (B, S) True at real tokens -> (B, steps, S) rows of 1 / |x| (0 on padding).
    """
    weights = mask.float()[:, None, :].expand(-1, steps, -1)
    return weights / weights.sum(-1, keepdim=True)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2014) Eq. 6 / Appendix A.1.2: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j).

    Also Luong et al. (2015)'s ``concat`` score v_a^T tanh(W_a [h_t; h_s]), which is the same form with
    W_a split into a query and a key block.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.W_a = nn.Linear(query_dim, attn_dim, bias=False)
        self.U_a = nn.Linear(key_dim, attn_dim)
        self.v_a = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """U_a h_j for all j, computed once per sentence: (B, S, K) -> (B, S, A)."""
        return self.U_a(keys)

    def scores(self, query: Tensor, proj_keys: Tensor) -> Tensor:
        """query: (B, T, Q); proj_keys: (B, S, A) -> e: (B, T, S)."""
        return self.v_a(torch.tanh(self.W_a(query)[:, :, None, :] + proj_keys[:, None, :, :])).squeeze(-1)

    def forward(self, query: Tensor, proj_keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query: (B, Q) = s_{i-1}; values: (B, S, V) = h_j; mask: (B, S).

        Returns context c_i = sum_j alpha_ij h_j (B, V) and alpha_i (B, S) (Eq. 5-6).
        """
        alpha = masked_softmax(self.scores(query[:, None], proj_keys), mask[:, None])  # (B, 1, S)
        return (alpha @ values).squeeze(1), alpha.squeeze(1)


class LuongAttention(nn.Module):
    """Luong et al. (2015) Sec. 3: global or local attention from the current top decoder state h_t.

    Scores (Eq. 8 and the location score):
      dot:      h_t^T h_s
      general:  h_t^T W_a h_s
      concat:   v_a^T tanh(W_a [h_t; h_s])
      location: a_t = softmax(W_a h_t) (depends on h_t only; one weight per source position up to
                ``max_src_len``, longer sources cannot be attended past it)
    Kinds (Sec. 3.1-3.2):
      global:   a_t = softmax(score) over all source positions (Eq. 7)
      local_m:  window [p_t - D, p_t + D] with p_t = t (monotonic alignment)
      local_p:  p_t = S * sigmoid(v_p^T tanh(W_p h_t)) (Eq. 9) and
                a_t(s) = softmax_window(score)(s) * exp(-(s - p_t)^2 / (2 sigma^2)), sigma = D / 2 (Eq. 10)
    """

    SCORES = ("dot", "general", "concat", "location")
    KINDS = ("global", "local_m", "local_p")

    def __init__(self, hidden: int, score: str, kind: str, window: int, max_src_len: int):
        super().__init__()
        if score not in self.SCORES or kind not in self.KINDS:
            raise ValueError(f"attention score {score!r} / kind {kind!r}: scores {self.SCORES}, kinds {self.KINDS}")
        self.score_name, self.kind, self.D, self.max_src_len = score, kind, window, max_src_len
        if score == "general":
            self.W_a = nn.Linear(hidden, hidden, bias=False)
        elif score == "concat":
            self.concat = AdditiveAttention(hidden, hidden, hidden)
        elif score == "location":
            self.W_loc = nn.Linear(hidden, max_src_len)
        if kind == "local_p":
            self.W_p = nn.Linear(hidden, hidden, bias=False)
            self.v_p = nn.Linear(hidden, 1, bias=False)

    def project_keys(self, states: Tensor) -> Tensor:
        """Per-sentence precomputation on the encoder states h_s (B, S, H)."""
        if self.score_name == "general":
            return self.W_a(states)
        if self.score_name == "concat":
            return self.concat.project_keys(states)
        return states

    def _scores(self, h_t: Tensor, keys: Tensor) -> Tensor:
        """h_t: (B, T, H); keys from project_keys -> (B, T, S)."""
        if self.score_name in ("dot", "general"):
            return h_t @ keys.transpose(1, 2)
        if self.score_name == "concat":
            return self.concat.scores(h_t, keys)
        s = keys.size(1)
        loc = self.W_loc(h_t)[..., :s]  # (B, T, min(S, max_src_len))
        if s > loc.size(-1):
            loc = torch.cat([loc, loc.new_full((*loc.shape[:2], s - loc.size(-1)), NEG_INF)], dim=-1)
        return loc

    def aligned_position(self, h_t: Tensor, src_lengths: Tensor, steps: Tensor) -> Tensor:
        """p_t (B, T): t for local_m (clipped to the source), S * sigmoid(v_p^T tanh(W_p h_t)) for local_p."""
        if self.kind == "local_m":
            return torch.minimum(steps[None, :].float(), (src_lengths[:, None] - 1).float()).expand(h_t.size(0), -1)
        return src_lengths[:, None].float() * torch.sigmoid(self.v_p(torch.tanh(self.W_p(h_t)))).squeeze(-1)

    def weights(
        self, h_t: Tensor, keys: Tensor, mask: Tensor, src_lengths: Tensor, steps: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Attention weights a_t (B, T, S) and, for local kinds, the aligned positions p_t (B, T)."""
        scores = self._scores(h_t, keys)
        mask = mask[:, None, :]  # (B, 1, S)
        if self.kind == "global":
            return masked_softmax(scores, mask), None
        p_t = self.aligned_position(h_t, src_lengths, steps)  # (B, T)
        pos = torch.arange(keys.size(1), device=keys.device, dtype=torch.float)[None, None, :]
        dist = pos - p_t[..., None]  # (B, T, S)
        window = mask & (dist.abs() <= self.D)
        sigma = self.D / 2
        gauss = torch.exp(-(dist**2) / (2 * sigma**2))
        return masked_softmax(scores, window) * gauss, p_t

    def forward(
        self, h_t: Tensor, keys: Tensor, values: Tensor, mask: Tensor, src_lengths: Tensor, steps: Tensor
    ) -> tuple[Tensor, Tensor]:
        """h_t: (B, T, H); values h_s: (B, S, H); steps: (T,) target positions.

        Returns context c_t = sum_s a_t(s) h_s (B, T, H) and a_t (B, T, S).
        """
        a_t, _ = self.weights(h_t, keys, mask, src_lengths, steps)
        return a_t @ values, a_t
