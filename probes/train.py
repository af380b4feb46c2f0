"""Fit and evaluate Claim 3's estimators on traced step vectors, with the controls a sceptical reader needs.

    python -m dynheads.probes.train TRACE_DIR [...] --out probe.pt --report probes.json

Steps are split 70 / 20 / 10 into train / validation / test **by generation** (seeded). Reported:

* temporal CCA per offset k: in-sample canonical correlations on the training generations (what the
  paper reports), held-out ones on the test generations (training weights), and a shuffled control
  (hidden states paired with the scores of a random other training step, in-sample);
* the MLP probe (classifier for Eq. 1 traces, regressor for Eq. 2) on the test generations, beside
  the prior baseline (each head's training rate / mean score) and the previous-step baseline (the
  same generation's scores one step earlier), scored identically. ``predicts`` is true only where the
  probe beats both.

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
from .evaluation import best_threshold, classification_scores, previous_step, prior, regression_scores
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
    rows = []
    for k in range(max_offset + 1):
        rows.append({"k": k, "pairs": model.n_pairs_.get(k, 0),
                     "in_sample": summarise(model.in_sample_[k]) if k in model.in_sample_ else None,
                     "held_out": summarise(held[k], ordered=True) if k in held else None,
                     "shuffled": summarise(control.in_sample_[k]) if k in control.in_sample_ else None})
    return rows


def probe_report(data: StepVectors, split: tuple[np.ndarray, np.ndarray, np.ndarray], params: dict[str, Any],
                 progress: Callable | None = None) -> tuple[Any, dict[str, Any]]:
    """The MLP probe fitted on train (validation for the schedule and threshold), scored on test beside the baselines."""
    train, val, test = (data.subset(rows) for rows in split)
    classify = data.kind == COPY_PASTE
    probe = (HeadProbeClassifier if classify else HeadProbeRegressor)(**params)
    probe.fit(train.hidden, train.scores, val.hidden, val.scores, progress=progress)
    base_val = prior(train.scores, len(val.scores))
    base_test = prior(train.scores, len(test.scores))
    prev_val = previous_step(val.scores, val.groups, base_val[0])
    prev_test = previous_step(test.scores, test.groups, base_test[0])
    if classify:
        scores = {"probe": probe.evaluate(test.hidden, test.scores),
                  "prior": classification_scores(test.scores, base_test, best_threshold(val.scores, base_val)),
                  "previous_step": classification_scores(test.scores, prev_test, best_threshold(val.scores, prev_val))}
        keys = ("f1", "auprc")
    else:
        scores = {"probe": probe.evaluate(test.hidden, test.scores), "prior": regression_scores(test.scores, base_test),
                  "previous_step": regression_scores(test.scores, prev_test)}
        keys = ("r2",)
    beats = all(scores["probe"][k] > max(scores["prior"][k], scores["previous_step"][k]) for k in keys)
    return probe, {**scores, "predicts": bool(beats), "criteria": list(keys), "epochs": len(probe.history_)}


def with_test_set(pool: StepVectors, test: StepVectors, seed: int = 0) -> tuple[StepVectors, tuple[np.ndarray, ...]]:
    """One array of ``pool`` then ``test`` steps, and a split that draws train / validation (80 / 20 by
    generation) from the pool and tests on all of ``test`` (e.g. HotpotQA train examples, dev test)."""
    if (pool.kind, pool.model, pool.hidden.shape[1]) != (test.kind, test.model, test.hidden.shape[1]):
        raise ValueError("dynheads: the test traces come from another model, task kind or hidden size than the training ones")
    data = StepVectors(np.concatenate([pool.hidden, test.hidden]), np.concatenate([pool.scores, test.scores]),
                       np.concatenate([pool.groups, test.groups + pool.groups.max() + 1]), pool.kind, pool.model)
    train, val = split_train_validation(pool.groups, 0.2, seed)
    return data, (train, val, np.arange(len(pool.groups), len(data.groups)))


def evaluate(data: StepVectors, seed: int = 0, max_offset: int = 10, n_components: int = 50,
             probe_params: dict[str, Any] | None = None, progress: Callable | None = None,
             split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[Any, dict[str, Any]]:
    """The whole Claim 3 evaluation of one model and task kind; returns the fitted probe and the report.

    ``split``: train / validation / test row indices (default: 70 / 20 / 10 by generation, seeded)."""
    split = split if split is not None else split_by_generation(data.groups, seed=seed)
    params = {"random_state": seed, **(probe_params or {})}
    probe, probe_scores = probe_report(data, split, params, progress)
    report = {"model": data.model, "kind": data.kind, "seed": seed, "hidden_dim": int(data.hidden.shape[1]),
              "heads": int(data.scores.shape[1]),
              "split": {name: {"generations": int(len(np.unique(data.groups[rows]))), "steps": int(len(rows))}
                        for name, rows in zip(("train", "validation", "test"), split)},
              "cca": cca_report(data, split[0], split[2], max_offset, n_components, seed),
              "probe": probe_scores, "probe_params": {k: v for k, v in probe.get_params().items()}}
    return probe, report


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
               split_seed=args.seed, hidden_sizes=list(sizes))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    print(json.dumps({"probe": report["probe"], "cca_k0": report["cca"][0], "saved": args.out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
