"""The ``hallucination`` stage: detectors scored on the same traced answers, with intervals, confounds and transfer.

Beyond the paper (its Conclusion's conjecture). Per section and label:

* NIAH (the study's transition-zone documents), answer level: hallucinated = the response lacks the UUID; token
  level: each answer token that is not the UUID character run it should copy
  (:func:`~dynheads.metrics.hallucination.copy_labels`). Split by (depth, length) cell: no test document shares a
  cell with a training one.
* HotpotQA (Claim 3's answers, distractor setting): hallucinated = answer F1 below ``f1_threshold``, and as a second
  label exact match 0 (correctness); fitted on the train examples' answers, tested on the evaluation (dev) answers.
* HotpotQA from its gold paragraphs only (decoded here): hallucinated = the answer's words are not in the context the
  model was given (faithfulness); yes / no answers left out. Lookback Lens's transfer test uses this label.

Detectors (:mod:`dynheads.probes.hallucination`) read only steps before the judged token, beside confound baselines
(context length, needle depth, position in the answer) and the by-construction references. AUROC and AUPRC come with
95 % bootstrap intervals over test documents, also within length strata; every detector is paired with Lookback Lens
on the same draws; Lookback Lens is also trained on one section and tested on the other. The conjecture's statistic
is the untrained target-absence detector's AUROC - 0.5.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ...metrics.intervals import percentile_interval
from ...util import write_atomic
from ...probes.evaluation import class_stratified_weights, detector_draws, weighted_auroc
from ...probes.hallucination import CONJECTURE, REFERENCE, Table, feature_tables, fit_and_score, make_detector
from ...probes.split import split_train_validation
from ..model import ModelSuite

ROC_POINTS = 60  # points kept per ROC curve in the result file (enough to draw it)


def split_by_cell(answers: list[Any], test_share: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Train and test answers, whole cells to one side each (seeded)."""
    cells = sorted({a.cell for a in answers})
    if len(cells) < 2:
        raise ValueError(f"dynheads: a split by cell needs at least 2 cells, got {len(cells)}; run more NIAH cells")
    labels = np.array([cells.index(a.cell) for a in answers])
    train, test = split_train_validation(labels, test_share, seed)
    return [answers[i] for i in train], [answers[i] for i in test]


