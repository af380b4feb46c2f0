"""Hallucination detectors side by side on the same traced answers (issue 21; the paper's concluding conjecture).

Every detector reads one traced answer (or, at token level, one step of it) and returns a score that is high when
the answer is hallucinated:

* ``absence`` -- the paper's idea, no training: the share of answer steps at which no retrieval head fired
  (Eq. 1 on NIAH; Eq. 2 above its threshold on HotpotQA); at token level, 1 when the step has none;
* ``entropy`` and ``min_prob`` -- uncertainty baselines, no training: the mean next-token entropy, and one minus
  the lowest greedy-token probability, over the answer steps (the step's own values at token level);
* ``lookback_lens`` -- Chuang et al. (2024): every head's lookback ratio averaged over the answer steps, into a
  logistic regression;
* ``hidden_state`` -- a logistic regression on the mean final hidden state of the answer steps;
* ``retrieval_heads`` -- the paper's signal with Lookback Lens's learning budget: every head's activation rate
  over the answer steps, into a logistic regression.

The trained ones are scikit-learn pipelines (standardise, then ``LogisticRegression``); the untrained ones are
:class:`SignalScore`, which has the same ``fit`` / ``decision_function`` / ``score`` face, so one loop fits and
scores all six.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..metrics.hallucination import lookback_ratios

DETECTORS = ("absence", "retrieval_heads", "lookback_lens", "hidden_state", "entropy", "min_prob")
TRAINED = ("retrieval_heads", "lookback_lens", "hidden_state")
REFERENCE = "lookback_lens"  # the published detector every other one is paired against
LABELS = {"absence": "retrieval-head absence (no training)", "retrieval_heads": "retrieval-head rates + LR",
          "lookback_lens": "Lookback Lens (lookback ratios + LR)", "hidden_state": "hidden state + LR",
          "entropy": "mean token entropy", "min_prob": "1 - min token probability"}
Table = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]  # per detector [rows, features], labels, documents


@dataclass
class TracedAnswer:
    """One traced answer and what every detector reads from it.

    ``active``: ``[steps, layers * heads]`` retrieval-head indicators; ``context_mass``: the same shape, each
    head's attention on the prompt; ``hidden``: ``[steps, dim]``; ``entropy`` / ``token_prob``: ``[steps]``;
    ``steps``: the answer's steps; ``label``: hallucinated; ``step_labels``: per answer step, hallucinated token
    (NIAH only); ``group``: the document (the unit the split and the bootstrap draw); ``cell``: the split's unit.
    """

    group: str
    cell: tuple
    label: bool
    steps: list[int]
    active: np.ndarray
    context_mass: np.ndarray
    prompt_tokens: int
    hidden: np.ndarray
    entropy: np.ndarray
    token_prob: np.ndarray
    step_labels: dict[int, bool] = field(default_factory=dict)
    extra_labels: dict[str, bool] = field(default_factory=dict)

    def step_features(self) -> dict[str, np.ndarray]:
        """Per detector, ``[steps, features]`` at every step of the trace: where the stored signals become features
        (the lookback ratios are computed here). :func:`feature_tables` calls it once per answer per run."""
        active = np.asarray(self.active, dtype=float)
        return {"absence": 1.0 - active.max(axis=1, initial=0.0)[:, None], "retrieval_heads": active,
                "lookback_lens": lookback_ratios(self.context_mass, self.prompt_tokens),
                "hidden_state": np.asarray(self.hidden, dtype=float),
                "entropy": np.asarray(self.entropy, dtype=float)[:, None],
                "min_prob": 1.0 - np.asarray(self.token_prob, dtype=float)[:, None]}


@dataclass(frozen=True)
class FeatureTables:
    """The detectors' tables of one side of a split (a task's train or test answers), built once per run by
    :func:`feature_tables`: the answer level (``answer_x``, one row per answer) and the token level (one row per
    labelled answer step, NIAH). Labels are read per call, so a second label (HotpotQA's ``em0``) reuses the
    features instead of rebuilding them."""

    answers: list[TracedAnswer]
    answer_x: dict[str, np.ndarray]
    tokens: Table

    def answer_table(self, label: str | None = None) -> Table:
        """Per detector ``[answers, features]``, the labels (``label`` names an ``extra_labels`` entry; default the
        main one) and each row's document."""
        y = np.array([a.extra_labels[label] if label else a.label for a in self.answers], dtype=int)
        return self.answer_x, y, np.array([a.group for a in self.answers])

    def step_table(self) -> Table:
        """The token-level table: one row per labelled answer step (NIAH), the same layout as :meth:`answer_table`."""
        return self.tokens


def answer_row(per_step: dict[str, np.ndarray], steps: list[int]) -> dict[str, np.ndarray]:
    """Per detector, one ``[features]`` row over the answer ``steps``: means, and the maximum of ``1 - prob`` (the
    lowest token probability)."""
    return {name: x[steps].max(axis=0) if name == "min_prob" else x[steps].mean(axis=0)
            for name, x in per_step.items()}


def feature_tables(answers: list[TracedAnswer]) -> FeatureTables:
    """Both tables of ``answers`` from one :meth:`TracedAnswer.step_features` per answer. Why a loop that keeps
    only the rows: an answer's per-step features (every trace step, hidden states in float64) are dropped once its
    answer row and labelled steps are taken, so a task's whole traces are never held at once."""
    rows, parts, y, groups = [], [], [], []
    for a in answers:
        per_step = a.step_features()
        rows.append(answer_row(per_step, a.steps))
        labelled = sorted(a.step_labels)
        if labelled:
            parts.append({name: x[labelled] for name, x in per_step.items()})
            y += [a.step_labels[t] for t in labelled]
            groups += [a.group] * len(labelled)
    answer_x = {name: np.stack([r[name] for r in rows]) for name in DETECTORS}
    return FeatureTables(answers, answer_x, token_table(parts, y, groups))


def token_table(parts: list[dict[str, np.ndarray]], y: list[bool], groups: list[str]) -> Table:
    """The token-level table from each labelled answer's rows; without any (HotpotQA), empty with one column per
    detector, so that :func:`fit_and_score` still reads every detector."""
    if not parts:
        return {name: np.zeros((0, 1)) for name in DETECTORS}, np.zeros(0, dtype=int), np.array([], dtype=str)
    return {name: np.concatenate([p[name] for p in parts]) for name in DETECTORS}, np.array(y, dtype=int), np.array(groups)


class SignalScore(BaseEstimator):
    """An untrained detector: its single feature is the score. ``fit`` only checks the shape, so the untrained
    detectors go through the same loop as the trained ones."""

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "SignalScore":
        if np.asarray(x).ndim != 2 or np.asarray(x).shape[1] != 1:
            raise ValueError(f"dynheads: an untrained detector reads one feature per row, got shape {np.asarray(x).shape}")
        self.fitted_ = True
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float)[:, 0]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """AUROC of the score against the labels (1 = hallucinated)."""
        return float(roc_auc_score(y, self.decision_function(x)))


def make_detector(name: str, c: float = 1.0, seed: int = 0) -> BaseEstimator:
    """The estimator of detector ``name``: :class:`SignalScore` or standardise + L2 logistic regression with
    inverse strength ``c`` (Lookback Lens fits a plain logistic regression; the standardisation makes one ``c``
    fit features as different as ratios in [0, 1] and hidden-state coordinates)."""
    if name not in DETECTORS:
        raise ValueError(f"dynheads: unknown hallucination detector {name!r}; choose from {', '.join(DETECTORS)}")
    if name not in TRAINED:
        return SignalScore()
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))


def fit_and_score(train: dict[str, np.ndarray], y_train: np.ndarray, test: dict[str, np.ndarray], c: float = 1.0,
                  seed: int = 0) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each detector's scores on ``test`` (fitted on ``train``), and the trained detectors that could not be fitted
    (training labels of one class): those are left out, never scored as 0."""
    scores, unfitted = {}, []
    for name in DETECTORS:
        if name in TRAINED and len(np.unique(y_train)) < 2:
            unfitted.append(name)
            continue
        model = make_detector(name, c, seed).fit(train[name], y_train)
        scores[name] = model.decision_function(test[name])
    return scores, unfitted
