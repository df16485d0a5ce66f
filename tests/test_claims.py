"""The verdict on a paper's claim, decided from deltas, bootstrap p and seed spread (synthetic scores)."""

from __future__ import annotations

import pytest

from nmt.claims import (
    BETTER,
    HOLDS,
    NOISE,
    REVERSED,
    UNKNOWN,
    WORSE,
    Claim,
    effect_verdict,
    seed_spread,
    seed_summary,
    verdict,
)


@pytest.mark.parametrize(
    ("paper", "ours", "p", "spread", "expected"),
    [
        (+2.9, +3.1, 0.001, 0.6, HOLDS),  # same direction, significant, beyond the seed spread
        (-0.9, -1.4, 0.010, 0.5, HOLDS),  # a claimed loss reproduced
        (+2.9, -2.0, 0.001, 0.6, REVERSED),  # significant and the other way
        (-0.9, +1.5, 0.002, 0.5, REVERSED),
        (+2.9, +0.4, 0.001, 0.6, NOISE),  # significant by bootstrap but inside the seed spread
        (+2.9, +3.0, 0.200, 0.6, NOISE),  # large but not significant
        (+2.9, -3.0, 0.200, 0.6, NOISE),  # the other way, but not significant: not "reversed"
        (+2.9, +0.6, 0.001, 0.6, NOISE),  # exactly the spread is still noise
        (+2.9, +3.0, None, 0.6, NOISE),  # no p-value (a reference row) is never an effect
        (0.0, +0.2, 0.400, 0.5, HOLDS),  # the paper saw no difference, neither do we
        (0.0, +2.0, 0.001, 0.5, REVERSED),  # the paper saw none, we see a real one
        (None, +2.0, 0.001, 0.5, UNKNOWN),  # the paper reports no number for this row
    ],
)
def test_verdict(paper, ours, p, spread, expected):
    assert verdict(Claim(paper, ours, p, spread)) == expected


@pytest.mark.parametrize(
    ("ours", "p", "spread", "expected"),
    [
        (+1.5, 0.001, 0.4, BETTER),
        (-1.5, 0.001, 0.4, WORSE),
        (+0.3, 0.001, 0.4, NOISE),  # significant but inside the seed spread
        (-2.0, 0.300, 0.4, NOISE),  # large but not significant
        (+2.0, None, 0.4, NOISE),  # the reference row itself
    ],
)
def test_effect_verdict_of_a_change_no_paper_claimed(ours, p, spread, expected):
    assert effect_verdict(ours, p, spread) == expected


def test_alpha_is_the_significance_level():
    claim = Claim(+1.0, +1.5, 0.03, 0.2)
    assert verdict(claim) == HOLDS and verdict(claim, alpha=0.01) == NOISE


def test_seed_spread_and_summary():
    assert seed_spread([34.1, 35.0, 34.6]) == pytest.approx(0.9)
    assert seed_spread([34.1]) == 0.0
    mean, std = seed_summary([34.0, 35.0, 36.0])
    assert mean == pytest.approx(35.0) and std == pytest.approx(1.0)
    assert seed_summary([34.0]) == (34.0, 0.0)
