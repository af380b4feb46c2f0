"""Bootstrap intervals over the sampled units, paired differences, and verdicts read from an interval.

Why resample *units* (documents, examples, generations), never steps: steps of one answer share their
context, so they are not independent draws; the unit that was sampled is the one to resample. Many of the
suite's statistics pool rows of the drawn units (micro F1 over steps x heads, Table 1 statistics over all
steps), so a statistic here is any function of an array of unit indices drawn with repetition.

Why a short resampler of our own rather than ``scipy.stats.bootstrap``: the statistic is arbitrary and
pooled per draw, paired comparisons must draw the same units for both conditions, and the percentile
interval over index arrays is ten lines that a reader can check; scipy would add a dependency for no
other use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
VERDICTS = ("reproduced", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval over ``n`` units at ``level``."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def text(self, digits: int = 3) -> str:
        """``0.410 [0.330, 0.490]``: how tables show a number."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def record(self) -> dict[str, float | int]:
        return asdict(self)


def bootstrap(statistic: Callable[[np.ndarray], float], n_units: int, seed: int, resamples: int = RESAMPLES,
              level: float = LEVEL) -> Interval:
    """``statistic(indices)`` on all units, and the percentile interval of it over ``resamples`` draws of
    ``n_units`` unit indices with repetition (seeded)."""
    if n_units < 1:
        raise ValueError("dynheads: an interval needs at least one sampled unit")
    if not 0 < level < 1:
        raise ValueError(f"dynheads: interval level must lie in (0, 1), got {level}")
    draws = np.random.default_rng(seed).integers(0, n_units, size=(resamples, n_units))
    values = np.array([statistic(row) for row in draws], dtype=float)
    tail = (1 - level) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return Interval(float(statistic(np.arange(n_units))), float(low), float(high), int(n_units), level)


def mean_interval(values: Sequence[float], seed: int, resamples: int = RESAMPLES, level: float = LEVEL) -> Interval:
    """The mean of one value per unit, with its interval (vectorised: the common case)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 1:
        raise ValueError("dynheads: an interval needs at least one sampled unit")
    draws = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[draws].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high), len(x), level)


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int, resamples: int = RESAMPLES,
                      level: float = LEVEL) -> Interval:
    """Mean of ``a - b`` over units measured under both conditions (same documents), resampling the units
    jointly: what a paired comparison's interval is."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"dynheads: a paired comparison needs both conditions on the same units, got {len(a)} and {len(b)}")
    return mean_interval(a - b, seed, resamples, level)


def verdict(effect: Interval, expected_sign: int = 1) -> str:
    """``reproduced`` when the whole interval lies on the expected side of 0, ``contradicted`` when it lies on
    the other side, else ``inconclusive at n = N``. An interval touching 0 decides nothing."""
    if expected_sign not in (1, -1):
        raise ValueError("dynheads: expected_sign is +1 (the claim predicts a positive effect) or -1")
    low, high = sorted((effect.low * expected_sign, effect.high * expected_sign))
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return f"inconclusive at n = {effect.n}"
