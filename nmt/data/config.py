"""The ``data`` config group as typed dataclasses, checked when ``nmt-train`` starts and when a checkpoint's
saved data config is read again (nmt-evaluate, nmt-translate, nmt-serve).

The values live in configs/data/*.yaml; ``root`` and ``cache_dir`` arrive resolved (``${nmt_data_root:}``).
The few defaults are for options added after runs were saved (nmt.training.run_config.ADDED_OPTIONS lists
those the comparisons know of), at the value that computes what their absence did, so old checkpoints load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from nmt.typed_config import build, check_at_least, section_values


@dataclass(frozen=True)
class TokenizerConfig:
    """Sentencepiece, trained on the training split."""

    joint: bool  # one vocabulary for both languages
    vocab_size: int
    model_type: Literal["unigram", "bpe", "char", "word"]
    character_coverage: float
    input_sentence_size: int  # sentences sampled for training the model
    # Added with the word-level set-ups; runs saved before it had no Moses stage.
    pretokenize: Literal["none", "moses"] = "none"

    SECTION: ClassVar[str] = "data.tokenizer"

    def __post_init__(self) -> None:
        check_at_least(self, self.SECTION, 1, "vocab_size", "input_sentence_size")

    @classmethod
    def of(cls, section: TokenizerConfig | Mapping[str, Any]) -> TokenizerConfig:
        """``section`` typed (a DictConfig or dict from tests and scripts), or as it is if it already is."""
        return section if isinstance(section, cls) else build(cls, section_values(section, cls.SECTION), cls.SECTION)


@dataclass(frozen=True)
class HubConfig:
    """A Hugging Face hub dataset, read when ``data.source`` is hub (or auto without local files)."""

    path: str | None
    name: str | None
    splits: dict[str, str]  # split name -> hub split name


@dataclass(frozen=True)
class DataConfig:
    """A parallel corpus and how it is tokenized; configs/data/multi30k_de_en.yaml documents each option."""

    name: str  # names the run directory and the cache folder
    src_lang: str
    tgt_lang: str
    source: Literal["auto", "local", "hub"]
    root: str
    local_dir: str  # files: <root>/<local_dir>/<stem>.<lang>
    splits: dict[str, str]  # split name -> local file stem
    hub: HubConfig
    train_split: str
    valid_split: str
    test_splits: tuple[str, ...]
    max_len: int  # subwords per side of a training pair
    cache_dir: str
    tokenizer: TokenizerConfig
    # Added after the first runs were saved, at the values those runs trained with.
    max_words: int | None = None  # words per side of a training pair; None: no limit
    num_proc: int | None = None  # tokenizing processes; None: one per core, at most 8

    SECTION: ClassVar[str] = "data"

    def __post_init__(self) -> None:
        check_at_least(self, self.SECTION, 1, "max_len", "max_words", "num_proc")

    @classmethod
    def from_cfg(cls, section: Mapping[str, Any]) -> DataConfig:
        """The typed ``data`` section (a Hydra DictConfig or a checkpoint's saved dict)."""
        return build(cls, section_values(section, cls.SECTION), cls.SECTION)

    @classmethod
    def of(cls, section: DataConfig | Mapping[str, Any]) -> DataConfig:
        """``section`` typed (a DictConfig or dict from tests and scripts), or as it is if it already is."""
        return section if isinstance(section, cls) else cls.from_cfg(section)
