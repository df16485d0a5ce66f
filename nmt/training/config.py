"""The ``trainer`` config group as typed dataclasses, checked when ``nmt-train`` starts.

The values live in configs/trainer/*.yaml (and the experiments' overrides), not here: a field without a
default must be set there. The few defaults are for options added after runs were saved (see
nmt.typed_config), at the value that computes what their absence did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

from nmt.errors import ConfigError
from nmt.typed_config import build, check_at_least, section_values


class Metric(NamedTuple):
    """A validation metric: the validation record's field that holds it, and which way is better."""

    key: str
    higher_is_better: bool


# trainer.early_stopping.metric -> how to read and compare it; selects best.pt and drives patience.
METRICS: dict[str, Metric] = {
    "bleu": Metric("valid_bleu", higher_is_better=True),
    "loss": Metric("valid_loss", higher_is_better=False),
    "ppl": Metric("valid_ppl", higher_is_better=False),
}


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float  # peak LR for inverse_sqrt / constant, start LR for halving (ignored by noam)
    betas: tuple[float, float]  # adam
    eps: float  # adam / adadelta
    weight_decay: float
    # Added with Adadelta and SGD; runs saved before them used Adam.
    name: Literal["adam", "adadelta", "sgd"] = "adam"
    rho: float = 0.95  # adadelta
    momentum: float = 0.0  # sgd


@dataclass(frozen=True)
class SchedulerConfig:
    kind: Literal["inverse_sqrt", "noam", "constant", "halving"]
    warmup: int  # steps (inverse_sqrt, noam, constant)
    factor: float  # noam
    decay_start: int = 5  # halving; added with it (no run saved before used it)

    def __post_init__(self) -> None:
        check_at_least(self, "trainer.scheduler", 0, "warmup", "decay_start")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    metric: Literal["bleu", "loss", "ppl"]  # the keys of METRICS
    patience: int  # validations without improvement; 0 = never stop early

    def __post_init__(self) -> None:
        check_at_least(self, "trainer.early_stopping", 0, "patience")


@dataclass(frozen=True)
class TrainerConfig:
    """The training loop's options; configs/trainer/default.yaml documents each."""

    max_tokens: int
    max_sentences: int | None  # sentences of one update over all ranks and accumulation steps; null/0: no cap
    accumulate: int
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    clip_norm: float  # 0 disables clipping
    label_smoothing: float
    max_steps: int  # stop conditions; 0 = no limit
    max_epochs: int
    max_minutes: float
    validate_every: int
    validate_bleu: bool
    valid_beam: int
    eval_max_tokens: int
    early_stopping: EarlyStoppingConfig
    keep_last: int
    log_every: int
    max_bad_steps: int
    seed: int
    device: str  # auto | cpu | cuda | cuda:1
    amp: Literal["auto", "bf16", "fp16", "none"]
    threads: int
    num_workers: int
    # Added after the first runs were saved, at the values those runs trained with.
    loss_norm: Literal["tokens", "sentences"] = "tokens"
    checkpoint_every: int = 0
    checkpoint_every_minutes: float = 0.0

    SECTION: ClassVar[str] = "trainer"

    def __post_init__(self) -> None:
        positive = ("max_tokens", "accumulate", "valid_beam", "eval_max_tokens", "keep_last", "log_every")
        check_at_least(self, self.SECTION, 1, *positive, "max_bad_steps")
        check_at_least(
            self,
            self.SECTION,
            0,
            "max_sentences",
            "clip_norm",
            "label_smoothing",
            "max_steps",
            "max_epochs",
            "max_minutes",
            "validate_every",
            "threads",
            "num_workers",
            "checkpoint_every",
            "checkpoint_every_minutes",
        )
        if self.early_stopping.metric == "bleu" and not self.validate_bleu:
            raise ConfigError(
                "trainer.early_stopping.metric=bleu needs trainer.validate_bleu=true (or choose metric=loss)"
            )

    @classmethod
    def from_cfg(cls, section: Mapping[str, Any]) -> TrainerConfig:
        """The typed ``trainer`` section (a Hydra DictConfig or a checkpoint's saved dict)."""
        return build(cls, section_values(section, cls.SECTION), cls.SECTION)

    @property
    def metric(self) -> Metric:
        """How to read and compare ``early_stopping.metric``."""
        return METRICS[self.early_stopping.metric]


def plain_number(value: float) -> str:
    """A number as the user wrote it: ``1`` for 1.0 (messages name options by their values)."""
    return str(int(value)) if value.is_integer() else str(value)
