"""The learning-speed guard: every CPU model config still learns as fast on real Multi30k as recorded.

Trains each config for the recorded number of updates (scripts/learning_speed.py) and fails when its
validation NLL ends the record's margin or more above the recorded value. A change that moves a curve
updates tests/learning_speed.json in the same commit (``python scripts/learning_speed.py --record``) and
says why.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import DATA_ROOT, load_script

from nmt.paths import REPO_ROOT


def _guard():
    return load_script("learning_speed")


def test_every_cpu_model_learns_as_fast_as_recorded(monkeypatch: pytest.MonkeyPatch):
    if not (DATA_ROOT / "multi30k" / "train.de").is_file():
        pytest.fail(f"Multi30k not found under {DATA_ROOT}: set NMT_DATA_ROOT to the folder holding multi30k/")
    monkeypatch.setenv("NMT_DATA_ROOT", str(DATA_ROOT))
    guard = _guard()
    record = json.loads((REPO_ROOT / "tests" / "learning_speed.json").read_text())
    measured = guard.measure(list(guard.MODELS), record["steps"], [])
    assert guard.check(measured, record) == [], (measured, os.cpu_count())
