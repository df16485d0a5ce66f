"""The learning-speed guard's check and record (the guard itself: tests/integration/test_learning_speed.py)."""

from __future__ import annotations

import importlib.util
import json

from nmt.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "learning_speed.py"


def _guard():
    spec = importlib.util.spec_from_file_location("learning_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_check_flags_a_model_that_learns_markedly_slower():
    guard = _guard()
    record = {"steps": 150, "margin": 0.15, "valid_nll": {"luong": 4.0, "rnnsearch": 4.0}}
    assert guard.check({"luong": 4.14, "rnnsearch": 3.5}, record) == []
    slow = guard.check({"luong": 4.2, "rnnsearch": 4.0}, record)
    assert len(slow) == 1 and slow[0].startswith("luong: valid NLL 4.200 after 150 updates, recorded 4.000")


def test_the_record_covers_every_cpu_model_config():
    record = json.loads((REPO_ROOT / "tests" / "learning_speed.json").read_text())
    assert set(record["valid_nll"]) == set(_guard().MODELS)
    assert record["steps"] == _guard().STEPS and record["margin"] == _guard().MARGIN
