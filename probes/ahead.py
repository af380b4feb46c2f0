"""A probe that predicts a step's heads before the step runs: the hidden state of step t - k for the heads of step t.

Why: a per-step KV policy (``kv=dynamic``) must decide which heads keep the whole context *before* step t's forward
pass, so it can only read what step t - 1 produced. Claim 3's probe reads step t's own hidden state (offset 0); this
one is the same MLP fitted on pairs shifted by ``offset`` within each generation, from the same sidecar data.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..traces import COPY_PASTE
from .dataset import StepVectors
from .evaluation import best_threshold, classification_scores, previous_step, prior, regression_scores, step_index
from .mlp import HeadProbeClassifier, HeadProbeRegressor
from .split import split_train_validation


def shifted(data: StepVectors, offset: int = 1) -> StepVectors:
    """Rows ``(hidden of step t - offset, scores of step t)`` for every step ``t >= offset`` of each generation."""
    if offset < 0:
        raise ValueError(f"dynheads: a probe offset must be >= 0, got {offset}")
    rows = np.flatnonzero(step_index(data.groups) >= offset)
    return StepVectors(data.hidden[rows - offset], data.scores[rows], data.groups[rows], data.kind, data.model,
                       data.documents, data.sources)


def fit_ahead(data: StepVectors, offset: int = 1, params: dict[str, Any] | None = None, seed: int = 0,
              progress: Callable | None = None) -> tuple[Any, dict[str, Any]]:
    """The offset probe fitted on 80 % of the generations, with its validation scores beside the prior and
    previous-step baselines on the remaining 20 % (by generation; these steer early stopping and the threshold, so
    they are not a held-out test: the KV stage's downstream scores are)."""
    pairs = shifted(data, offset)
    train, val = split_train_validation(pairs.groups, 0.2, seed)
    classify = data.kind == COPY_PASTE
    probe = (HeadProbeClassifier if classify else HeadProbeRegressor)(**{"random_state": seed, **(params or {})})
    probe.fit(pairs.hidden[train], pairs.scores[train], pairs.hidden[val], pairs.scores[val], progress=progress)
    y_val, groups = pairs.scores[val], pairs.groups[val]
    base = prior(pairs.scores[train], len(val))
    # at offset k the previous-step baseline is the scores of step t - k, known when step t is chosen
    lagged = data.scores[np.flatnonzero(step_index(data.groups) >= offset)[val] - offset] if offset else base
    predictions = {"probe": probe.predict_proba(pairs.hidden[val]) if classify else probe.predict(pairs.hidden[val]),
                   "prior": base, "previous_step": lagged if offset else previous_step(y_val, groups, base[0])}
    scores = {name: (classification_scores(y_val, p, getattr(probe, "threshold_", None) if name == "probe" else best_threshold(y_val, p))
                     if classify else regression_scores(y_val, p)) for name, p in predictions.items()}
    report = {"offset": offset, "kind": data.kind, "train": {"generations": int(len(np.unique(pairs.groups[train]))),
                                                             "steps": int(len(train))},
              "validation": {"generations": int(len(np.unique(groups))), "steps": int(len(val))},
              "scores": scores, "epochs": len(probe.history_)}
    return probe, report
