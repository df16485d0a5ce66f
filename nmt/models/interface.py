"""The one contract between models and everything that trains, searches, evaluates or translates.

A model encodes a padded source batch once, then decodes target tokens with an explicit state::

    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    logits, state, attention = model.decode(prev_tokens, memory, state)

``decode`` takes the *new* tokens after those already folded into ``state``: the full shifted target
during training (teacher forcing, one call), or one token per call during search. Every tensor inside
``memory`` and ``state`` has the batch (or beam) as dimension 0, so beam search reorders or shrinks
them with :func:`select_rows` without knowing the architecture.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """Encoder result for a batch.

    states: (B, S, H) per-position encoder states (annotations); mask: (B, S) True at real tokens.
    extra: architecture-specific batch-first tensors (e.g. the RNN encoder's final states).
    """

    states: Tensor
    mask: Tensor
    extra: dict[str, Any] = field(default_factory=dict)


def select_rows(obj: Any, index: Tensor) -> Any:
    """Index dimension 0 of every tensor inside a (nested) memory/state structure."""
    if obj is None:
        return None
    if isinstance(obj, Tensor):
        return obj.index_select(0, index)
    if isinstance(obj, dict):
        return {k: select_rows(v, index) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(select_rows(v, index) for v in obj)
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(
            obj, **{f.name: select_rows(getattr(obj, f.name), index) for f in dataclasses.fields(obj)}
        )
    return obj


class Seq2SeqModel(nn.Module, ABC):
    """Base class of every architecture; subclasses implement encode / init_state / decode."""

    pad_id: int = 0
    model_dim: int = 512  # the size the Noam schedule scales with (d_model or the RNN hidden size)
    max_positions: int | None = None  # longest target the decoder can handle, if it has a limit
    has_attention: bool = True  # False: decode's weights are a placeholder, not something to plot

    @abstractmethod
    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """src: (B, S) token ids ending in EOS, right-padded; src_lengths: (B,)."""

    @abstractmethod
    def init_state(self, memory: EncoderOutput) -> Any:
        """Decoder state before the first target token: batch-first tensors (reordered by beam search) and
        plain values such as a step counter (left as they are)."""

    @abstractmethod
    def decode(
        self, prev_tokens: Tensor, memory: EncoderOutput, state: Any, need_attention: bool = False
    ) -> tuple[Tensor, Any, Tensor | None]:
        """prev_tokens: (B, T) new target-side inputs.

        Returns logits (B, T, V), the updated state, and, if ``need_attention``, source attention
        weights (B, T, S) that are 0 on padding and sum to 1 over real source positions (to at most 1 for
        Luong's local attention).
        """

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass: logits (B, T, V) for every target position."""
        memory = self.encode(src, src_lengths)
        logits, _, attention = self.decode(tgt_in, memory, self.init_state(memory), need_attention)
        return logits, attention
