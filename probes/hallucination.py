"""Hallucination detectors side by side on the same traced answers (the paper's concluding conjecture).

Every detector reads one traced answer (or, at token level, one answer token) and returns a score that is high when
the answer is hallucinated. Three kinds, kept apart because only the first can support a finding:

* **before the judged token** (:data:`PRE_TOKEN`): computed from decode steps whose attention rows and hidden states
  exist before the token they are judged on is chosen. At answer level, the steps up to the answer's first token
  (the prefill's row and the lead-in, "The magic word is"); at token level, step t - 1 for the token of step t.

  * ``target_absence`` -- the conjecture without a token match, no training: one minus the strongest head's attention
    mass on the target (NIAH: the needle; HotpotQA: the supporting facts);
  * ``target_mass`` -- each head's attention mass on the target, into a logistic regression;
  * ``lookback_lens`` -- Chuang et al. (2024): each head's lookback ratio (the response header counted among the new
    tokens, as its authors do), into a logistic regression; ``lookback_mean`` -- its untrained baseline, one minus
    the mean ratio over heads;
  * ``hidden_state`` -- a logistic regression on the final hidden state;
  * ``entropy`` and ``min_prob`` -- uncertainty, no training: next-token entropy, and one minus the greedy token's
    probability (a property of the distribution, not of the token chosen).

* **confounds** (:data:`CONFOUNDS`), oriented by a one-feature logistic regression on the training rows:
  ``context_length`` (prompt tokens), ``needle_depth`` (NIAH) and, at token level, ``answer_position`` (the token's
  index in the answer). A detector that does no better than these
  reads the document's shape, not the model's retrieval.

* **references that read the label** (:data:`REFERENCES`): ``absence`` (the share of answer steps with no Eq. 1 / Eq. 2
  head) and ``retrieval_heads`` (each head's activation rate + LR) over the answer's *own* steps. An Eq. 1 head exists
  at a step only if the step's token equals the needle token it attends to, so on NIAH "no retrieval head" nearly
  restates "not a needle copy": true by construction, reported only as a reference.

The trained detectors are scikit-learn pipelines (standardise, then ``LogisticRegressionCV``: the L2 strength chosen
by cross-validated AUROC on the training rows, folds by document), the untrained ones :class:`SignalScore`, which
has the same ``fit`` / ``decision_function`` / ``score`` face, so one loop fits and scores all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..metrics.hallucination import lookback_ratios

PRE_TOKEN = ("target_absence", "target_mass", "lookback_lens", "lookback_mean", "hidden_state", "entropy", "min_prob")
CONFOUNDS = ("context_length", "needle_depth", "answer_position")
REFERENCES = ("absence", "retrieval_heads")
DETECTORS = PRE_TOKEN + CONFOUNDS + REFERENCES
# the confounds go through a one-feature logistic regression too: its sign, learnt on the training rows, orients them
# (errors may come early or late in an answer, in short or long documents), as a trained detector is oriented
TRAINED = ("target_mass", "lookback_lens", "hidden_state", "retrieval_heads", *CONFOUNDS)
REFERENCE = "lookback_lens"  # the published detector every other one is paired against
CONJECTURE = "target_absence"  # the conjecture's statistic: no retrieval attention, no token match, no training
LABELS = {"target_absence": "target absence (1 − max head mass on the target; no training)",
          "target_mass": "target mass per head + LR", "lookback_lens": "Lookback Lens (lookback ratios + LR)",
          "lookback_mean": "mean lookback ratio (no training)", "hidden_state": "hidden state + LR",
          "entropy": "token entropy", "min_prob": "1 − greedy token probability",
          "context_length": "context length only (confound)", "needle_depth": "needle depth only (confound)",
          "answer_position": "position in the answer only (confound)",
          "absence": "retrieval-head absence (reads the token: reference)",
          "retrieval_heads": "retrieval-head rates + LR (reads the token: reference)"}
CS = tuple(10.0 ** np.arange(-3, 3))  # the L2 strengths cross-validation chooses among
Table = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]  # per detector [rows, features], labels, documents


@dataclass
class TracedAnswer:
    """One traced answer and what every detector reads from it.

    ``active``: ``[steps, layers * heads]`` retrieval-head indicators; ``context_mass`` / ``target_mass``: the same
    shape, each head's attention on the prompt less its ``response_header`` last tokens / on the target;
    ``hidden``: ``[steps, dim]``; ``entropy`` / ``token_prob``: ``[steps]``; ``steps``: the answer's steps (the first
    is where the answer starts); ``label``: hallucinated; ``step_labels``: per answer step, hallucinated token (NIAH
    only); ``group``: the document (the unit the split and the bootstrap draw); ``cell``: the split's unit;
    ``depth``: the needle's depth (NIAH); ``stratum``: the length stratum the within-length AUROC compares within.
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
    target_mass: np.ndarray | None = None
    response_header: int = 0
    depth: float | None = None
    stratum: int | None = None
    step_labels: dict[int, bool] = field(default_factory=dict)
    extra_labels: dict[str, bool] = field(default_factory=dict)

    @property
    def answer_start(self) -> int:
        return self.steps[0] if self.steps else 0

    def labelled_steps(self) -> list[int]:
        """The token-level rows of this answer: its labelled steps after the first (step 0 has no previous step to
        predict it from)."""
        return sorted(t for t in self.step_labels if t >= 1)

    def step_features(self) -> dict[str, np.ndarray]:
        """Per detector, ``[steps, features]`` at every step of the trace: where the stored signals become features
        (the lookback ratios are computed here). :func:`feature_tables` calls it once per answer per run."""
        steps = len(self.entropy)
        active = np.asarray(self.active, dtype=float)
        target = np.zeros_like(active) if self.target_mass is None else np.asarray(self.target_mass, dtype=float)
        ratios = lookback_ratios(self.context_mass, self.prompt_tokens, self.response_header)
        out = {"target_absence": 1.0 - target.max(axis=1, initial=0.0)[:, None], "target_mass": target,
               "lookback_lens": ratios, "lookback_mean": 1.0 - ratios.mean(axis=1, keepdims=True),
               "hidden_state": np.asarray(self.hidden, dtype=float),
               "entropy": np.asarray(self.entropy, dtype=float)[:, None],
               "min_prob": 1.0 - np.asarray(self.token_prob, dtype=float)[:, None],
               "context_length": np.full((steps, 1), float(self.prompt_tokens)),
               "answer_position": (np.arange(steps, dtype=float) - self.answer_start)[:, None],
               "absence": 1.0 - active.max(axis=1, initial=0.0)[:, None], "retrieval_heads": active}
        if self.depth is not None:
            out["needle_depth"] = np.full((steps, 1), float(self.depth))
        if self.target_mass is None:  # a trace without the target's mass: no target detectors, never a made-up 0
            del out["target_absence"], out["target_mass"]
        return out


