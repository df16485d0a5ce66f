"""Learning-rate schedules (nmt/optim.py) against the papers' formulas."""

from __future__ import annotations

import pytest

from nmt.training.config import SchedulerConfig
from nmt.training.optim import learning_rate


def test_schedules():
    inv = SchedulerConfig(kind="inverse_sqrt", warmup=100, factor=1.0)
    assert learning_rate(50, inv, 1e-3, 512) == pytest.approx(5e-4)
    assert learning_rate(100, inv, 1e-3, 512) == pytest.approx(1e-3)
    assert learning_rate(400, inv, 1e-3, 512) == pytest.approx(5e-4)
    noam = SchedulerConfig(kind="noam", warmup=4000, factor=1.0)
    assert learning_rate(4000, noam, 0.0, 512) == pytest.approx(512**-0.5 * 4000**-0.5)
    assert learning_rate(100, noam, 0.0, 512) == pytest.approx(512**-0.5 * 100 * 4000**-1.5)
