"""The verdict machinery's error rates, simulated at the n the suite runs (seeded, a few seconds)."""

import numpy as np
import pytest

from dynheads.metrics.inference import (cluster_means, holm, paired_test, signflip_pvalue, t_interval,
                                        tost_pvalue)

SIMULATIONS = 2000


def coverage(draw, mean: float, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(SIMULATIONS):
        low, high = t_interval(draw(rng, n))
        hits += low <= mean <= high
    return hits / SIMULATIONS


@pytest.mark.parametrize("n", [6, 9, 12, 24])
def test_the_interval_covers_normal_differences_at_its_level_and_is_not_needlessly_wide(n):
    assert 0.93 <= coverage(lambda rng, k: rng.normal(0.3, 1.0, k), 0.3, n, seed=n) <= 0.97


@pytest.mark.parametrize("n", [6, 12, 24])
@pytest.mark.parametrize("probabilities, mean", [((0.25, 0.5, 0.25), 0.0), ((0.15, 0.5, 0.35), 0.2)])
def test_the_interval_covers_zero_plus_minus_one_differences(n, probabilities, mean):
    """Accuracy-like scores differ by 0 or ±1 per document: the interval may be conservative, never short."""
    assert coverage(lambda rng, k: rng.choice([-1.0, 0.0, 1.0], k, p=probabilities), mean, n, seed=n) >= 0.93


def test_the_sign_flip_test_is_exact_and_holds_its_level_under_the_null():
    assert signflip_pvalue([1.0] * 6) == pytest.approx(2 / 64)  # only all-plus and all-minus are as extreme
    assert signflip_pvalue([1.0] * 6, alternative="greater") == pytest.approx(1 / 64)
    rng = np.random.default_rng(1)
    rejections = np.mean([signflip_pvalue(rng.normal(0, 1, 12)) <= 0.05 for _ in range(1000)])
    assert rejections <= 0.06
    assert signflip_pvalue(rng.normal(1.0, 1.0, 30), seed=3) < 0.01  # it has power where there is an effect


def test_holm_keeps_the_family_wise_error_of_eleven_null_comparisons_at_five_percent():
    rng = np.random.default_rng(2)
    families = 600
    any_raw = any_holm = 0
    for _ in range(families):
        p = [signflip_pvalue(rng.normal(0, 1, 12)) for _ in range(11)]
        any_raw += min(p) <= 0.05
        any_holm += min(holm(p)) <= 0.05
    assert any_holm / families <= 0.06
    assert any_raw / families >= 0.3  # unadjusted, the family errs far more often: the adjustment is what bites


def test_holm_adjusts_step_down_and_leaves_missing_comparisons_out():
    assert holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx([0.03, 0.06, 0.06, float("nan")], nan_ok=True)


def test_tost_rejects_at_most_five_percent_at_the_margin_and_decides_inside_it():
    rng = np.random.default_rng(4)
    at_margin = np.mean([tost_pvalue(rng.normal(0.1, 0.2, 12), 0.1) <= 0.05 for _ in range(2000)])
    assert at_margin <= 0.05
    inside = np.mean([tost_pvalue(rng.normal(0.0, 0.05, 12), 0.1) <= 0.05 for _ in range(500)])
    assert inside >= 0.9


def test_a_planted_cluster_effect_widens_the_cluster_interval_over_the_naive_one():
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(6), 8)
    values = rng.normal(0, 1, 6)[clusters] + rng.normal(0, 0.1, len(clusters))  # the cell, not the unit, varies
    naive = np.subtract(*t_interval(values)[::-1])
    clustered = np.subtract(*t_interval(cluster_means(values, clusters))[::-1])
    assert clustered > 2 * naive
    assert cluster_means([1.0, 3.0, 5.0], ["b", "a", "a"]).tolist() == [4.0, 1.0]


def test_paired_test_reports_the_mean_difference_its_interval_and_p():
    result = paired_test([1.0, 1.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    interval = result.interval
    assert interval.estimate == pytest.approx(4 / 6)
    assert interval.low < interval.estimate < interval.high and interval.n == 6
    assert result.record()["p"] == result.p and result.record()["estimate"] == interval.estimate
    assert result.p == pytest.approx(signflip_pvalue([1, 1, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match="same units"):
        paired_test([1.0], [1.0, 2.0])