@dataclass(frozen=True)
class FeatureTables:
    """The detectors' tables of one side of a split (a section's train or test answers), built once per run by
    :func:`feature_tables`: the answer level (``answer_x``, one row per answer) and the token level (one row per
    labelled answer token after the first step, NIAH). Labels are read per call, so a second label (HotpotQA's
    ``em0``) reuses the features instead of rebuilding them."""

    answers: list[TracedAnswer]
    answer_x: dict[str, np.ndarray]
    tokens: Table

    def answer_table(self, label: str | None = None) -> Table:
        """Per detector ``[answers, features]``, the labels (``label`` names an ``extra_labels`` entry; default the
        main one) and each row's document."""
        y = np.array([a.extra_labels[label] if label else a.label for a in self.answers], dtype=int)
        return self.answer_x, y, np.array([a.group for a in self.answers])

    def step_table(self) -> Table:
        """The token-level table: one row per labelled answer token, the same layout as :meth:`answer_table`."""
        return self.tokens


def _aggregate(name: str, x: np.ndarray) -> np.ndarray:
    """One row over some steps: the maximum of ``1 - prob`` (the lowest token probability), else the mean."""
    return x.max(axis=0) if name == "min_prob" else x.mean(axis=0)


def answer_row(per_step: dict[str, np.ndarray], answer: TracedAnswer) -> dict[str, np.ndarray]:
    """Per detector, one ``[features]`` row of an answer: a before-the-token detector over the steps up to and with
    the answer's first (their rows exist before any answer token is chosen), a reference over the answer's own steps,
    a confound its constant. ``answer_position`` has no answer-level row."""
    lead = list(range(answer.answer_start + 1))
    return {name: _aggregate(name, x[answer.steps if name in REFERENCES else lead])
            for name, x in per_step.items() if name != "answer_position"}


def token_rows(per_step: dict[str, np.ndarray], labelled: list[int]) -> dict[str, np.ndarray]:
    """Per detector, the rows of the ``labelled`` answer steps t: a before-the-token detector reads step t - 1 (the
    previous token's step predicts an error at t), a reference step t itself, a confound its value at t."""
    previous = [t - 1 for t in labelled]
    return {name: x[previous if name in PRE_TOKEN else labelled] for name, x in per_step.items()}


