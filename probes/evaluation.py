"""Scores of head predictions, micro-averaged over every (step, head) cell, and the trivial baselines.

Why micro: the paper reports one precision / recall / F1 / AUPRC per model, which we read as pooled
over steps x heads (a head that never fires then weighs as little as it should). scikit-learn
computes every number; this module only fixes how they are pooled, and how a decision threshold is
chosen (the F1-maximising point of the validation precision-recall curve).

The baselines a probe must beat, on the same held-out generations: the *prior* (each head's training
activation rate / mean score, whatever the hidden state), the *previous step* (the same generation's
score vector one step earlier; the prior at a generation's first step) and, where documents come in
cells (NIAH's length x depth), the *same cell and step* (the training generations' mean at the same step
index in the same cell, or the nearest training cell: what "where am I in which kind of document" alone
predicts, with no hidden state).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (average_precision_score, mean_absolute_error, mean_squared_error, precision_recall_curve,
                             precision_recall_fscore_support, r2_score)

from ..metrics.intervals import Interval, draw_weights, percentile_interval


def best_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold with the highest F1 on the precision-recall curve of ``(y_true, proba)``."""
    y, p = np.asarray(y_true).ravel().astype(int), np.asarray(proba, dtype=float).ravel()
    if y.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0, precision + recall, 1), 0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def classification_scores(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Micro precision, recall, F1 at ``threshold`` and AUPRC (average precision) over all cells."""
    y, p = np.asarray(y_true).ravel().astype(int), np.asarray(proba, dtype=float).ravel()
    precision, recall, f1, _ = precision_recall_fscore_support(y, p >= threshold, average="binary", zero_division=0)
    auprc = float(average_precision_score(y, p)) if y.any() else float("nan")
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "auprc": auprc, "threshold": float(threshold)}


def regression_scores(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² over all (step, head) cells pooled (R² against the pooled mean)."""
    y, p = np.asarray(y_true, dtype=float).ravel(), np.asarray(pred, dtype=float).ravel()
    return {"mse": float(mean_squared_error(y, p)), "mae": float(mean_absolute_error(y, p)), "r2": float(r2_score(y, p))}


def prior(y_train: np.ndarray, rows: int) -> np.ndarray:
    """Each head's training mean (activation rate for 0/1 targets), repeated for ``rows`` steps."""
    return np.tile(np.asarray(y_train, dtype=float).mean(axis=0), (rows, 1))


def previous_step(y: np.ndarray, groups: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Row i predicted by row i - 1 of the same generation; ``fallback`` (one row) at a generation's first step."""
    y, groups = np.asarray(y, dtype=float), np.asarray(groups)
    out = np.empty_like(y)
    out[:] = fallback
    same = np.r_[False, groups[1:] == groups[:-1]]
    out[same] = y[np.flatnonzero(same) - 1]
    return out


def step_index(groups: np.ndarray) -> np.ndarray:
    """Each row's step index within its generation (rows of a generation contiguous, in step order)."""
    groups = np.asarray(groups)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(groups)), 0))
    return np.arange(len(groups)) - first


def reference_cells(cells: np.ndarray, train_cells: np.ndarray) -> np.ndarray:
    """For each row's cell (coordinates, most important first, e.g. (depth, length)), the training cell it is
    compared with: itself when training has it, else the nearest in the first coordinate, then the second,
    ties to the smaller value."""
    cells, known = np.asarray(cells, dtype=float), np.unique(np.asarray(train_cells, dtype=float), axis=0)
    out = np.empty_like(cells)
    for cell in np.unique(cells, axis=0):
        distance = np.abs(known - cell)
        order = np.lexsort(tuple(known[:, c] for c in reversed(range(known.shape[1])))
                           + tuple(distance[:, c] for c in reversed(range(known.shape[1]))))
        out[(cells == cell).all(axis=1)] = known[order[0]]
    return out


