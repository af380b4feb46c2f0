"""Bootstrap intervals over the sampled units, for reading a statistic's precision (verdicts: :mod:`.inference`).

Why resample *units* (documents, examples, generations), never steps: steps of one answer share their
context, so they are not independent draws; the unit that was sampled is the one to resample. Many of the
suite's statistics pool rows of the drawn units (micro F1 over steps x heads, Table 1 statistics over all
steps), so the resamplers here draw unit indices with repetition and pool per-unit sums over each draw.

Why a short resampler of our own rather than ``scipy.stats.bootstrap``: the statistic is arbitrary and
pooled per draw, paired comparisons must draw the same units for both conditions, and the percentile
interval over index arrays is ten lines that a reader can check; scipy would add a dependency for no
other use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval over ``n`` units at ``level``."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Interval":
        """An interval read back from :meth:`record` (extra keys, e.g. a verdict, are ignored)."""
        return cls(record["estimate"], record["low"], record["high"], record["n"], record.get("level", LEVEL))

    def text(self, digits: int = 3) -> str:
        """``0.410 [0.330, 0.490]``: how tables show a number."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def record(self) -> dict[str, float | int]:
        return asdict(self)


def unit_draws(n_units: int, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """``[resamples, n_units]`` unit indices drawn with repetition (seeded): every resampler here uses these."""
    if n_units < 1:
        raise ValueError("dynheads: an interval needs at least one sampled unit")
    return np.random.default_rng(seed).integers(0, n_units, size=(resamples, n_units))


def draw_weights(n_units: int, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """``[resamples, n_units]``: how often each unit is drawn in each of :func:`unit_draws`' draws. A statistic
    that pools per-unit sums is then ``weights @ sums`` for every draw at once (no Python loop per draw)."""
    draws = unit_draws(n_units, seed, resamples)
    return np.stack([np.bincount(row, minlength=n_units) for row in draws]).astype(float)


def percentile_interval(values: np.ndarray, estimate: float, n_units: int, level: float = LEVEL) -> Interval:
    """The percentile interval of resampled ``values`` (NaN draws ignored) around ``estimate``."""
    if not 0 < level < 1:
        raise ValueError(f"dynheads: interval level must lie in (0, 1), got {level}")
    tail = (1 - level) / 2
    low, high = np.nanquantile(np.asarray(values, dtype=float), [tail, 1 - tail])
    return Interval(float(estimate), float(low), float(high), int(n_units), level)


def mean_interval(values: Sequence[float], seed: int, resamples: int = RESAMPLES, level: float = LEVEL) -> Interval:
    """The mean of one value per unit, with its interval (vectorised: the common case)."""
    x = np.asarray(values, dtype=float)
    means = x[unit_draws(len(x), seed, resamples)].mean(axis=1)
    return percentile_interval(means, x.mean(), len(x), level)


def ratio_interval(numerators: Sequence[float], denominators: Sequence[float], seed: int, resamples: int = RESAMPLES,
                   level: float = LEVEL) -> Interval | None:
    """A ratio of sums pooled over units (e.g. window precision: Σ over answers of per-retrieval precisions /
    number of retrievals), with its interval over units; None when the denominator is 0 on all units."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if not den.sum():
        return None
    weights = draw_weights(len(num), seed, resamples)
    drawn_den = weights @ den
    drawn = np.divide(weights @ num, drawn_den, out=np.full(len(weights), np.nan), where=drawn_den > 0)
    return percentile_interval(drawn, float(num.sum() / den.sum()), len(num), level)