def feature_tables(answers: list[TracedAnswer]) -> FeatureTables:
    """Both tables of ``answers`` from one :meth:`TracedAnswer.step_features` per answer. Why a loop that keeps
    only the rows: an answer's per-step features (every trace step, hidden states in float64) are dropped once its
    answer row and labelled steps are taken, so a section's whole traces are never held at once. Only detectors every
    answer has enter a table (HotpotQA has no needle depth)."""
    rows, parts, y, groups = [], [], [], []
    for a in answers:
        per_step = a.step_features()
        rows.append(answer_row(per_step, a))
        labelled = a.labelled_steps()
        if labelled:
            parts.append(token_rows(per_step, labelled))
            y += [a.step_labels[t] for t in labelled]
            groups += [a.group] * len(labelled)
    names = [n for n in DETECTORS if rows and all(n in r for r in rows)]
    answer_x = {name: np.stack([r[name] for r in rows]) for name in names} if rows else {}
    return FeatureTables(answers, answer_x, token_table(parts, y, groups))


def token_table(parts: list[dict[str, np.ndarray]], y: list[bool], groups: list[str]) -> Table:
    """The token-level table from each labelled answer's rows; without any (HotpotQA), empty."""
    if not parts:
        return {}, np.zeros(0, dtype=int), np.array([], dtype=str)
    names = [n for n in DETECTORS if all(n in p for p in parts)]
    return {name: np.concatenate([p[name] for p in parts]) for name in names}, np.array(y, dtype=int), np.array(groups)


class SignalScore(BaseEstimator):
    """An untrained detector: its single feature is the score. ``fit`` only checks the shape, so the untrained
    detectors go through the same loop as the trained ones."""

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, **fit_params) -> "SignalScore":
        if np.asarray(x).ndim != 2 or np.asarray(x).shape[1] != 1:
            raise ValueError(f"dynheads: an untrained detector reads one feature per row, got shape {np.asarray(x).shape}")
        self.fitted_ = True
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float)[:, 0]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """AUROC of the score against the labels (1 = hallucinated)."""
        return float(roc_auc_score(y, self.decision_function(x)))


def cv_folds(y: np.ndarray, groups: np.ndarray, seed: int, most: int = 5) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Folds for choosing a regularisation strength: whole documents per fold, both classes in each (stratified by
    label), as many folds as the rarer class's documents allow up to ``most``; None below 2 (then C stays fixed)."""
    y, groups = np.asarray(y), np.asarray(groups)
    k = min(most, len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0])))
    if k < 2:
        return None
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))


def make_detector(name: str, c: float | None = None, seed: int = 0,
                  folds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> BaseEstimator:
    """The estimator of detector ``name``: :class:`SignalScore`, or standardise + L2 logistic regression whose
    inverse strength is chosen among :data:`CS` by cross-validated AUROC over ``folds`` (as a demanding reader of
    Lookback Lens expects: regularisation from training data), or fixed at ``c`` (given, or without folds: 1)."""
    if name not in DETECTORS:
        raise ValueError(f"dynheads: unknown hallucination detector {name!r}; choose from {', '.join(DETECTORS)}")
    if name not in TRAINED:
        return SignalScore()
    if c is None and folds is not None:
        model = LogisticRegressionCV(Cs=list(CS), l1_ratios=(0.0,), cv=folds, scoring="roc_auc", max_iter=5000,
                                     random_state=seed, use_legacy_attributes=False)  # L2 only
    else:
        model = LogisticRegression(C=1.0 if c is None else c, max_iter=5000, random_state=seed)
    return make_pipeline(StandardScaler(), model)


def chosen_c(model: BaseEstimator) -> float | None:
    """The inverse strength a fitted trained detector uses (None for an untrained one)."""
    last = getattr(model, "steps", [(None, None)])[-1][1]
    if isinstance(last, LogisticRegressionCV):
        return float(np.ravel(last.C_)[0])
    return float(last.C) if isinstance(last, LogisticRegression) else None


def fit_and_score(train: dict[str, np.ndarray], y_train: np.ndarray, test: dict[str, np.ndarray], c: float | None = None,
                  seed: int = 0, groups: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], list[str], dict[str, float]]:
    """Each detector's scores on ``test`` (fitted on ``train``; ``groups``: the training rows' documents, which the
    cross-validation folds keep whole), the trained detectors that could not be fitted (training labels of one
    class: left out, never scored as 0), and the inverse strength each trained detector ended with."""
    scores, unfitted, strengths = {}, [], {}
    groups = np.arange(len(y_train)) if groups is None else np.asarray(groups)
    folds = cv_folds(y_train, groups, seed) if c is None and len(np.unique(y_train)) == 2 else None
    for name in DETECTORS:
        if name not in train or name not in test:
            continue
        if name in TRAINED and len(np.unique(y_train)) < 2:
            unfitted.append(name)
            continue
        model = make_detector(name, c, seed, folds).fit(train[name], y_train)
        scores[name] = model.decision_function(test[name])
        if name in TRAINED:
            strengths[name] = chosen_c(model)
    return scores, unfitted, strengths