def roc_points(y: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    """The test ROC curve, thinned to at most :data:`ROC_POINTS` points (for the figure)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).round().astype(int))
    return {"fpr": [round(float(v), 4) for v in fpr[keep]], "tpr": [round(float(v), 4) for v in tpr[keep]]}


def evaluate_level(train: Table, test: Table, c: float | None, seed: int, rows_independent: bool = True,
                   strata: np.ndarray | None = None) -> dict[str, Any]:
    """Every detector fitted on ``train`` and scored on ``test`` (tables of
    :class:`~dynheads.probes.hallucination.FeatureTables`): class balance, AUROC / AUPRC with intervals over test
    documents (drawn within class strata, so no draw is dropped), with ``strata`` (one per test row: its length
    stratum) the AUROC within strata too, each minus Lookback Lens (paired draws, p by inverting them), the L2
    strength cross-validation chose for each trained detector, and the conjecture's AUROC − 0.5 of the target-absence
    detector (``conjecture``; p by label permutation when ``rows_independent`` (one row per answer), else by
    inverting the document bootstrap: tokens of one answer are not exchangeable with another's)."""
    from ...metrics.inference import auroc_permutation_pvalue, bootstrap_pvalue

    (x_train, y_train, g_train), (x_test, y_test, g_test) = train, test
    out: dict[str, Any] = {"train": balance(y_train, g_train), "test": balance(y_test, g_test), "detectors": {}}
    if len(np.unique(y_test)) < 2:
        out["note"] = "the test set holds one class only: no AUROC"
        return out
    scores, out["unfitted"], out["strengths"] = fit_and_score(x_train, y_train, x_test, c, seed, groups=g_train)
    weights = class_stratified_weights(g_test, y_test, seed)
    draws = {name: detector_draws(y_test, s, g_test, weights) for name, s in scores.items()}
    n = out["test"]["documents"]
    classes = class_units(y_test, g_test)
    for name, drawn in draws.items():
        record = {m: percentile_interval(d[1:], d[0], n).record() for m, d in drawn.items()}
        if name != REFERENCE and REFERENCE in draws:
            differences = {m: d - draws[REFERENCE][m] for m, d in drawn.items()}  # row 0: the estimate
            record["minus_reference"] = {
                m: {**percentile_interval(d[1:], d[0], n).record(), "p": bootstrap_pvalue(d[1:]),
                    "test": "class-stratified document bootstrap", **classes}
                for m, d in differences.items()}
        if strata is not None:
            record["within_strata"] = within_strata(y_test, scores[name], g_test, strata, weights, n)
        record["roc"] = roc_points(y_test, scores[name])
        out["detectors"][name] = record
    if CONJECTURE in draws:
        auroc = draws[CONJECTURE]["auroc"]
        p = (auroc_permutation_pvalue(y_test, scores[CONJECTURE], seed) if rows_independent
             else bootstrap_pvalue(auroc[1:], 0.5))
        shifted = percentile_interval(auroc[1:] - 0.5, auroc[0] - 0.5, n).record()
        out["conjecture"] = {**shifted, "p": p, "positives": int(np.sum(y_test)), "negatives": int(len(y_test) - np.sum(y_test)),
                             **classes, "detector": CONJECTURE,
                             "test": "label permutation" if rows_independent else "class-stratified document bootstrap"}
    return out


def within_strata(y: np.ndarray, score: np.ndarray, groups: np.ndarray, strata: np.ndarray, weights: np.ndarray,
                  n: int) -> dict[str, Any]:
    """The AUROC counting only (hallucinated, faithful) pairs of one stratum (e.g. one context length): each
    stratum's AUROC weighted by its pairs, on the same document draws as the plain AUROC, so a detector that only
    reads the stratum scores 0.5 here. Per stratum: its rows of each class and its AUROC."""
    y, score, groups, strata = map(np.asarray, (y, score, groups, strata))
    names = np.unique(groups)
    won, pairs, per = np.zeros(len(weights)), np.zeros(len(weights)), {}
    for s in np.unique(strata):
        rows = strata == s
        cols = np.searchsorted(names, np.unique(groups[rows]))
        w = weights[:, cols]
        _, index = np.unique(groups[rows], return_inverse=True)
        row_w = w[:, index.ravel()]
        count = (row_w * y[rows]).sum(axis=1) * (row_w * (1 - y[rows])).sum(axis=1)
        auroc = weighted_auroc(y[rows], score[rows], groups[rows], w)
        ok = count > 0
        won[ok] += (auroc * count)[ok]
        pairs += count
        per[str(s)] = {"positives": int(y[rows].sum()), "negatives": int((1 - y[rows]).sum()),
                       "auroc": None if np.isnan(auroc[0]) else float(auroc[0])}
    combined = np.divide(won, pairs, out=np.full(len(weights), np.nan), where=pairs > 0)
    if np.isnan(combined[0]):
        return {"note": "no stratum holds both classes", "strata": per}
    return {**percentile_interval(combined[1:][~np.isnan(combined[1:])], combined[0], n).record(), "strata": per}


def transfer(train: Table, test: Table, seed: int, detector: str = REFERENCE) -> dict[str, Any]:
    """``detector`` (Lookback Lens) fitted on one section's answers and scored on another's: AUROC with its interval
    over test documents and its p against 0.5 (label permutation), its authors' headline test of generality. The
    strength is chosen by cross-validation on the training section only."""
    from ...metrics.inference import auroc_permutation_pvalue
    from ...probes.hallucination import cv_folds

    (x_train, y_train, g_train), (x_test, y_test, g_test) = train, test
    out: dict[str, Any] = {"train": balance(y_train, g_train), "test": balance(y_test, g_test)}
    if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
        out["note"] = "a side holds one class only: no transfer AUROC"
        return out
    if x_train[detector].shape[1] != x_test[detector].shape[1]:
        raise ValueError(f"dynheads: {detector} features differ between the sections ({x_train[detector].shape[1]} vs "
                         f"{x_test[detector].shape[1]}): transfer needs the same model")
    model = make_detector(detector, None, seed, cv_folds(y_train, g_train, seed)).fit(x_train[detector], y_train)
    score = model.decision_function(x_test[detector])
    weights = class_stratified_weights(g_test, y_test, seed)
    auroc = detector_draws(y_test, score, g_test, weights)["auroc"]
    return {**out, "auroc": {**percentile_interval(auroc[1:], auroc[0], out["test"]["documents"]).record(),
                             "p": auroc_permutation_pvalue(y_test, score, seed), **class_units(y_test, g_test)}}


def class_units(y: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    """Test documents holding a hallucinated row and documents holding a faithful one: the units per class that
    a detector's verdict needs enough of (``min_per_class`` in ``claims.yaml``; the document is the unit drawn)."""
    y, groups = np.asarray(y), np.asarray(groups)
    return {"positive_units": int(len(np.unique(groups[y == 1]))), "negative_units": int(len(np.unique(groups[y == 0])))}


def balance(y: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    """Rows, hallucinated rows and documents of one side of a split (the class balance every table states)."""
    return {"rows": int(len(y)), "positives": int(np.sum(y)), "documents": int(len(np.unique(groups)))}


def conjecture(level: dict[str, Any]) -> dict[str, Any] | None:
    """The conjecture's test record: AUROC − 0.5 of retrieval-head absence with its p (None without it)."""
    return level.get("conjecture")


def run(suite: ModelSuite) -> dict[str, Any]:
    """The stage: both sections' levels, the transfer test, ``hallucination.{json,md}`` and one ROC figure per
    section. Each side of each section's split gets its :func:`feature_tables` once, which every level and label of
    that section reads."""
    from .data import gold_answers, hotpotqa_answers, niah_answers
    from .figures import roc_figure
    from .tables import report

    h = suite.profile["hallucination"]
    c, seed = (None if h.get("c") is None else float(h["c"])), suite.seed
    niah_train, niah_test = map(feature_tables, split_by_cell(niah_answers(suite), float(h["test_share"]), seed))
    hot_train, hot_test = map(feature_tables, hotpotqa_answers(suite, float(h["f1_threshold"])))
    niah_strata = np.array([a.stratum for a in niah_test.answers])
    token_strata = np.concatenate([[a.stratum] * len(a.labelled_steps()) for a in niah_test.answers] or [[]])
    hot_strata = length_quartiles([a.prompt_tokens for a in hot_test.answers])
    gold_train_answers, gold_test_answers, left_out = gold_answers(suite)
    gold_train, gold_test = feature_tables(gold_train_answers), feature_tables(gold_test_answers)
    levels = {
        "niah": {"answer": evaluate_level(niah_train.answer_table(), niah_test.answer_table(), c, seed, strata=niah_strata),
                 "token": evaluate_level(niah_train.step_table(), niah_test.step_table(), c, seed, rows_independent=False,
                                         strata=token_strata),
                 "test_cells": sorted(map(list, {a.cell for a in niah_test.answers}))},
        "hotpotqa": {"f1": evaluate_level(hot_train.answer_table(), hot_test.answer_table(), c, seed, strata=hot_strata),
                     "em0": evaluate_level(hot_train.answer_table("em0"), hot_test.answer_table("em0"), c, seed,
                                           strata=hot_strata)},
        "hotpotqa_gold": {"faithful": {**evaluate_level(gold_train.answer_table(), gold_test.answer_table(), c, seed,
                                                        strata=length_quartiles([a.prompt_tokens for a in gold_test.answers])),
                                       "left_out": left_out}},
        "transfer": {"niah_to_hotpotqa": transfer(niah_train.answer_table(), gold_test.answer_table(), seed),
                     "hotpotqa_to_niah": transfer(gold_train.answer_table(), niah_test.answer_table(), seed)},
    }
    summary = {"settings": {"c": c, "f1_threshold": float(h["f1_threshold"]), "test_share": float(h["test_share"]),
                            "seed": seed, "niah": h.get("niah"), "gold": h.get("gold")},
               **levels,
               "conjecture": {f"{section}_{level}": conjecture(levels[section][level])
                              for section, level in (("niah", "answer"), ("niah", "token"), ("hotpotqa", "f1"),
                                                     ("hotpotqa_gold", "faithful"))}}
    roc_figure(levels["niah"], (("answer", "answers (UUID missing)"), ("token", "answer tokens (not the UUID's)")),
               f"{suite.name}: NIAH hallucination detectors, held-out transition-zone cells",
               suite.dir / "hallucination_roc_niah.png")
    roc_figure({**levels["hotpotqa"], **levels["hotpotqa_gold"]},
               (("faithful", "gold paragraphs only: answer not in the context"),
                ("f1", f"distractor setting: answers with F1 < {h['f1_threshold']:g}"),
                ("em0", "distractor setting: answers with EM = 0")),
               f"{suite.name}: HotpotQA hallucination detectors, dev answers", suite.dir / "hallucination_roc_hotpotqa.png")
    write_atomic(suite.dir / "hallucination.json", json.dumps({"summary": summary}, indent=1))
    write_atomic(suite.dir / "hallucination.md", report(suite.name, summary))
    return summary


def length_quartiles(lengths: list[int]) -> np.ndarray:
    """Each answer's context-length quartile (0-3) among ``lengths``: HotpotQA's strata, whose lengths are not set."""
    lengths = np.asarray(lengths, dtype=float)
    if not len(lengths):
        return np.zeros(0, dtype=int)
    edges = np.quantile(lengths, [0.25, 0.5, 0.75])
    return np.searchsorted(edges, lengths, side="right")
