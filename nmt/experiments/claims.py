"""Does a paper's claim hold on our data? Verdicts from several seeds per row.

Every row of a comparison is trained with several seeds. A row's change against its reference row is
the difference of the two rows' seed means, and its noise is the two rows' seed variation: Welch's t
interval over seeds (:func:`welch`), so a re-seeded identical configuration is within noise at the
stated rate (5% of the time it is not, at ``alpha`` 0.05). A sentence-level bootstrap on one test set
would only measure that test set's sampling noise, and calls two seeds of one configuration different.

The verdict on a paper's claim (the paper's row minus its reference row, ``paper_delta``):
  holds / reversed       our interval excludes 0, on the paper's side / on the other side
  below our resolution   our interval includes 0, and the paper's effect is smaller than the smallest one
                         our seeds could tell from 0 (the interval's half-width)
  within noise           our interval includes 0, though an effect of the paper's size would have shown
A paper delta of 0 claims no difference: then an interval that includes 0 is what the paper found.
A claim holds only if it holds on every test set (:func:`combine`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

HOLDS, REVERSED, NOISE, BELOW, UNKNOWN = "holds", "reversed", "within noise", "below our resolution", "–"
BETTER, WORSE = "better", "worse"  # the verdict on a change no paper made a claim about (an ablation)
MIXED = "differs across test sets"
NOT_CONVERGED, PENDING = "not converged", "pending"
ONE_SEED = "one seed: no interval"  # a comparison trained with a single seed (a learning-rate grid)
# compare.length_claims[*].expect -> the sign claimed for a BLEU drop from short to long sentences
EXPECTED_DROP = {"drops": 1, "steady": 0}


@dataclass(frozen=True)
class Effect:
    """A difference measured over seeds, with its (1 - alpha) confidence interval."""

    delta: float
    low: float
    high: float

    @property
    def resolution(self) -> float:
        """The interval's half-width: the smallest effect these seeds tell from 0."""
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def seed_summary(scores: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of one row's scores over seeds (std 0 for a single seed)."""
    return statistics.fmean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0


def welch(row: list[float], reference: list[float], alpha: float = 0.05) -> Effect | None:
    """mean(row) - mean(reference) with Welch's t interval over the seeds of both rows (each row's own
    variance; Welch-Satterthwaite degrees of freedom). None with fewer than 2 seeds in either row."""
    if len(row) < 2 or len(reference) < 2:
        return None
    delta = statistics.fmean(row) - statistics.fmean(reference)
    a, b = statistics.variance(row) / len(row), statistics.variance(reference) / len(reference)
    se = math.sqrt(a + b)
    if se == 0:
        return Effect(delta, delta, delta)
    df = (a + b) ** 2 / (a**2 / (len(row) - 1) + b**2 / (len(reference) - 1))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return Effect(delta, delta - half, delta + half)


def one_sample(values: list[float], alpha: float = 0.05) -> Effect | None:
    """The mean of a per-seed quantity (e.g. a BLEU drop) with its t interval. None with fewer than 2."""
    if len(values) < 2:
        return None
    mean, sd = seed_summary(values)
    half = float(stats.t.ppf(1 - alpha / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return Effect(mean, mean - half, mean + half)


def direction_verdict(expected: int, effect: Effect | None, paper_delta: float | None = None) -> str:
    """The verdict on a claim that a quantity is positive (``expected`` 1), negative (-1) or zero (0)."""
    if effect is None:
        return PENDING
    if expected == 0:
        return REVERSED if effect.significant else HOLDS
    if effect.significant:
        return HOLDS if (effect.delta > 0) == (expected > 0) else REVERSED
    if paper_delta is not None and abs(paper_delta) < effect.resolution:
        return BELOW
    return NOISE


def verdict(paper_delta: float | None, effect: Effect | None) -> str:
    """holds / reversed / below our resolution / within noise for one row (``–`` without a paper number)."""
    if paper_delta is None:
        return UNKNOWN
    expected = (paper_delta > 0) - (paper_delta < 0)
    return direction_verdict(expected, effect, paper_delta)


def effect_verdict(effect: Effect | None) -> str:
    """better / worse / within noise for a change with no paper claim (an ablation against its reference)."""
    if effect is None:
        return PENDING
    if not effect.significant:
        return NOISE
    return BETTER if effect.delta > 0 else WORSE


def combine(verdicts: list[str]) -> str:
    """One verdict over several test sets: theirs if they all agree, else that it differs across them."""
    if not verdicts:
        return PENDING
    return verdicts[0] if len(set(verdicts)) == 1 else MIXED
