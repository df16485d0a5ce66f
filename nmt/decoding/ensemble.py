"""Several trained models decoding as one: the average of their log-probabilities at every step.

Luong et al. (2015)'s best row is an ensemble of 8 models, Vaswani et al. (2017) and fairseq ensemble
checkpoints the same way. The ensemble is itself a :class:`Seq2SeqModel`, so greedy and beam search,
the Translator and every entry point use it unchanged: its memory and state hold one member's each,
which ``select_rows`` reorders like any other. Members must share the vocabularies (checked where the
checkpoints are loaded, :meth:`nmt.decoding.translator.Translator.from_checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nmt.models.interface import EncoderOutput, Seq2SeqModel


@dataclass
class EnsembleMemory(EncoderOutput):
    """The first member's states and mask (what the interface promises) and every member's own memory."""

    members: tuple[EncoderOutput, ...]  # one encoder output per model, each batch-first


@dataclass
class EnsembleState:
    members: tuple[Any, ...]  # one decoder state per model


class Ensemble(Seq2SeqModel[EnsembleMemory, EnsembleState]):
    """Decodes with log p(y_t) = mean_m log p_m(y_t), renormalised by the search's log-softmax."""

    def __init__(self, models: list[Seq2SeqModel]):
        super().__init__()
        self.models = nn.ModuleList(models)
        limits = [m.max_positions for m in models if m.max_positions]
        self.max_positions = min(limits) if limits else None
        self.has_attention = any(m.has_attention for m in models)

    @property
    def model_dim(self) -> int:
        return self.models[0].model_dim

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleMemory:
        members = tuple(m.encode(src, src_lengths) for m in self.models)
        return EnsembleMemory(members[0].states, members[0].mask, members)

    def init_state(self, memory: EnsembleMemory) -> EnsembleState:
        return EnsembleState(tuple(m.init_state(mem) for m, mem in zip(self.models, memory.members)))

    def decode(
        self, prev_tokens: Tensor, memory: EnsembleMemory, state: EnsembleState, need_attention: bool = False
    ) -> tuple[Tensor, EnsembleState, Tensor | None]:
        """Returns the members' mean log-probabilities (B, T, V) as logits, and the mean attention (B, T, S)
        of the members that attend (a member without attention has nothing to add to it)."""
        logps, states, weights = [], [], []
        for model, mem, st in zip(self.models, memory.members, state.members):
            logits, st, att = model.decode(prev_tokens, mem, st, need_attention)
            logps.append(torch.log_softmax(logits.float(), dim=-1))
            states.append(st)
            if att is not None and model.has_attention:
                weights.append(att.float())
        attention = torch.stack(weights).mean(0) if weights else (att if need_attention else None)
        return torch.stack(logps).mean(0), EnsembleState(tuple(states)), attention
