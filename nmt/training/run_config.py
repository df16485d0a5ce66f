"""Which parts of a run's config decide what it computes, and which only say where or how fast.

``nmt-train`` continues a run directory only under the same model and data (:func:`comparable_config`);
``nmt-compare`` reuses a finished run only under the same model, data and trainer settings
(:func:`computed_settings`). Options that name this machine's folders, processes or devices are left
out of both, so a run can move between machines; ``nmt-evaluate`` points a stored data config at this
machine's data root (:func:`data_config_for`).
"""

from __future__ import annotations

from typing import Any

from nmt.data.config import DataConfig

# Sections of the config that must match for a checkpoint to be continued.
RESUME_KEYS = ("model", "data")
# Data options that only say where or how fast this machine reads the data.
MACHINE_DATA_KEYS = ("root", "cache_dir", "num_proc")
# Trainer options that change where or how fast a run computes, not what it computes.
RUNTIME_TRAINER_KEYS = ("device", "threads", "num_workers")
# Options added after runs were saved, with the value that computes what their absence did. At that value
# they are left out of the comparison, so a run saved before them still resumes and is still reused. The
# typed configs (nmt.data.config, the model configs) default them to the same values, so such a run's
# checkpoint still loads.
ADDED_OPTIONS = {
    "data": {"max_words": None},
    "model": {"positions": "sinusoidal", "key_dim": None, "encoder": "unidirectional"},
}


def _without_added_defaults(section: str, options: dict[str, Any]) -> dict[str, Any]:
    added = ADDED_OPTIONS.get(section, {})
    return {k: v for k, v in options.items() if not (k in added and v == added[k])}


def comparable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The model and data sections without the options that only say where this machine keeps the data
    (nor options added since, at the value that computes what their absence did)."""
    out = {k: _without_added_defaults(k, cfg.get(k) or {}) for k in RESUME_KEYS}
    out["data"] = {k: v for k, v in out["data"].items() if k not in MACHINE_DATA_KEYS}
    return out


def computed_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """Model, data and trainer settings that decide what a run computes (two equal ones train alike)."""
    trainer = {k: v for k, v in cfg["trainer"].items() if k not in RUNTIME_TRAINER_KEYS}
    return {**comparable_config(cfg), "trainer": trainer}


def data_config_for(train_cfg: dict[str, Any], data_root: str | None) -> DataConfig:
    """The dataset config stored in a checkpoint, typed and pointed at this machine's data root."""
    data = dict(train_cfg["data"])
    if data_root:
        data["root"] = data_root
    return DataConfig.from_cfg(data)
