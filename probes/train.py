"""Fit and evaluate Claim 3's estimators on traced step vectors, with the controls a sceptical reader needs.

    python -m dynheads.probes.train TRACE_DIR [...] --out probe.pt --report probes.json

Steps are split 70 / 20 / 10 into train / validation / test **by generation** (seeded). Reported:

* temporal CCA per offset k: in-sample canonical correlations on the training generations (what the
  paper reports), held-out ones on the test generations (training weights; the number to quote), and a
  shuffled control fitted on hidden states paired with the scores of a random other training step,
  scored held out on the test generations like the real one (its in-sample value is kept too);
* the MLP probe (classifier for Eq. 1 traces, regressor for Eq. 2) on the test generations, beside
  the prior baseline (each head's training rate / mean score), the previous-step baseline (the same
  generation's scores one step earlier) and, given document cells, the same-cell-and-step baseline,
  scored identically. ``predicts`` is true only where the probe beats every baseline.

Given document cells (``cells``: per step, e.g. NIAH's (depth, length)), the split is by cell: no test
document shares its cell with a training one.

Traces come from ``--model_args hidden=true,trace_dir=DIR`` (unmasked lines are used).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cca import TemporalCCA, summarise
from ..traces import COPY_PASTE
from .dataset import StepVectors, load_step_vectors
from .evaluation import (best_threshold, classification_scores, generation_sums, generation_weights,
                         paired_generation_bootstrap, pooled_scores, predictor_draws,
                         previous_step, prior, regression_scores, same_cell_step, step_index)
from .mlp import PAPER_HIDDEN_SIZES, HeadProbeClassifier, HeadProbeRegressor
from .split import split_by_generation, split_train_validation


def cca_report(data: StepVectors, train: np.ndarray, test: np.ndarray, max_offset: int, n_components: int,
               seed: int) -> list[dict[str, Any]]:
    """Per offset k: in-sample, held-out and shuffled-control summaries (top-1, top-10 mean, top-50 mean)."""
    tr, te = data.subset(train), data.subset(test)
    model = TemporalCCA(max_offset=max_offset, n_components=n_components, random_state=seed).fit(tr.hidden, tr.scores, tr.groups)
    held = model.correlations(te.hidden, te.scores, te.groups)
    shuffled_scores = tr.scores[np.random.default_rng(seed).permutation(len(tr.scores))]
    control = TemporalCCA(max_offset=max_offset, n_components=n_components, random_state=seed).fit(
        tr.hidden, shuffled_scores, tr.groups)
    control_held = control.correlations(te.hidden, te.scores, te.groups)
    rows = []
    for k in range(max_offset + 1):
        rows.append({"k": k, "pairs": model.n_pairs_.get(k, 0),
                     "in_sample": summarise(model.in_sample_[k]) if k in model.in_sample_ else None,
                     "held_out": summarise(held[k], ordered=True) if k in held else None,
                     "shuffled": summarise(control_held[k], ordered=True) if k in control_held else None,
                     "shuffled_in_sample": summarise(control.in_sample_[k]) if k in control.in_sample_ else None})
    return rows


def probe_report(data: StepVectors, split: tuple[np.ndarray, np.ndarray, np.ndarray], params: dict[str, Any],
                 progress: Callable | None = None, cells: np.ndarray | None = None,
                 fitted: Any | None = None) -> tuple[Any, dict[str, Any]]:
    """The MLP probe fitted on train (validation for the schedule and threshold), scored on test beside the
    baselines, each of which is fitted on train, thresholded on validation and scored on test. ``fitted``: a
    probe already fitted on this split (a saved one), scored again without refitting."""
    train, val, test = (data.subset(rows) for rows in split)
    classify = data.kind == COPY_PASTE
    probe = fitted
    if probe is None:
        probe = (HeadProbeClassifier if classify else HeadProbeRegressor)(**params)
        probe.fit(train.hidden, train.scores, val.hidden, val.scores, progress=progress)
    base_val, base_test = prior(train.scores, len(val.scores)), prior(train.scores, len(test.scores))
    baselines = {"prior": (base_val, base_test),
                 "previous_step": (previous_step(val.scores, val.groups, base_val[0]),
                                   previous_step(test.scores, test.groups, base_test[0]))}
    if cells is not None:
        cells = np.asarray(cells, dtype=float)
        same = [same_cell_step(train.scores, cells[split[0]], step_index(train.groups), cells[rows], step_index(part.groups),
                               base_val[0]) for rows, part in ((split[1], val), (split[2], test))]
        baselines["same_cell_step"] = (same[0], same[1])
    scores: dict[str, Any] = {"probe": probe.evaluate(test.hidden, test.scores)}
    for name, (on_val, on_test) in baselines.items():
        scores[name] = (classification_scores(test.scores, on_test, best_threshold(val.scores, on_val)) if classify
                        else regression_scores(test.scores, on_test))
    keys = ("f1", "auprc") if classify else ("r2",)
    beats = all(scores["probe"][k] > max(scores[b][k] for b in baselines) for k in keys)
    on_test = {b: on_test for b, (_, on_test) in baselines.items()}
    seed = int(params.get("random_state", 0))
    own = probe.predict_proba(test.hidden) if classify else probe.predict(test.hidden)  # once, for both evaluations
    paired = paired_intervals(own, test, on_test, scores, classify, seed)
    test_cells = None if cells is None else cells[split[2]]
    clustered = cluster_tests(own, test, on_test, scores, classify, test_cells, seed)
    return probe, {**scores, "baselines": list(baselines), "predicts": bool(beats), "criteria": list(keys),
                   "paired": paired, "cluster_paired": clustered, "unit": "cell" if cells is not None else "generation",
                   "epochs": len(probe.history_)}


def r2_shares(sums: np.ndarray) -> np.ndarray:
    """Per unit (rows of :func:`generation_sums`' regression sums), its share of the pooled R²:
    ``1 - U * SSE_u / SST`` with SST about the pooled mean of all units, so that the shares' mean is the pooled
    R² exactly and a paired difference of shares averages to the difference of pooled R². Why not each unit's
    own R²: one answer's few steps have almost no spread about their own mean, so its R² runs to ±10."""
    n, s, s2, sse = (sums[:, i].sum() for i in range(4))
    sst = s2 - s ** 2 / max(n, 1)
    if sst <= 0:
        return np.full(len(sums), np.nan)
    return 1 - len(sums) * sums[:, 3] / sst


def cluster_tests(own: np.ndarray, test: StepVectors, baselines: dict[str, np.ndarray], scores: dict[str, Any],
                  classify: bool, cells: np.ndarray | None, seed: int) -> dict[str, Any]:
    """Probe (its test predictions ``own``) minus each baseline per independent unit: the score pooled over each unseen cell's test steps
    (``cells``: each test row's cell) or over each test generation (no cells), then the paired t interval and
    sign-flip p over those units (:func:`dynheads.metrics.inference.paired_test`). Why not the generation
    bootstrap of :func:`paired_intervals` for the verdict: test generations of one unseen cell share its
    context length and depth, so the cell, not the generation, is what was drawn independently."""
    from sklearn.metrics import average_precision_score

    from ..metrics.inference import paired_test

    units = test.groups if cells is None else np.unique(np.asarray(cells, dtype=float), axis=0, return_inverse=True)[1].ravel()

    def per_unit(prediction: np.ndarray, name: str) -> dict[str, np.ndarray]:
        sums = generation_sums(test.scores, prediction, units, scores[name]["threshold"] if classify else None)
        out = pooled_scores(sums)
        if not classify:  # R²'s per-unit share (below): a unit's own R² divides by its own tiny spread
            out["r2"] = r2_shares(sums)
        else:  # AUPRC over each unit's steps x heads (NaN for a unit without a positive: the score is left out)
            out["auprc"] = np.array([average_precision_score(test.scores[units == u].ravel() > 0.5,
                                                             prediction[units == u].ravel())
                                     if (test.scores[units == u] > 0.5).any() else np.nan for u in np.unique(units)])
        return out

    mine = per_unit(own, "probe")
    out = {}
    for name, prediction in baselines.items():
        theirs = per_unit(prediction, name)
        out[name] = {m: paired_test(mine[m], theirs[m], seed).record() for m in mine
                     if np.isfinite(mine[m]).all() and np.isfinite(theirs[m]).all()}
    return out


def paired_intervals(own: np.ndarray, test: StepVectors, baselines: dict[str, np.ndarray], scores: dict[str, Any],
                     classify: bool, seed: int) -> dict[str, Any]:
    """Probe (its test predictions ``own``) minus each baseline on the same test generations (F1, precision,
    recall, AUPRC at the validation thresholds; or R², MSE, MAE), with the paired bootstrap interval over
    generations, for reading (the verdict is :func:`cluster_tests`'); each predictor's own intervals go into
    ``scores[name]["intervals"]``."""
    weights = generation_weights(test.groups, seed)
    generations = len(weights[0])

    def draws(prediction: np.ndarray, name: str) -> dict[str, np.ndarray]:
        return predictor_draws(test.scores, prediction, test.groups, scores[name]["threshold"] if classify else None, weights)

    probe_draws = draws(own, "probe")
    results = {name: paired_generation_bootstrap(probe_draws, draws(prediction, name), generations)
               for name, prediction in baselines.items()}
    for name, result in results.items():
        scores[name]["intervals"] = {metric: pair["b"].record() for metric, pair in result.items()}
    # one seed draws the same generations for every pairing, so each pairing gives the probe the same interval
    scores["probe"]["intervals"] = {metric: pair["a"].record() for metric, pair in next(iter(results.values())).items()}
    return {name: {metric: pair["difference"].record() for metric, pair in result.items()}
            for name, result in results.items()}


def with_test_set(pool: StepVectors, test: StepVectors, seed: int = 0) -> tuple[StepVectors, tuple[np.ndarray, ...]]:
    """One array of ``pool`` then ``test`` steps, and a split that draws train / validation (80 / 20 by
    generation) from the pool and tests on all of ``test`` (e.g. HotpotQA train examples, dev test)."""
    if (pool.kind, pool.model, pool.hidden.shape[1]) != (test.kind, test.model, test.hidden.shape[1]):
        raise ValueError("dynheads: the test traces come from another model, task kind or hidden size than the training ones")
    data = StepVectors(np.concatenate([pool.hidden, test.hidden]), np.concatenate([pool.scores, test.scores]),
                       np.concatenate([pool.groups, test.groups + pool.groups.max() + 1]), pool.kind, pool.model,
                       pool.documents + test.documents, pool.sources + test.sources)
    train, val = split_train_validation(pool.groups, 0.2, seed)
    return data, (train, val, np.arange(len(pool.groups), len(data.groups)))


REPORT_FORMAT = 3
"""Version of the report's layout (2: intervals for every score, AUPRC included; 3: tests per independent unit,
``cluster_paired``); a cached report of another version is recomputed."""

CELL_SPLIT = (0.6, 0.2, 0.2)
"""Train / validation / test fractions of the cells in a split by cell: few cells, so a larger test share."""


def evaluate(data: StepVectors, seed: int = 0, max_offset: int = 10, n_components: int = 50,
             probe_params: dict[str, Any] | None = None, progress: Callable | None = None,
             split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             cells: np.ndarray | None = None, fitted: Any | None = None) -> tuple[Any, dict[str, Any]]:
    """The whole Claim 3 evaluation of one model and task kind; returns the fitted probe and the report.

    ``split``: train / validation / test row indices (default: 70 / 20 / 10 by generation, seeded; with
    ``cells``, :data:`CELL_SPLIT` by cell). ``cells``: each row's document cell coordinates (most important
    first), which also adds the same-cell-and-step baseline. ``fitted``: the probe this split fitted before
    (reports of a newer layout are recomputed without refitting it)."""
    if split is None:
        if cells is not None:
            labels = np.unique(np.asarray(cells, dtype=float), axis=0, return_inverse=True)[1].ravel()
            split = split_by_generation(labels, CELL_SPLIT, seed=seed)
        else:
            split = split_by_generation(data.groups, seed=seed)
    params = {"random_state": seed, **(probe_params or {})}
    probe, probe_scores = probe_report(data, split, params, progress, cells, fitted)
    parts = dict(zip(("train", "validation", "test"), split))
    summary: dict[str, Any] = {name: {"generations": int(len(np.unique(data.groups[rows]))), "steps": int(len(rows))}
                               for name, rows in parts.items()}
    summary["by"] = "cell" if cells is not None else "generation"
    if cells is not None:
        for name, rows in parts.items():
            summary[name]["cells"] = np.unique(np.asarray(cells, dtype=float)[rows], axis=0).tolist()
    report = {"model": data.model, "kind": data.kind, "seed": seed, "hidden_dim": int(data.hidden.shape[1]),
              "heads": int(data.scores.shape[1]), "split": summary,
              "cca": cca_report(data, split[0], split[2], max_offset, n_components, seed),
              "probe": probe_scores, "probe_params": {k: v for k, v in probe.get_params().items()},
              "fitted_documents": fitted_on(data, split)}
    return probe, report


def fitted_on(data: StepVectors, split: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    """The document hashes of the training and validation generations (a saved probe records them, so that
    it is never scored on them)."""
    return sorted(set(data.documents_of(split[0])) | set(data.documents_of(split[1])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("traces", nargs="+", help="trace files or folders written with hidden=true")
    p.add_argument("--out", default="probe.pt", help="where to save the probe (default: %(default)s)")
    p.add_argument("--report", default=None, help="also write the report as JSON here")
    p.add_argument("--seed", type=int, default=0, help="split and training seed (default: %(default)s)")
    p.add_argument("--max-offset", type=int, default=10, help="largest temporal offset k of the CCA (default: %(default)s)")
    p.add_argument("--components", type=int, default=50, help="CCA components (default: %(default)s)")
    p.add_argument("--hidden-sizes", default=",".join(map(str, PAPER_HIDDEN_SIZES)),
                   help="MLP hidden sizes (default: the paper's %(default)s)")
    p.add_argument("--max-epochs", type=int, default=100, help="(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        data = load_step_vectors(args.traces)
        sizes = tuple(int(x) for x in args.hidden_sizes.split(",") if x)
        probe, report = evaluate(data, args.seed, args.max_offset, args.components,
                                 {"hidden_sizes": sizes, "max_epochs": args.max_epochs})
    except ValueError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    probe.save(args.out, model=data.model, kind=data.kind, hidden_dim=report["hidden_dim"], heads=report["heads"],
               split_seed=args.seed, hidden_sizes=list(sizes), documents=report["fitted_documents"])
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    print(json.dumps({"probe": report["probe"], "cca_k0": report["cca"][0], "saved": args.out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
