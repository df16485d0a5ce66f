"""nmt.experiments.claims: Welch's interval over seeds, the verdicts drawn from it, and their error rates on synthetic
seed scores (no effect: "within noise" at the stated rate; a large effect: detected)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from nmt.experiments.claims import (
    BELOW,
    BETTER,
    HOLDS,
    MIXED,
    NOISE,
    PENDING,
    REVERSED,
    UNKNOWN,
    WORSE,
    Effect,
    combine,
    direction_verdict,
    effect_verdict,
    one_sample,
    seed_summary,
    verdict,
    welch,
)


def test_welch_by_hand() -> None:
    """Means 31 and 29.5, variances 0.31 and 0.16 over 3 seeds each: se = sqrt((0.31 + 0.16) / 3), and the
    Welch-Satterthwaite degrees of freedom (0.31/3 + 0.16/3)^2 / ((0.31/3)^2/2 + (0.16/3)^2/2)."""
    row, ref = [31.5, 30.4, 31.1], [29.1, 29.9, 29.5]
    assert np.var(row, ddof=1) == pytest.approx(0.31) and np.var(ref, ddof=1) == pytest.approx(0.16)
    a, b = 0.31 / 3, 0.16 / 3
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(a + b)
    effect = welch(row, ref)
    assert effect.delta == pytest.approx(1.5)
    assert (effect.low, effect.high) == (pytest.approx(1.5 - half), pytest.approx(1.5 + half))
    assert effect.resolution == pytest.approx(half) and effect.significant
    assert df == pytest.approx(3.630, abs=1e-3) and half == pytest.approx(1.1445, abs=1e-4)  # t(3.63) = 2.892


@pytest.mark.parametrize(
    ("row", "ref", "alpha"),
    [
        ([31.2, 30.1, 30.8], [29.0, 29.9, 28.7], 0.05),
        ([25.0, 27.5, 26.1, 24.2], [25.5, 25.6], 0.05),  # unequal seed counts and variances
        ([10.0, 10.4], [10.3, 9.1, 9.9, 12.0, 10.2], 0.10),
    ],
)
def test_welch_matches_scipy(row: list[float], ref: list[float], alpha: float) -> None:
    expected = stats.ttest_ind(row, ref, equal_var=False).confidence_interval(1 - alpha)
    effect = welch(row, ref, alpha)
    assert effect.delta == pytest.approx(np.mean(row) - np.mean(ref))
    assert (effect.low, effect.high) == (pytest.approx(expected.low), pytest.approx(expected.high))


def test_welch_needs_two_seeds_a_row_and_handles_identical_seeds() -> None:
    assert welch([30.0], [29.0, 29.5]) is None and welch([30.0, 30.2], [29.0]) is None
    same = welch([30.0, 30.0], [29.0, 29.0])  # no seed variation at all: the difference is exact
    assert (same.delta, same.low, same.high) == (1.0, 1.0, 1.0) and same.significant
    assert not welch([30.0, 30.0], [30.0, 30.0]).significant


def test_one_sample_is_the_t_interval_of_the_mean() -> None:
    drops = [4.1, 5.3, 3.2, 4.6]
    expected = stats.ttest_1samp(drops, 0.0).confidence_interval(0.95)
    effect = one_sample(drops)
    assert effect.delta == pytest.approx(np.mean(drops))
    assert (effect.low, effect.high) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert effect.significant and not one_sample([1.0, -1.2, 0.4]).significant
    assert one_sample([3.0]) is None


def test_seed_summary() -> None:
    mean, sd = seed_summary([34.0, 35.0, 36.0])
    assert mean == pytest.approx(35.0) and sd == pytest.approx(1.0)
    assert seed_summary([34.0]) == (34.0, 0.0)


# Effects with interval [low, high]: their resolution is (high - low) / 2.
UP, DOWN, WIDE, NARROW = Effect(2.0, 1.0, 3.0), Effect(-2.0, -3.0, -1.0), Effect(0.5, -1.5, 2.5), Effect(0.1, -0.3, 0.5)


@pytest.mark.parametrize(
    ("paper_delta", "effect", "expected"),
    [
        (+2.9, UP, HOLDS),  # the interval excludes 0 on the paper's side
        (-0.9, DOWN, HOLDS),  # a claimed loss reproduced
        (+2.9, DOWN, REVERSED),  # excludes 0 on the other side
        (-0.9, UP, REVERSED),
        (+2.9, WIDE, NOISE),  # includes 0, though an effect of 2.9 (> resolution 2.0) would have shown
        (+1.9, WIDE, BELOW),  # includes 0, and 1.9 is smaller than the resolution 2.0: we cannot tell
        (-1.9, WIDE, BELOW),  # the size counts, not the sign
        (+0.3, NARROW, BELOW),  # resolution 0.4: an effect of 0.3 could not have shown ... but
        (+0.5, NARROW, NOISE),  # ... one of 0.5 could
        (0.0, NARROW, HOLDS),  # the paper saw no difference, neither do we
        (0.0, WIDE, HOLDS),
        (0.0, UP, REVERSED),  # the paper saw none, we see a real one
        (None, UP, UNKNOWN),  # the paper reports no number for this row
        (+2.9, None, PENDING),  # fewer than two seeds in a row: no interval yet
    ],
)
def test_verdict(paper_delta: float | None, effect: Effect | None, expected: str) -> None:
    assert verdict(paper_delta, effect) == expected


def test_direction_verdict_for_claims_without_a_size() -> None:
    """Length claims say only "drops" (positive) or "steady" (zero): no size, so never below resolution."""
    assert direction_verdict(1, UP) == HOLDS and direction_verdict(1, DOWN) == REVERSED
    assert direction_verdict(-1, DOWN) == HOLDS and direction_verdict(-1, UP) == REVERSED
    assert direction_verdict(1, WIDE) == NOISE
    assert direction_verdict(1, WIDE, paper_delta=1.0) == BELOW
    assert direction_verdict(0, WIDE) == HOLDS and direction_verdict(0, DOWN) == REVERSED
    assert direction_verdict(1, None) == PENDING and direction_verdict(0, None) == PENDING


@pytest.mark.parametrize(
    ("effect", "expected"), [(UP, BETTER), (DOWN, WORSE), (WIDE, NOISE), (NARROW, NOISE), (None, PENDING)]
)
def test_effect_verdict_of_a_change_no_paper_claimed(effect: Effect | None, expected: str) -> None:
    assert effect_verdict(effect) == expected


def test_combine_over_test_sets() -> None:
    assert combine([HOLDS, HOLDS, HOLDS]) == HOLDS
    assert combine([BELOW]) == BELOW
    assert combine([HOLDS, NOISE, HOLDS]) == MIXED
    assert combine([HOLDS, REVERSED]) == MIXED
    assert combine([]) == PENDING


def _simulate(rng: np.random.Generator, n: int, effect: float, sd: float, paper_delta: float) -> Counter:
    """Verdicts on ``n`` simulated comparisons of two rows of 3 seeds, BLEU ~ N(30 [+ effect], sd)."""
    rows = rng.normal(30.0 + effect, sd, (n, 3))
    refs = rng.normal(30.0, sd, (n, 3))
    return Counter(verdict(paper_delta, welch(list(r), list(b))) for r, b in zip(rows, refs))


def test_no_effect_is_within_noise_at_the_stated_rate() -> None:
    """Two rows of one configuration (3 seeds each, seed sd 0.7 BLEU): the verdict claims an effect (holds
    or reversed) about 5% of the time at alpha 0.05, equally often either way. Welch's interval is
    slightly conservative at 3 + 3 seeds (3.4% over 200,000 simulations), never above the stated rate."""
    n = 10_000
    counts = _simulate(np.random.default_rng(2024), n, 0.0, 0.7, paper_delta=2.0)
    assert set(counts) <= {HOLDS, REVERSED, NOISE, BELOW}
    false = (counts[HOLDS] + counts[REVERSED]) / n
    assert 0.025 <= false <= 0.06, counts
    assert abs(counts[HOLDS] - counts[REVERSED]) < 0.015 * n, counts
    # A paper delta of 2.0 is about the resolution of 3 seeds at sd 0.7 (t(4) * 0.7 * sqrt(2/3) = 1.6):
    # mostly "within noise", sometimes "below our resolution" when the seeds happen to spread wide.
    assert counts[NOISE] > counts[BELOW] > 0.1 * n, counts


def test_a_large_effect_is_detected() -> None:
    """+4 BLEU with seed sd 0.5, 3 seeds per row: the claim (paper +2.0) holds in at least 95% of runs."""
    n = 2000
    counts = _simulate(np.random.default_rng(7), n, 4.0, 0.5, paper_delta=2.0)
    assert counts[HOLDS] >= 0.95 * n and counts[REVERSED] == 0, counts


def test_a_paper_effect_smaller_than_our_seed_noise_is_below_our_resolution() -> None:
    """The paper's +0.3 against seed sd 0.7 over 3 seeds (resolution about 1.6): when our interval
    includes 0, we could not have seen such an effect, and say so instead of "within noise"."""
    n = 2000
    counts = _simulate(np.random.default_rng(11), n, 0.0, 0.7, paper_delta=0.3)
    assert counts[BELOW] >= 0.9 * n, counts
    assert counts[NOISE] <= 0.01 * n, counts  # only when the seeds happen to agree to within 0.3


def test_one_sample_claims_an_effect_at_the_stated_rate() -> None:
    """A per-seed drop with mean 0 (3 seeds): one_sample's t interval excludes 0 in 5% of simulations."""
    n = 10_000
    drops = np.random.default_rng(5).normal(0.0, 1.0, (n, 3))
    false = sum(one_sample(list(d)).significant for d in drops) / n
    assert 0.04 <= false <= 0.06
