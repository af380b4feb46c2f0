"""ASL by hand, MLP probes that learn planted rules on synthetic data and beat the trivial baselines,
saving and loading, and the split by generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynheads.probes.asl import AsymmetricLoss
from dynheads.probes.evaluation import classification_scores, best_threshold, previous_step, prior, regression_scores
from dynheads.probes.mlp import HeadProbeClassifier, HeadProbeRegressor, load_probe
from dynheads.probes.split import split_by_generation


def test_asl_matches_a_hand_computation():
    logits, y = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
    p = [1 / (1 + math.exp(-v)) for v in (2.0, -1.0, 0.5)]
    pm = [max(v - 0.05, 0.0) for v in p]
    expected = -((1 - p[0]) ** 1 * math.log(p[0]) + pm[1] ** 4 * math.log(1 - pm[1]) + pm[2] ** 4 * math.log(1 - pm[2]))
    assert float(AsymmetricLoss()(logits, y)) == pytest.approx(expected, rel=1e-6)


def test_asl_with_no_focusing_and_no_clip_is_summed_bce():
    logits, y = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), (torch.rand(5, 7) > 0.7).float()
    asl = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=0)(logits, y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
    assert float(asl) == pytest.approx(float(bce), rel=1e-5)


def _planted_heads(rng, n):
    """Four of ten heads fire exactly when a hidden coordinate exceeds 1 (a rule an MLP can learn)."""
    x = rng.normal(size=(n, 16)).astype(np.float32)
    y = np.zeros((n, 10), dtype=np.float32)
    y[:, :4] = x[:, :4] > 1.0
    return x, y


SMALL = dict(hidden_sizes=(64,), max_epochs=60, batch_size=64, lr=3e-3, stop_patience=8)


def test_classifier_learns_a_planted_rule_and_beats_the_prior(tmp_path):
    rng = np.random.default_rng(0)
    (x, y), (xv, yv), (xt, yt) = _planted_heads(rng, 3000), _planted_heads(rng, 800), _planted_heads(rng, 800)
    probe = HeadProbeClassifier(**SMALL).fit(x, y, xv, yv)
    scores = probe.evaluate(xt, yt)
    assert scores["f1"] > 0.85 and scores["auprc"] > 0.9
    base = prior(y, len(xv))
    baseline = classification_scores(yt, prior(y, len(xt)), best_threshold(yv, base))
    assert baseline["f1"] < 0.4 and scores["f1"] > baseline["f1"] + 0.4
    assert probe.predict(xt).shape == yt.shape and set(np.unique(probe.predict(xt))) <= {0, 1}
    probe.save(tmp_path / "probe.pt", model="tiny", kind="copy_paste")
    again, meta = load_probe(tmp_path / "probe.pt")
    assert meta == {"model": "tiny", "kind": "copy_paste"} and again.threshold_ == probe.threshold_
    assert np.array_equal(again.predict_proba(xt), probe.predict_proba(xt))
    # kv=probe_mean's fixed ranking: the mean predicted probability per head over the training rows, saved with it
    assert np.allclose(again.mean_output_, probe.predict_proba(x).mean(axis=0), atol=1e-6)
    assert again.mean_output_.shape == (y.shape[1],)


def test_regressor_learns_a_planted_map_and_beats_the_prior():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 8))

    def data(n):
        x = rng.normal(size=(n, 16)).astype(np.float32)
        return x, (1 / (1 + np.exp(-(x @ w) / 2))).astype(np.float32)

    (x, y), (xv, yv), (xt, yt) = data(3000), data(600), data(600)
    probe = HeadProbeRegressor(**SMALL).fit(x, y, xv, yv)
    scores = probe.evaluate(xt, yt)
    assert scores["r2"] > 0.9
    assert regression_scores(yt, prior(y, len(xt)))["r2"] < 0.05
    assert probe.score(xt, yt) == scores["r2"]


def test_bad_inputs_and_files_are_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="equal steps"):
        HeadProbeRegressor(**SMALL).fit(np.zeros((5, 3)), np.zeros((4, 2)))
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a probe")
    with pytest.raises(ValueError, match="cannot be read|not a dynheads probe"):
        load_probe(bogus)


def test_split_by_generation_keeps_every_generation_whole():
    groups = np.repeat(np.arange(40), np.random.default_rng(0).integers(1, 9, size=40))
    train, val, test = split_by_generation(groups, seed=3)
    parts = [set(groups[idx]) for idx in (train, val, test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sorted(np.r_[train, val, test]) == list(range(len(groups)))
    assert [len(p) for p in parts] == [28, 8, 4]
    assert all(np.array_equal(a, b) for a, b in zip(split_by_generation(groups, seed=3), (train, val, test)))
    assert not np.array_equal(split_by_generation(groups, seed=4)[2], test)
    with pytest.raises(ValueError, match="at least 3 generations"):
        split_by_generation(np.array([0, 0, 1]))


def test_previous_step_baseline_never_crosses_generations():
    y = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    groups = np.array([0, 0, 0, 1, 1])
    assert previous_step(y, groups, np.array([9.0])).ravel().tolist() == [9.0, 1.0, 2.0, 9.0, 4.0]
