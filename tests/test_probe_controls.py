"""Claim 3's controls on synthetic data with planted structure: held-out CCA reads test rows only, the shuffled
control is held out too, baselines are fitted on train and scored on test, the split by cell keeps test cells
unseen, and ``predicts`` needs the probe to beat every baseline."""

from __future__ import annotations

import numpy as np
import pytest

from dynheads.probes.dataset import StepVectors
from dynheads.probes.evaluation import (best_threshold, classification_scores, reference_cells, same_cell_step,
                                        step_index)
from dynheads.probes.train import cca_report, evaluate, probe_report

STEPS = 10


def _linked(generations: int, seed: int, linked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states and scores; with ``linked`` the scores are a fixed linear map of the hidden state."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(generations * STEPS, 8))
    w = np.random.default_rng(99).normal(size=(8, 6))
    y = x @ w + 0.01 * rng.normal(size=(len(x), 6)) if linked else rng.normal(size=(len(x), 6))
    return x, y


def test_held_out_cca_and_its_shuffled_control_are_scored_on_test_rows_only():
    """Train rows carry a planted linear link, test rows none: in-sample ~1, held-out ~0. Were the held-out
    numbers computed on training rows they would be ~1 too."""
    x_train, y_train = _linked(20, 0, linked=True)
    x_test, y_test = _linked(10, 1, linked=False)
    data = StepVectors(np.r_[x_train, x_test], np.r_[y_train, y_test], np.repeat(np.arange(30), STEPS), "reasoning", "m")
    train, test = np.arange(200), np.arange(200, 300)
    rows = cca_report(data, train, test, max_offset=1, n_components=3, seed=0)
    assert rows[0]["in_sample"]["top1"] > 0.99
    assert abs(rows[0]["held_out"]["top1"]) < 0.4
    assert abs(rows[0]["shuffled"]["top1"]) < 0.4 and rows[0]["shuffled_in_sample"]["top1"] < 0.6
    # the same test rows, now linked like training: held-out follows, the shuffled control does not
    x_test, y_test = _linked(10, 1, linked=True)
    data = StepVectors(np.r_[x_train, x_test], np.r_[y_train, y_test], data.groups, "reasoning", "m")
    rows = cca_report(data, train, test, max_offset=1, n_components=3, seed=0)
    assert rows[0]["held_out"]["top1"] > 0.99 and abs(rows[0]["shuffled"]["top1"]) < 0.6


def test_the_shuffled_control_is_scored_held_out():
    """Few rows, many dimensions: a shuffled pairing reaches a high *in-sample* correlation, while held out on
    test generations it stays near 0. The reported control must be the held-out one."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(160, 40)), rng.normal(size=(160, 30))
    data = StepVectors(x, y, np.repeat(np.arange(16), STEPS), "reasoning", "m")
    rows = cca_report(data, np.arange(80), np.arange(80, 160), max_offset=0, n_components=5, seed=0)
    assert rows[0]["shuffled_in_sample"]["top1"] > 0.8
    assert abs(rows[0]["shuffled"]["top1"]) < 0.4


def test_step_index_and_reference_cells():
    assert step_index(np.array([4, 4, 4, 7, 7, 2])).tolist() == [0, 1, 2, 0, 1, 0]
    train = np.array([[0.0, 500], [0.0, 2000], [0.5, 1000], [1.0, 750]])
    cells = np.array([[0.0, 1000], [0.5, 1000], [0.25, 750], [0.75, 750], [1.0, 4000]])
    # same depth, nearest length; a cell training has; equally near depths: the nearer length, then the smaller depth
    assert reference_cells(cells, train).tolist() == [[0.0, 500], [0.5, 1000], [0.0, 500], [1.0, 750], [1.0, 750]]


def test_same_cell_step_is_the_training_mean_at_that_step_in_the_reference_cell():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [0.0, 0.0]])
    train_cells = np.array([[0, 500], [0, 500], [0, 500], [0, 500], [1, 500]])
    train_steps = np.array([0, 1, 0, 1, 0])
    fallback = np.array([0.3, 0.3])
    got = same_cell_step(y, train_cells, train_steps, np.array([[0, 900], [0, 900], [0, 900], [1, 900]]),
                         np.array([0, 1, 2, 0]), fallback)
    # step 0 of cell (0, 500): mean of rows 0 and 2; step 1: rows 1 and 3; step 2 never seen: the fallback
    np.testing.assert_allclose(got, [[1, 0.5], [0, 0.5], [0.3, 0.3], [0, 0]])


def _cell_pattern_data(noise_seed: int = 0) -> tuple[StepVectors, np.ndarray, tuple[np.ndarray, ...]]:
    """Planted: at step t of a document at depth d, head (t + 2 * [d >= 0.5]) mod 4 retrieves; hidden states
    are noise. Train cells (0, 500) and (0.5, 500); validation (0.5, 750); test (0, 1000) and (0.5, 1000)."""
    cells_per_generation = [(0, 500)] * 4 + [(0.5, 500)] * 4 + [(0.5, 750)] * 2 + [(0, 1000)] * 2 + [(0.5, 1000)] * 2
    groups = np.repeat(np.arange(len(cells_per_generation)), STEPS)
    cells = np.array(cells_per_generation, dtype=float)[groups]
    steps = step_index(groups)
    y = np.zeros((len(groups), 4), dtype=np.float32)
    y[np.arange(len(groups)), (steps + 2 * (cells[:, 0] >= 0.5)) % 4] = 1
    x = np.random.default_rng(noise_seed).normal(size=(len(groups), 16)).astype(np.float32)
    split = (np.flatnonzero(groups < 8), np.flatnonzero((groups >= 8) & (groups < 10)), np.flatnonzero(groups >= 10))
    return StepVectors(x, y, groups, "copy_paste", "m"), cells, split


def test_baselines_are_fitted_on_train_and_scored_on_test_and_predicts_needs_all_of_them():
    data, cells, split = _cell_pattern_data()
    _, report = probe_report(data, split, {"hidden_sizes": (8,), "max_epochs": 2, "random_state": 0}, cells=cells)
    assert report["baselines"] == ["prior", "previous_step", "same_cell_step"]
    assert report["same_cell_step"]["f1"] == 1.0  # the planted step pattern, read from the nearest training cell
    # the head changes every step: the previous step is always wrong, no better than calling every head (F1 0.4)
    assert report["previous_step"]["f1"] <= 0.4 + 1e-9
    train, val, test = (data.subset(rows) for rows in split)
    prior_val = np.tile(train.scores.mean(axis=0), (len(val.scores), 1))
    prior_test = np.tile(train.scores.mean(axis=0), (len(test.scores), 1))
    expected = classification_scores(test.scores, prior_test, best_threshold(val.scores, prior_val))
    assert {k: report["prior"][k] for k in expected} == expected
    assert report["predicts"] is False  # noise hidden states cannot beat the same-cell-step baseline
    _, without = probe_report(data, split, {"hidden_sizes": (8,), "max_epochs": 2, "random_state": 0})
    assert without["baselines"] == ["prior", "previous_step"]


def test_baselines_fit_on_train_rows_and_score_on_test_rows():
    """Planted shift: training generations retrieve with head 0 only; validation alternates heads 0 and 1 each
    step; test generations retrieve with head 3 at every step. The prior (from training) misses head 3 on
    test; the previous step is right on test after its first step (and always wrong on validation)."""
    groups = np.repeat(np.arange(10), STEPS)
    y = np.zeros((len(groups), 4), dtype=np.float32)
    y[groups < 6, 0] = 1
    val = (groups >= 6) & (groups < 8)
    y[val, step_index(groups)[val] % 2] = 1
    y[groups >= 8, 3] = 1
    x = np.random.default_rng(0).normal(size=(len(groups), 8)).astype(np.float32)
    split = (np.flatnonzero(groups < 6), np.flatnonzero(val), np.flatnonzero(groups >= 8))
    _, report = probe_report(StepVectors(x, y, groups, "copy_paste", "m"), split,
                             {"hidden_sizes": (4,), "max_epochs": 1, "random_state": 0})
    assert report["prior"]["auprc"] < 0.5 and report["prior"]["recall"] == 0.0  # fitted on train: head 0, not 3
    assert report["previous_step"]["auprc"] > 0.8  # scored on test rows, where heads persist


def test_predicts_requires_beating_every_baseline():
    """Hidden states that encode the step's head let the probe beat the prior and the previous step, but it
    cannot beat the planted same-cell-step pattern (F1 1.0): ``predicts`` is then false."""
    data, cells, split = _cell_pattern_data()
    data.hidden = np.c_[data.scores * 3, data.hidden[:, :4] * 0.1].astype(np.float32)
    _, report = probe_report(data, split, {"hidden_sizes": (16,), "max_epochs": 60, "random_state": 0}, cells=cells)
    assert report["probe"]["f1"] > max(report["prior"]["f1"], report["previous_step"]["f1"])
    assert report["same_cell_step"]["f1"] == 1.0 and report["predicts"] is False


def test_evaluate_with_cells_splits_by_cell_and_records_the_fitted_documents():
    data, cells, _ = _cell_pattern_data()
    data.documents = [f"doc{g}" for g in range(14)]
    data.sources = ["f"] * 14
    _, report = evaluate(data, seed=3, max_offset=1, n_components=2, probe_params={"hidden_sizes": (8,), "max_epochs": 1},
                         cells=cells)
    s = report["split"]
    assert s["by"] == "cell"
    seen = {tuple(c) for part in ("train", "validation") for c in s[part]["cells"]}
    assert seen.isdisjoint(tuple(c) for c in s["test"]["cells"]) and s["test"]["cells"]
    test_generations = {g for g in range(14) if tuple(np.asarray(cells)[g * STEPS]) in {tuple(c) for c in s["test"]["cells"]}}
    assert set(report["fitted_documents"]) == {f"doc{g}" for g in range(14)} - {f"doc{g}" for g in test_generations}


def test_the_lm_refuses_a_probe_on_a_document_it_was_fitted_on():
    from dynheads.models.engine import DecodingError
    from dynheads.models.harness.held_out import check_unseen

    meta = {"documents": ["abc", "def"]}
    check_unseen(meta, "xyz", "p.pt", "niah_uuid", 0)
    with pytest.raises(DecodingError, match="trained or validated on niah_uuid document 3") as info:
        check_unseen(meta, "def", "p.pt", "niah_uuid", 3)
    assert "\n" not in str(info.value) and "seed" in str(info.value)


def test_pooled_scores_from_generation_sums_match_scikit_learn_and_the_report_carries_paired_intervals():
    from sklearn.metrics import average_precision_score

    from dynheads.probes.evaluation import (generation_sums, generation_weights, paired_generation_bootstrap, pooled_scores,
                                            predictor_draws, regression_scores, weighted_average_precision)

    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(12), 7)
    y = (rng.random((84, 5)) > 0.7).astype(float)
    p = np.round(np.clip(y * 0.4 + rng.random((84, 5)) * 0.6, 0, 1), 1)  # overlapping classes; rounded: tied scores
    pooled = pooled_scores(generation_sums(y, p, groups, threshold=0.5).sum(axis=0))
    for metric in ("f1", "precision", "recall"):
        assert pooled[metric] == pytest.approx(classification_scores(y, p, 0.5)[metric])
    target, pred = rng.normal(size=(84, 5)), rng.normal(size=(84, 5))
    regression = pooled_scores(generation_sums(target, target * 0.8 + pred * 0.2, groups, None).sum(axis=0))
    for metric in ("r2", "mse", "mae"):
        assert regression[metric] == pytest.approx(regression_scores(target, target * 0.8 + pred * 0.2)[metric])
    # AUPRC per draw = scikit-learn's average precision with each step weighted by its generation's draw count
    weights = generation_weights(groups, seed=3, resamples=5)
    assert len({round(float(weighted_average_precision(y, p, groups, w[None])[0]), 6) for w in weights}) > 1
    for w in weights:
        cell_weight = np.repeat(w[groups], 5)
        assert weighted_average_precision(y, p, groups, w[None])[0] == pytest.approx(
            average_precision_score(y.ravel(), p.ravel(), sample_weight=cell_weight))
    # a predictor that is better on every generation: the paired difference excludes 0 for F1 and AUPRC
    weights = generation_weights(groups, seed=0)
    good = predictor_draws(y, p, groups, 0.5, weights)
    worse = predictor_draws(y, np.clip(y * 0.2 + rng.random((84, 5)) * 0.5, 0, 1), groups, 0.5, weights)
    result = paired_generation_bootstrap(good, worse, 12)
    assert result["f1"]["difference"].low > 0 and result["auprc"]["difference"].low > 0 and result["f1"]["a"].n == 12
    assert result["f1"]["a"].estimate - result["f1"]["b"].estimate == pytest.approx(result["f1"]["difference"].estimate)
    # the report: the probe's own interval and a paired difference per baseline, on test generations
    data, cells, split = _cell_pattern_data()
    data.hidden = np.c_[data.scores * 3, data.hidden[:, :4] * 0.1].astype(np.float32)
    report_probe, report = probe_report(data, split, {"hidden_sizes": (16,), "max_epochs": 60, "random_state": 0}, cells=cells)
    assert report["probe"]["intervals"]["f1"]["estimate"] == pytest.approx(report["probe"]["f1"])
    assert report["probe"]["intervals"]["f1"]["n"] == 4  # test generations, not steps
    for metric in ("precision", "recall", "auprc"):
        own = report["probe"]["intervals"][metric]
        assert own["estimate"] == pytest.approx(report["probe"][metric]) and own["low"] <= own["estimate"] <= own["high"]
    assert report["paired"]["prior"]["f1"]["low"] > 0  # generation-bootstrap interval, for reading
    assert report["paired"]["same_cell_step"]["f1"]["estimate"] <= 0
    # the tests that decide are per unseen cell: 2 test cells here, however many generations they hold
    clustered = report["cluster_paired"]["prior"]["f1"]
    assert report["unit"] == "cell" and clustered["n"] == 2 and clustered["estimate"] > 0
    assert clustered["p"] == 0.5  # the exact sign-flip p of 2 positive units: 2 / 2^2
    from sklearn.metrics import average_precision_score

    test = data.subset(split[2])
    first = np.isin(test.groups, [10, 11])  # the generations of the first test cell, (0, 1000)
    proba = report_probe.predict_proba(test.hidden)
    assert report["cluster_paired"]["prior"]["auprc"]["estimate"] == pytest.approx(np.mean([
        average_precision_score(test.scores[rows].ravel() > 0.5, proba[rows].ravel())
        - average_precision_score(test.scores[rows].ravel() > 0.5, np.tile(data.subset(split[0]).scores.mean(axis=0),
                                                                            (rows.sum(), 1)).ravel())
        for rows in (first, ~first)]), abs=1e-9)


def test_a_regressor_that_tracks_the_scores_beats_the_prior_on_r2_and_on_mae():
    """Lower is better for MSE / MAE: the probe's claim there is a negative paired difference."""
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(30), STEPS)
    y = rng.random((len(groups), 4)) * 0.5
    x = np.c_[y * 4, rng.normal(size=(len(groups), 4)) * 0.05].astype(np.float32)
    data = StepVectors(x, y, groups, "reasoning", "m")
    split = tuple(np.flatnonzero(np.isin(groups, part)) for part in (np.arange(18), np.arange(18, 24), np.arange(24, 30)))
    _, report = probe_report(data, split, {"hidden_sizes": (16,), "max_epochs": 300, "random_state": 0})
    paired = report["paired"]["prior"]
    assert paired["r2"]["low"] > 0 and paired["mae"]["high"] < 0
    assert report["probe"]["intervals"]["mae"]["n"] == 6
    # per test generation (no cells): 6 units, all better, exact sign-flip p 2 / 2^6; the probes rule needs 10 units
    clustered = report["cluster_paired"]["prior"]
    assert report["unit"] == "generation" and clustered["r2"]["n"] == 6 and clustered["r2"]["p"] == 2 / 2 ** 6
    assert clustered["mae"]["estimate"] < 0
    # per-unit R² shares average to the pooled R²: the tested mean difference is the table's R² difference
    assert clustered["r2"]["estimate"] == pytest.approx(report["probe"]["r2"] - report["prior"]["r2"], abs=1e-6)
    from dynheads.suite.verdicts import decide_table

    decided = decide_table("probes", {m: (clustered[m], -1 if m == "mae" else 1) for m in ("r2", "mae")})
    assert decided["r2"]["verdict"] == decided["mae"]["verdict"] == "insufficient n (n = 6 < 10)"
