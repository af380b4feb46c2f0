"""Exact CCA recovers planted canonical correlations, agrees with scikit-learn, and the temporal CCA finds a
planted lag on held-out generations while the shuffled control finds none."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cross_decomposition import CCA

from dynheads.probes.cca import TemporalCCA, canonical_correlation, check_contiguous, column_correlations, offset_pairs, summarise


def _rotation(n: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


def _planted(rng: np.random.Generator, n: int = 6000, rho: tuple[float, ...] = (0.9, 0.5), p: int = 12, q: int = 9):
    """Two blocks whose only canonical correlations are ``rho`` (hidden behind random rotations)."""
    z = rng.normal(size=(n, len(rho)))
    x = np.c_[z, rng.normal(size=(n, p - len(rho)))] @ _rotation(p, rng)
    y_lat = np.c_[[r * z[:, i] + np.sqrt(1 - r * r) * rng.normal(size=n) for i, r in enumerate(rho)]].T
    y = np.c_[y_lat, rng.normal(size=(n, q - len(rho)))] @ _rotation(q, rng)
    return x, y


def test_exact_cca_recovers_planted_correlations():
    x, y = _planted(np.random.default_rng(0))
    pairs = canonical_correlation(x, y, n_components=5)
    assert pairs.correlations[:2] == pytest.approx([0.9, 0.5], abs=0.05)
    assert pairs.correlations[2] < 0.1  # nothing else is correlated
    a, b = pairs.transform(x, y)  # the canonical variates have unit variance and the stated correlations
    assert a.std(axis=0, ddof=1) == pytest.approx(np.ones(5), abs=1e-6)
    assert column_correlations(a, b) == pytest.approx(pairs.correlations, abs=1e-6)


def test_exact_cca_agrees_with_scikit_learn():
    x, y = _planted(np.random.default_rng(1), n=500, rho=(0.8, 0.4), p=4, q=3)
    ours = canonical_correlation(x, y, n_components=2).correlations
    sk = CCA(n_components=2, scale=False, max_iter=5000, tol=1e-12).fit(x, y)
    xs, ys = sk.transform(x, y)
    assert column_correlations(xs, ys) == pytest.approx(ours, abs=1e-4)


def test_constant_columns_are_dropped_not_fatal():
    rng = np.random.default_rng(2)
    x, y = _planted(rng, n=800)
    y = np.c_[y, np.ones(len(y))]  # a head that never changes
    assert canonical_correlation(x, y, 3).correlations[0] == pytest.approx(0.9, abs=0.05)


def test_offset_pairs_stay_within_a_generation():
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    i, j = offset_pairs(groups, 2)
    assert list(zip(i, j)) == [(0, 2), (5, 7), (6, 8)]
    assert list(zip(*offset_pairs(groups, 0))) == [(k, k) for k in range(9)]
    with pytest.raises(ValueError, match="contiguous"):
        check_contiguous(np.array([0, 1, 0]))


W = np.random.default_rng(99).normal(size=(16, 6))


def _lagged_generations(rng: np.random.Generator, generations: int, length: int = 30, lag: int = 2, w: np.ndarray = W):
    """Scores at step n + lag are a noisy linear function of the hidden state at step n; steps are iid."""
    xs, ys, gs = [], [], []
    for g in range(generations):
        x = rng.normal(size=(length, 16))
        y = np.r_[rng.normal(size=(lag, 6)), x[: length - lag] @ w] + 0.3 * rng.normal(size=(length, 6))
        xs.append(x), ys.append(y), gs.append(np.full(length, g))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def test_temporal_cca_finds_the_planted_lag_held_out_and_the_shuffled_control_does_not():
    rng = np.random.default_rng(3)
    x, y, g = _lagged_generations(rng, 60)
    xt, yt, gt = _lagged_generations(np.random.default_rng(4), 20)
    model = TemporalCCA(max_offset=4, n_components=6).fit(x, y, g)
    held = model.correlations(xt, yt, gt)
    top1 = {k: summarise(held[k], ordered=True)["top1"] for k in held}
    assert top1[2] > 0.9 and max(top1[k] for k in (0, 1, 3, 4)) < 0.3
    shuffled = TemporalCCA(max_offset=2, n_components=6).fit(x, y[rng.permutation(len(y))], g)
    assert summarise(shuffled.correlations(xt, yt, gt)[2], ordered=True)["top1"] < 0.3
    assert model.in_sample_[2][0] >= top1[2] - 0.05  # in-sample is never below held-out by much
    assert model.score(xt, yt, gt) == pytest.approx(top1[0])
