"""Typed config sections: a Hydra section, or the one a checkpoint saved, into a frozen dataclass.

Every option of the section must be a field and every field without a default must be set, so a misspelt
or forgotten option stops ``nmt-train`` at start-up, before hours of training, and the YAML files stay the
one place that holds the values. A field's default is only for checkpoints written before the option
existed: it is the value that computes what its absence did, so those checkpoints still load. Values are
checked against the field's type hint (an int is accepted where a float is expected, a whole float where
an int is); a ``Literal`` hint lists the valid choices.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmt.errors import ConfigError

T = TypeVar("T")
MISSING = "???"  # OmegaConf's mark of a value the user must give


def section_values(section: Any, where: str) -> dict[str, Any]:
    """The options of a config section as plain values, interpolations (``${nmt_data_root:}``) resolved."""
    if isinstance(section, DictConfig):
        missing = _missing(OmegaConf.to_container(section, resolve=False), where)
        if missing:
            raise ConfigError(
                f"{', '.join(missing)}: required (??? in the config); give a value, e.g. {missing[0]}=..."
            )
        try:
            return OmegaConf.to_container(section, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{where}: {str(e).splitlines()[0]}") from None
    if isinstance(section, Mapping):
        return dict(section)
    raise ConfigError(f"{where}={section!r}: expected a group of options")


def _missing(values: Any, where: str) -> list[str]:
    if isinstance(values, dict):
        return [m for k, v in values.items() for m in _missing(v, f"{where}.{k}")]
    return [where] if values == MISSING else []


def build(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """``cls`` from ``values``, naming any option it does not have, lacks or cannot take."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k not in getattr(cls, "RETIRED", ())}
    unknown = sorted(str(k) for k in set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{', '.join(f'{where}.{k}' for k in unknown)}: no such option; valid options of {where}: "
            f"{', '.join(sorted(fields))}"
        )
    missing = sorted(name for name, f in fields.items() if name not in values and _required(f))
    if missing:
        raise ConfigError(
            f"{', '.join(f'{where}.{k}' for k in missing)}: missing; every option is set in the config's YAML "
            "(start from one of the files in configs/)"
        )
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` as type ``hint``, or a ConfigError naming option ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (other,) = [a for a in args if a is not type(None)]  # Optional[X] is the only union used
        return coerce(value, other, name)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ConfigError(f"{name}={value!r}: use {', '.join(args)}")
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return build(hint, value, name)
    if origin is tuple and isinstance(value, list | tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) == len(args):
            return tuple(coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict and isinstance(value, Mapping):
        key, item = args
        return {coerce(k, key, f"{name} key"): coerce(v, item, f"{name}.{k}") for k, v in value.items()}
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{name}={value!r}: expected {_describe(hint)}")


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ')}s"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return f"a mapping of {_describe(args[0]).removeprefix('a ')}s to {_describe(args[1]).removeprefix('a ')}s"
    if dataclasses.is_dataclass(hint):
        return "a group of options"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


def check_at_least(cfg: Any, where: str, minimum: float, *names: str) -> None:
    """Each option in ``names`` (None: unset) is at least ``minimum``."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{where}.{name}={value}: must be at least {minimum}")
