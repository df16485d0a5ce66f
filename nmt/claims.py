"""Does a paper's claim hold on our data? The verdict of one row of a paper-table reproduction.

A paper's row claims a change against its reference row (``paper_delta`` BLEU). Ours is the same
change measured here (``our_delta``), with the paired-bootstrap p-value of our row against our
reference row and the seed spread of our reference row (max - min test BLEU over its seeds). Our change
is *noise* when it is no larger than the seed spread or its p-value is above ``alpha``; otherwise it is
a real effect, and it *holds* when it points the way the paper's does and is *reversed* when it points
the other way. A paper delta of 0 claims no difference: then noise is what the paper found ("holds"),
and a real effect either way contradicts it ("reversed").
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

HOLDS, REVERSED, NOISE, UNKNOWN = "holds", "reversed", "within noise", "–"
BETTER, WORSE = "better", "worse"  # the verdict on a change no paper made a claim about (an ablation)
# compare.length_claims[*].expect -> the sign claimed for a BLEU drop from short to long sentences
EXPECTED_DROP = {"drops": 1, "steady": 0}


@dataclass(frozen=True)
class Claim:
    paper_delta: float | None  # the paper's row minus its reference row (None: the paper gives no number)
    our_delta: float  # our row minus our reference row
    p_value: float | None  # paired bootstrap against our reference row (None: this is the reference row)
    seed_spread: float  # max - min of our reference row's seeds (0 with one seed)


def seed_spread(scores: list[float]) -> float:
    """max - min of one row's scores over seeds (0 for a single seed)."""
    return max(scores) - min(scores) if scores else 0.0


def seed_summary(scores: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of one row's scores over seeds (std 0 for a single seed)."""
    return statistics.fmean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0


def is_noise(our_delta: float, p_value: float | None, spread: float, alpha: float = 0.05) -> bool:
    """A change no larger than the seed spread, or not significant at ``alpha``, is noise."""
    return abs(our_delta) <= spread or p_value is None or math.isnan(p_value) or p_value > alpha


def direction_verdict(
    expected: int, our_delta: float, p_value: float | None, spread: float, alpha: float = 0.05
) -> str:
    """The verdict on a claim that a quantity is positive (``expected`` 1), negative (-1) or zero (0),
    given our measurement of it, its bootstrap p-value and the seed spread."""
    noise = is_noise(our_delta, p_value, spread, alpha)
    if expected == 0:
        return HOLDS if noise else REVERSED
    if noise:
        return NOISE
    return HOLDS if (our_delta > 0) == (expected > 0) else REVERSED


def effect_verdict(our_delta: float, p_value: float | None, spread: float, alpha: float = 0.05) -> str:
    """better / worse / within noise for a change with no paper claim (an ablation against its reference)."""
    if is_noise(our_delta, p_value, spread, alpha):
        return NOISE
    return BETTER if our_delta > 0 else WORSE


def verdict(claim: Claim, alpha: float = 0.05) -> str:
    """holds / reversed / within noise for one row (``–`` where the paper reports no number)."""
    if claim.paper_delta is None:
        return UNKNOWN
    expected = (claim.paper_delta > 0) - (claim.paper_delta < 0)
    return direction_verdict(expected, claim.our_delta, claim.p_value, claim.seed_spread, alpha)
