"""The verdict machinery's error rates, simulated at the n the suite runs (seeded, a few seconds)."""

import numpy as np
import pytest

from dynheads.metrics.inference import (auroc_permutation_pvalue, bootstrap_pvalue, holm, one_sample_test,
                                        paired_test, signflip_pvalue, t_interval, tost_from_summary)

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


def test_paired_test_reports_the_mean_difference_its_interval_and_p():
    result = paired_test([1.0, 1.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    interval = result.interval
    assert interval.estimate == pytest.approx(4 / 6)
    assert interval.low < interval.estimate < interval.high and interval.n == 6
    assert result.record()["p"] == result.p and result.record()["estimate"] == interval.estimate
    assert result.reference == pytest.approx(1 / 6)  # the reference condition's mean: a relative margin scales it
    assert result.sd == pytest.approx(np.std([1, 1, 0, 1, 0, 1], ddof=1))
    assert result.p == pytest.approx(signflip_pvalue([1, 1, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match="same units"):
        paired_test([1.0], [1.0, 2.0])


def test_a_one_sample_test_is_against_the_declared_null():
    values = [0.3, 0.35, 0.32, 0.31, 0.4, 0.33]
    above = one_sample_test(values, null=0.2)
    assert above.p == pytest.approx(2 / 64) and above.interval.estimate == pytest.approx(np.mean(values))
    assert one_sample_test(values, null=0.33).p > 0.5
    d = np.random.default_rng(0).normal(0.02, 0.1, 15)
    # every difference equal: equivalence only once the rule of three (3 / n) fits inside the margin
    assert tost_pvalue(np.zeros(12), 0.05) == 1.0 and tost_pvalue(np.zeros(100), 0.05) == 0.0


def test_an_auroc_interval_with_three_positives_drops_no_draw_and_the_permutation_p_holds_its_level():
    from dynheads.probes.evaluation import class_stratified_weights, weighted_auroc

    rng = np.random.default_rng(7)
    y = np.r_[np.ones(3), np.zeros(27)]
    groups = np.arange(30)
    score = rng.normal(size=30) + 2 * y
    plain = weighted_auroc(y, score, groups, np.random.default_rng(0).multinomial(30, np.ones(30) / 30, size=2000))
    assert np.isnan(plain).mean() > 0.02  # a plain draw of 30 misses all 3 positives ~4 % of the time
    weights = class_stratified_weights(groups, y, seed=0)
    drawn = weighted_auroc(y, score, groups, weights)
    assert not np.isnan(drawn).any() and drawn[0] == pytest.approx(weighted_auroc(y, score, groups, np.ones((1, 30)))[0])
    assert (weights[1:, y == 1].sum(axis=1) == 3).all()  # each draw keeps the class sizes
    # documents nesting several rows: strata by what each document holds
    nested = class_stratified_weights(np.repeat(np.arange(10), 3), np.r_[1, 0, 0, np.zeros(27)], seed=1)
    assert (nested[1:, 0] == 1).all()  # the only document with a positive is drawn exactly once per draw
    rejections = np.mean([auroc_permutation_pvalue(y, rng.normal(size=30), seed=s, permutations=400) <= 0.05
                          for s in range(300)])
    assert rejections <= 0.07
    assert auroc_permutation_pvalue(y, score, seed=0) < 0.05
    with pytest.raises(ValueError, match="both classes"):
        class_stratified_weights(groups, np.zeros(30), seed=0)


def test_the_bootstrap_p_value_is_twice_the_smaller_tail():
    assert bootstrap_pvalue(np.r_[np.full(98, 0.2), [-0.1, 0.0]]) == pytest.approx(2 * 3 / 101)
    assert bootstrap_pvalue(np.linspace(-1, 1, 101)) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_pvalue([0.1, np.nan])


def tost_pvalue(differences, margin):
    """TOST from raw differences, through the summary the suite's records keep."""
    d = np.asarray(differences, dtype=float)
    return tost_from_summary(float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0, int(d.size), margin)
