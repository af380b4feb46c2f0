"""The offset probe of ``kv=dynamic``: pairs shifted within generations, a planted one-step-ahead signal learned."""

from __future__ import annotations

import numpy as np

from dynheads.probes.ahead import fit_ahead, shifted
from dynheads.probes.dataset import StepVectors


def _planted(generations: int = 40, steps: int = 12, dim: int = 8, heads: int = 6, seed: int = 0) -> StepVectors:
    """Head h of step t is active when feature h of step t - 1's hidden state is positive (step 0: never)."""
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((generations * steps, dim)).astype(np.float32)
    groups = np.repeat(np.arange(generations), steps)
    scores = np.zeros((len(hidden), heads), dtype=np.float32)
    for g in range(generations):
        rows = np.flatnonzero(groups == g)
        scores[rows[1:]] = (hidden[rows[:-1], :heads] > 0)
    return StepVectors(hidden, scores, groups, "copy_paste", "toy", [f"doc{g}" for g in range(generations)], ["f"] * generations)


def test_shifted_pairs_each_step_with_the_previous_steps_hidden_state():
    data = _planted(generations=3, steps=4)
    pairs = shifted(data, 1)
    assert len(pairs.hidden) == 3 * 3
    np.testing.assert_array_equal(pairs.hidden[0], data.hidden[0])
    np.testing.assert_array_equal(pairs.scores[0], data.scores[1])
    np.testing.assert_array_equal(pairs.hidden[3], data.hidden[4])  # the second generation starts afresh
    np.testing.assert_array_equal(pairs.scores[3], data.scores[5])
    assert np.array_equal(shifted(data, 0).hidden, data.hidden)


def test_offset_one_probe_learns_the_planted_lag_and_beats_the_baselines():
    data = _planted()
    probe, report = fit_ahead(data, 1, {"hidden_sizes": (32,), "max_epochs": 60, "lr": 3e-3}, seed=0)
    scores = report["scores"]
    assert report["offset"] == 1 and report["train"]["generations"] + report["validation"]["generations"] == 40
    assert scores["probe"]["f1"] > 0.9
    assert scores["probe"]["f1"] > scores["prior"]["f1"] + 0.2 and scores["probe"]["f1"] > scores["previous_step"]["f1"] + 0.2
    _, same_step = fit_ahead(data, 0, {"hidden_sizes": (32,), "max_epochs": 60, "lr": 3e-3}, seed=0)
    assert same_step["scores"]["probe"]["f1"] < scores["probe"]["f1"] - 0.2  # the signal is one step ahead only
