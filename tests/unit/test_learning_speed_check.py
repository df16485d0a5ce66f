"""The learning-speed guard's check and record (the guard itself: tests/integration/test_learning_speed.py)."""

from __future__ import annotations

import json

from conftest import load_script

from nmt.paths import REPO_ROOT


def _guard():
    return load_script("learning_speed")


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