def same_cell_step(y_train: np.ndarray, train_cells: np.ndarray, train_steps: np.ndarray, cells: np.ndarray,
                   steps: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Row i predicted by the mean training target at step ``steps[i]`` in the reference training cell of
    ``cells[i]`` (:func:`reference_cells`); ``fallback`` (one row) where no training generation of that cell
    reached that step."""
    y_train = np.asarray(y_train, dtype=float)
    train_cells = np.asarray(train_cells, dtype=float)
    reference = reference_cells(cells, train_cells)
    sums: dict[tuple, np.ndarray] = {}
    counts: dict[tuple, int] = {}
    for row, (cell, step) in enumerate(zip(map(tuple, train_cells), np.asarray(train_steps))):
        key = (cell, int(step))
        sums[key] = sums.get(key, 0) + y_train[row]
        counts[key] = counts.get(key, 0) + 1
    out = np.empty((len(reference), y_train.shape[1]))
    out[:] = fallback
    for row, (cell, step) in enumerate(zip(map(tuple, reference), np.asarray(steps))):
        key = (cell, int(step))
        if key in counts:
            out[row] = sums[key] / counts[key]
    return out


# -- lm-eval aggregations: each item is one document's {"target", "pred", "threshold"} (steps x heads);
# the statistic pools every step of every document, as the suite's tables do.
def _pooled(items: list[dict]) -> tuple[np.ndarray, np.ndarray, float | None]:
    target = np.concatenate([np.asarray(i["target"], dtype=float).reshape(-1) for i in items]) if items else np.zeros(0)
    pred = np.concatenate([np.asarray(i["pred"], dtype=float).reshape(-1) for i in items]) if items else np.zeros(0)
    return target, pred, (items[0].get("threshold") if items else None)


def agg_probe_f1(items: list[dict]) -> float:
    target, pred, threshold = _pooled(items)
    return classification_scores(target, pred, threshold)["f1"] if len(target) else float("nan")


def agg_probe_auprc(items: list[dict]) -> float:
    target, pred, threshold = _pooled(items)
    return classification_scores(target, pred, threshold)["auprc"] if len(target) else float("nan")


def agg_probe_r2(items: list[dict]) -> float:
    target, pred, _ = _pooled(items)
    return regression_scores(target, pred)["r2"] if len(target) else float("nan")


def agg_probe_mae(items: list[dict]) -> float:
    target, pred, _ = _pooled(items)
    return regression_scores(target, pred)["mae"] if len(target) else float("nan")


# -- intervals over test generations: pooled scores are sums over generations, so a bootstrap that draws
# generations only re-weights per-generation sums (vectorised; no metric call per resample). AUPRC is not a
# ratio of sums; it is recomputed per draw from one sort, with each step weighted by how often its
# generation was drawn (what scikit-learn's sample_weight would give, without re-sorting 2,000 times).
def generation_sums(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, threshold: float | None) -> np.ndarray:
    """Per generation (rows in order of ``np.unique(groups)``) the sums a pooled score needs: with ``threshold``
    (classification) TP, FP, FN over its steps x heads; without (regression) n, Σy, Σy², Σ(y - pred)², Σ|y - pred|."""
    y, pred, groups = np.asarray(y, dtype=float), np.asarray(pred, dtype=float), np.asarray(groups)
    _, index = np.unique(groups, return_inverse=True)
    if threshold is not None:
        hit, truth = pred >= threshold, y > 0.5
        columns = [(hit & truth).sum(axis=1), (hit & ~truth).sum(axis=1), (~hit & truth).sum(axis=1)]
    else:
        columns = [np.full(len(y), y.shape[1]), y.sum(axis=1), (y ** 2).sum(axis=1), ((y - pred) ** 2).sum(axis=1),
                   np.abs(y - pred).sum(axis=1)]
    return np.stack([np.bincount(index, weights=c.astype(float)) for c in columns], axis=1)


def pooled_scores(totals: np.ndarray) -> dict[str, np.ndarray]:
    """From summed rows ``[..., columns]`` of :func:`generation_sums`: F1, precision and recall (3 columns: TP,
    FP, FN; 0 where undefined, as scikit-learn's ``zero_division=0``) or R², MSE and MAE (5 columns)."""
    def ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
        return np.divide(num, den, out=np.full_like(num, empty, dtype=float), where=den > 0)

    if totals.shape[-1] == 3:
        tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
        return {"f1": ratio(2 * tp, 2 * tp + fp + fn, 0.0), "precision": ratio(tp, tp + fp, 0.0),
                "recall": ratio(tp, tp + fn, 0.0)}
    n, s, s2, sse, sae = (totals[..., i] for i in range(5))
    sst = s2 - s ** 2 / np.maximum(n, 1)  # squares about the pooled mean, as r2_score pools them
    return {"r2": 1 - ratio(sse, sst, np.nan), "mse": ratio(sse, n, np.nan), "mae": ratio(sae, n, np.nan)}


def weighted_average_precision(y: np.ndarray, proba: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's step-wise definition) of every (step, head) cell pooled, once per row of
    ``weights`` (``[draws, generations]``: each step counts as often as its generation was drawn); NaN without
    a positive."""
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    truth = (np.asarray(y, dtype=float) > 0.5).reshape(-1)
    proba = np.asarray(proba, dtype=float).reshape(-1)
    cell_generation = np.repeat(index.ravel(), np.asarray(y).shape[1])
    order = np.argsort(-proba, kind="mergesort")
    truth, proba, cell_generation = truth[order], proba[order], cell_generation[order]
    ends = np.r_[np.flatnonzero(np.diff(proba)), len(proba) - 1]  # last cell of each distinct score
    out = np.full(len(weights), np.nan)
    for row, w in enumerate(np.atleast_2d(weights)):
        cell_weight = w[cell_generation]
        tp = np.cumsum(cell_weight * truth)[ends]
        predicted = np.cumsum(cell_weight)[ends]
        if tp[-1] > 0:
            precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
            out[row] = float(np.sum(np.diff(np.r_[0.0, tp / tp[-1]]) * precision))
    return out


def weighted_auroc(y: np.ndarray, score: np.ndarray, groups: np.ndarray, weights: np.ndarray, block: int = 256) -> np.ndarray:
    """AUROC of ``score`` against 0/1 ``y`` once per row of ``weights`` (``[draws, groups]``: each row counts as often
    as its group was drawn), ties counted half: the weighted Mann-Whitney statistic, what scikit-learn's
    ``roc_auc_score(sample_weight=...)`` gives. NaN for a draw without both classes.

    Why by hand: one sort serves every draw (cumulative negative weight below each score), where calling
    scikit-learn per draw would sort 2,000 times; draws go in blocks of ``block`` to bound memory."""
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    y, score = np.asarray(y, dtype=float).ravel(), np.asarray(score, dtype=float).ravel()
    order = np.argsort(score, kind="mergesort")
    y, score, index = y[order], score[order], index.ravel()[order]
    new = np.r_[True, np.diff(score) != 0]
    first = np.maximum.accumulate(np.where(new, np.arange(len(score)), 0))  # first row of each row's tie group
    last = np.r_[np.flatnonzero(new)[1:] - 1, len(score) - 1][np.cumsum(new) - 1]  # last row of it
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    out = np.full(len(weights), np.nan)
    for start in range(0, len(weights), block):
        w = weights[start : start + block][:, index]
        negative = np.cumsum(w * (1 - y), axis=1)
        below = np.where(first > 0, negative[:, np.maximum(first - 1, 0)], 0.0)
        tied = negative[:, last] - below
        positive = w * y
        pairs = positive.sum(axis=1) * negative[:, -1] if len(score) else np.zeros(len(w))
        won = (positive * (below + 0.5 * tied)).sum(axis=1)
        out[start : start + block] = np.divide(won, pairs, out=np.full(len(w), np.nan), where=pairs > 0)
    return out


def detector_draws(y: np.ndarray, score: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC and AUPRC of one detector's scores for each row of ``weights`` (same draws for every detector: paired)."""
    return {"auroc": weighted_auroc(y, score, groups, weights),
            "auprc": weighted_average_precision(np.asarray(y)[:, None], np.asarray(score)[:, None], groups, weights)}


def predictor_draws(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, threshold: float | None,
                    weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every pooled score of one predictor (F1, precision, recall, AUPRC; or R², MSE, MAE) for each row of
    ``weights``: the same draws for every predictor make their differences paired."""
    scores = pooled_scores(weights @ generation_sums(y, pred, groups, threshold))
    if threshold is not None:
        scores["auprc"] = weighted_average_precision(y, pred, groups, weights)
    return scores


def generation_weights(groups: np.ndarray, seed: int, resamples: int = 2000) -> np.ndarray:
    """Row 0: every test generation once (the estimate); rows 1..: the bootstrap draws of generations."""
    g = len(np.unique(np.asarray(groups)))
    if g < 1:
        raise ValueError("dynheads: an interval over generations needs at least one test generation")
    return np.vstack([np.ones(g), draw_weights(g, seed, resamples)])


def class_stratified_weights(groups: np.ndarray, y: np.ndarray, seed: int, resamples: int = 2000) -> np.ndarray:
    """Like :func:`generation_weights` for an AUROC: documents are drawn with repetition *within* strata of
    what they hold (positives only, negatives only, both), each stratum keeping its size, so every draw holds
    both classes and no draw is dropped (a plain draw of 3 positive answers among 30 misses all of them in
    ~4 % of draws, and dropping those conditions the interval on the draws the data barely allow)."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    y = np.asarray(y, dtype=float).ravel()
    has_pos = np.bincount(index.ravel(), weights=y, minlength=len(names)) > 0
    has_neg = np.bincount(index.ravel(), weights=1 - y, minlength=len(names)) > 0
    if not (has_pos.any() and has_neg.any()):
        raise ValueError("dynheads: an AUROC interval needs both classes among the test rows")
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples + 1, len(names)))
    weights[0] = 1
    for stratum in {(p, q) for p, q in zip(has_pos, has_neg)}:
        members = np.flatnonzero((has_pos == stratum[0]) & (has_neg == stratum[1]))
        drawn = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        for row, picks in enumerate(drawn, start=1):
            np.add.at(weights[row], picks, 1)
    return weights


def paired_generation_bootstrap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], generations: int,
                                level: float = 0.95) -> dict[str, dict[str, Interval]]:
    """Per score: predictor A's interval, B's, and A - B's over ``generations`` test generations, from
    :func:`predictor_draws` of both on the same :func:`generation_weights` (row 0 the estimate)."""
    out = {}
    for metric in [m for m in a if m in b]:
        if len(a[metric]) != len(b[metric]):
            raise ValueError("dynheads: a paired interval needs both predictors on the same draws of the same generations")
        out[metric] = {"a": percentile_interval(a[metric][1:], a[metric][0], generations, level),
                       "b": percentile_interval(b[metric][1:], b[metric][0], generations, level),
                       "difference": percentile_interval(a[metric][1:] - b[metric][1:], a[metric][0] - b[metric][0],
                                                         generations, level)}
    return out
