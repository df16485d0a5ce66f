"""Model registry: each architecture registers a name and a typed config; ``build_model`` makes one.

The Hydra ``model`` group picks the architecture by ``model.arch``; every other key of that group must
be a field of the architecture's config dataclass, so a misspelt or inapplicable option fails loudly.
The YAML files in configs/model/ are the one place that holds the values: the dataclass fields have no
defaults, so a missing option fails loudly too. A config class may list ``RETIRED`` options that earlier
versions wrote into checkpoints; they are dropped, so old checkpoints still load.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt.errors import ConfigError
from nmt.models.interface import EncoderOutput, Seq2SeqModel, select_rows

MODELS: dict[str, tuple[type[Seq2SeqModel], type]] = {}


def register_model(name: str, config_cls: type) -> Callable[[type[Seq2SeqModel]], type[Seq2SeqModel]]:
    """Class decorator: make an architecture available as ``model.arch=<name>``."""

    def wrap(cls: type[Seq2SeqModel]) -> type[Seq2SeqModel]:
        MODELS[name] = (cls, config_cls)
        return cls

    return wrap


def _to_dataclass(config_cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate a (nested) config dataclass, naming any key it does not have."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values = {k: v for k, v in values.items() if k not in getattr(config_cls, "RETIRED", ())}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: option(s) {', '.join(unknown)} do not apply to this model; "
            f"valid options: {', '.join(sorted(fields))}"
        )
    missing = sorted(f.name for f in dataclasses.fields(config_cls) if f.name not in values and _required(f))
    if missing:
        raise ConfigError(
            f"{where}: option(s) {', '.join(missing)} missing; every option of a model is set in its "
            "configs/model/*.yaml (start from one of those: model=<name>)"
        )
    kwargs = {}
    for k, v in values.items():
        if isinstance(v, dict) and dataclasses.is_dataclass(hints[k]):
            v = _to_dataclass(hints[k], v, f"{where}.{k}")
        kwargs[k] = v
    return config_cls(**kwargs)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def model_config(model_cfg: DictConfig | dict) -> tuple[str, Any]:
    """The architecture name and its typed config from the ``model`` config group."""
    values = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    arch = values.pop("arch", None)
    values.pop("name", None)
    if arch not in MODELS:
        raise ConfigError(f"model.arch={arch!r} is not a registered model; choose one of: {', '.join(sorted(MODELS))}")
    return arch, _to_dataclass(MODELS[arch][1], values, f"model ({arch})")


def build_model(
    model_cfg: DictConfig | dict, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool
) -> Seq2SeqModel:
    """Build the architecture named by ``model_cfg.arch``."""
    arch, cfg = model_config(model_cfg)
    cls = MODELS[arch][0]
    return cls(cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, shared_vocab=shared_vocab)


def _register_builtin() -> None:
    from nmt.models import luong, rnnsearch, transformer  # noqa: F401


_register_builtin()

__all__ = ["EncoderOutput", "Seq2SeqModel", "build_model", "model_config", "register_model", "select_rows", "MODELS"]
