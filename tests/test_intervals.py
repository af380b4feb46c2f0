"""Bootstrap intervals on data with known answers: nominal coverage, paired beats unpaired on correlated data."""

from __future__ import annotations

import numpy as np
import pytest

from dynheads.metrics.inference import paired_test
from dynheads.metrics.intervals import Interval, mean_interval, ratio_interval


def test_the_interval_of_a_bernoulli_mean_covers_p_at_about_the_nominal_rate():
    p, n, trials = 0.3, 120, 300
    rng = np.random.default_rng(0)
    covered = 0
    for seed in range(trials):
        sample = rng.random(n) < p
        interval = mean_interval(sample, seed=seed, resamples=1000)
        covered += interval.low <= p <= interval.high
        assert interval.low <= interval.estimate <= interval.high
    assert 0.91 <= covered / trials <= 0.98  # percentile bootstrap at n = 120: close to 0.95


def test_a_90_percent_interval_is_narrower_and_seeds_reproduce():
    x = np.random.default_rng(1).normal(size=50)
    wide, narrow = mean_interval(x, 3), mean_interval(x, 3, level=0.9)
    assert narrow.high - narrow.low < wide.high - wide.low
    assert mean_interval(x, 3) == wide and mean_interval(x, 4) != wide


def test_paired_differences_use_the_pairing():
    """Each document's difficulty x dominates both conditions; the condition effect is a small +0.1. The
    paired interval excludes 0; the difference of two separate intervals cannot tell."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, size=80)
    a = x + 0.1 + rng.normal(0, 0.05, size=80)
    b = x + rng.normal(0, 0.05, size=80)
    paired = paired_test(a, b, seed=0).interval
    assert paired.low > 0 and abs(paired.estimate - 0.1) < 0.03
    ia, ib = mean_interval(a, 0), mean_interval(b, 0)
    assert ia.low < ib.high  # the two separate intervals overlap
    assert (paired.high - paired.low) < 0.2 * ((ia.high - ia.low) + (ib.high - ib.low))
    with pytest.raises(ValueError, match="same units"):
        paired_test(a, b[:-1], seed=0)


def test_a_pooled_ratio_resamples_units():
    """A micro statistic pooled over units of different sizes: resampled by unit, the point estimate is the pooled
    value and the interval spans the units' spread."""
    rows = [np.ones(10), np.zeros(2), np.ones(3) * 0.5]
    interval = ratio_interval([r.sum() for r in rows], [len(r) for r in rows], seed=0, resamples=500)
    assert interval.estimate == pytest.approx(11.5 / 15) and interval.n == 3
    assert 0 <= interval.low < interval.estimate < interval.high <= 1
    assert ratio_interval([0.0, 0.0], [0, 0], seed=0) is None  # nothing pooled: no interval, not a zero


def test_table1_intervals_pool_the_drawn_generations():
    """Every Table 1 statistic's estimate is the table's own value, and its interval comes from redrawing
    generations (one generation that differs from the rest widens every interval it touches)."""
    from dynheads.metrics.dynamism import summarise
    from dynheads.suite.summaries import table1_intervals

    rng = np.random.default_rng(0)
    samples = [[[(int(l), int(h)) for l, h in rng.integers(0, 4, size=(rng.integers(0, 5), 2))] for _ in range(rng.integers(1, 9))]
               for _ in range(15)]
    samples.append([[(5, 5), (6, 6), (7, 7)]] * 6)  # an outlier generation: heads no other one uses
    ranking = [(l, h) for l in range(8) for h in range(8)]
    whole = summarise(samples, 64, ranking)
    out = table1_intervals(samples, ranking, seed=0)
    for key, record in out.items():
        assert record["estimate"] == pytest.approx(whole[key]), key
        assert record["n"] == 16 and record["low"] <= record["high"]
    assert set(out) >= {"heads_per_step_mean", "heads_per_step_std", "unique_heads", "adjacent_jaccard", "entropy",
                        "jaccard_static_20", "jaccard_static_100"}
    assert out["unique_heads"]["high"] == whole["unique_heads"] and out["unique_heads"]["low"] < whole["unique_heads"]
    assert out["heads_per_step_mean"]["low"] < whole["heads_per_step_mean"] < out["heads_per_step_mean"]["high"]
    assert table1_intervals([], ranking, seed=0) == {}
    assert "jaccard_static_20" not in table1_intervals(samples, None, seed=0)  # no informative ranking: no Jaccard


def test_interval_text():
    assert Interval(0.41, 0.33, 0.49, 16).text(2) == "0.41 [0.33, 0.49]"
