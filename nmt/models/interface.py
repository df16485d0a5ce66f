"""The one contract between models and everything that trains, searches, evaluates or translates.

A model encodes a padded source batch once, then decodes target tokens with an explicit state::

    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    logits, state, attention = model.decode(prev_tokens, memory, state)

``decode`` takes the *new* tokens after those already folded into ``state``: the full shifted target
during training (teacher forcing, one call), or one token per call during search. Each architecture
types its own ``memory`` (a subclass of :class:`EncoderOutput`) and ``state`` (a dataclass). Every
tensor inside them, also inside lists and tuples, has the batch (or beam) as dimension 0, so beam search
reorders or shrinks them with :func:`select_rows` without knowing the architecture; plain values such as
the decoder's step counter are the same for every row, and select_rows leaves them as they are.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """Encoder result for a batch; architectures subclass it with what their decoder reads."""

    states: Tensor  # (B, S, H) per-position encoder states (annotations)
    mask: Tensor  # (B, S) True at real source tokens


MemoryT = TypeVar("MemoryT", bound=EncoderOutput)  # an architecture's encoder output
StateT = TypeVar("StateT")  # an architecture's decoder state (a dataclass)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class: beam search rebuilds the memory and state at
    every step, and ``dataclasses.fields`` / ``replace`` on each call cost more than the traversal itself."""
    return tuple(f.name for f in dataclasses.fields(cls))


def select_rows(obj: Any, index: Tensor) -> Any:
    """Index dimension 0 of every tensor inside a (nested) memory/state structure; other values stay as
    they are. A dataclass is rebuilt through its constructor (every field must be an ``__init__`` argument),
    unless it has a ``select_rows(index)`` method of its own (the Transformer's self-attention cache, which
    defers the copy to its next extension)."""
    if obj is None:
        return None
    if isinstance(obj, Tensor):
        return obj.index_select(0, index)
    if isinstance(obj, dict):
        return {k: select_rows(v, index) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(select_rows(v, index) for v in obj)
    if dataclasses.is_dataclass(obj):
        if hasattr(obj, "select_rows"):
            return obj.select_rows(index)
        return type(obj)(**{name: select_rows(getattr(obj, name), index) for name in _field_names(type(obj))})
    return obj


class Seq2SeqModel(nn.Module, ABC, Generic[MemoryT, StateT]):
    """Base class of every architecture; subclasses implement model_dim / encode / init_state / decode."""

    pad_id: int = 0
    max_positions: int | None = None  # longest target the decoder can handle, if it has a limit
    has_attention: bool = True  # False: decode's weights are a placeholder, not something to plot
    # True: decode accepts a memory of n rows for n * g decoder rows, memory row i serving rows i * g to
    # i * g + g - 1 (beam search then keeps one memory row per sentence instead of one per beam)
    shares_memory_rows: bool = False

    @property
    @abstractmethod
    def model_dim(self) -> int:
        """The size the Noam schedule scales with (d_model or the RNN hidden size); no default, so that a
        new model cannot silently train with another model's learning rate."""

    @abstractmethod
    def encode(self, src: Tensor, src_lengths: Tensor) -> MemoryT:
        """src: (B, S) token ids ending in EOS, right-padded; src_lengths: (B,)."""

    @abstractmethod
    def init_state(self, memory: MemoryT) -> StateT:
        """Decoder state before the first target token: batch-first tensors (reordered by beam search) and
        plain values such as a step counter (left as they are)."""

    @abstractmethod
    def decode(
        self, prev_tokens: Tensor, memory: MemoryT, state: StateT, need_attention: bool = False
    ) -> tuple[Tensor, StateT, Tensor | None]:
        """prev_tokens: (B, T) new target-side inputs; ``memory`` has B rows, or B / g where the model
        ``shares_memory_rows``.

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
