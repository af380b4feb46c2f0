"""Table 1's statistics as sums per generation, so a bootstrap over generations is a matrix product.

Why a module of its own: :mod:`dynheads.metrics.dynamism` defines the statistics on head sets with the
standard library only (the lm-eval tasks import it at start-up); an interval redraws the generations
thousands of times, and recomputing those set statistics per draw took 5 s for 9 NIAH documents and would
take minutes at the power profile's n. Every Table 1 statistic pools per-generation sums (steps, head
counts, activations, Jaccard sums), so each draw is a weighted sum of rows. The whole-corpus values equal
:func:`dynheads.metrics.dynamism.summarise`'s (tested).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .dynamism import jaccard, normalised_samples
from .heads import Head


@dataclass(frozen=True)
class Table1Sums:
    """What Table 1 pools, summed per generation (rows), so a statistic of any multiset of generations is a
    weighted sum of rows: a bootstrap over generations then costs one matrix product per column group.

    ``steps``: per generation [steps, Σ|H_t|, Σ|H_t|², Σ adjacent Jaccard, adjacent pairs];
    ``activations``: steps in which each head (columns: ``heads``) is active; ``static``: per k, Σ_t
    jaccard(H_t, top-k static)."""

    steps: np.ndarray
    activations: np.ndarray
    heads: list[Head]
    static: dict[int, np.ndarray]


def table1_sums(samples: Sequence[Sequence[Iterable[Head]]], static_ranking: Sequence[Head] | None = None,
                    ks: Sequence[int] = (20, 50, 100)) -> Table1Sums:
    norm = normalised_samples(samples)
    heads = sorted({h for sample in norm for step in sample for h in step})
    column = {h: i for i, h in enumerate(heads)}
    steps, activations = np.zeros((len(norm), 5)), np.zeros((len(norm), len(heads)))
    static = {k: np.zeros(len(norm)) for k in ks} if static_ranking is not None else {}
    tops = {k: normalised_samples([[list(static_ranking)[:k]]])[0][0] for k in static} if static_ranking is not None else {}
    for g, sample in enumerate(norm):
        sizes = [len(step) for step in sample]
        pairs = [v for a, b in zip(sample, sample[1:]) if (v := jaccard(a, b)) is not None]
        steps[g] = [len(sample), sum(sizes), sum(x * x for x in sizes), sum(pairs), len(pairs)]
        for step in sample:
            activations[g, [column[h] for h in step]] += 1
        for k, top in tops.items():
            static[k][g] = sum(len(step & top) / len(step | top) for step in sample)
    return Table1Sums(steps, activations, heads, static)


def table1_statistics(sums: Table1Sums, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Table 1's statistics (the keys of :func:`summarise`) of the generations counted by ``weights``
    (``[draws, generations]``; ones for the whole corpus), one value per draw; NaN where undefined."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    n, size, size2, adjacent, pairs = (w @ sums.steps).T
    counts = w @ sums.activations
    total = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, size / n, np.nan)
        p = np.where(total[:, None] > 0, counts / total[:, None], 0.0)
        entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0), axis=1)
        out = {"heads_per_step_mean": mean,
               "heads_per_step_std": np.sqrt(np.maximum(np.where(n > 0, size2 / n, np.nan) - mean ** 2, 0)),
               "unique_heads": (counts > 0).sum(axis=1).astype(float),
               "adjacent_jaccard": np.where(pairs > 0, adjacent / pairs, np.nan),
               "entropy": np.where(total > 0, entropy, np.nan)}
        out.update({f"jaccard_static_{k}": np.where(n > 0, (w @ v) / n, np.nan) for k, v in sums.static.items()})
    return out


def claim1_units(samples: Sequence[Sequence[Iterable[Head]]], static_ranking: Sequence[Head] | None,
                 top_n: int = 20) -> dict[str, np.ndarray]:
    """Claim 1's two per-generation statistics, each one value per generation (the sampled unit):

    * ``outside_static``: the share of the generation's active (step, head) pairs whose head is outside the
      static top-``top_n``. One fixed retrieval-head set (the static one) gives 0; only heads that the static
      ranking does not name raise it. Needs a ranking (empty without one).
    * ``temporal``: mean Jaccard of adjacent steps minus mean Jaccard of non-adjacent step pairs of the same
      generation. A fixed set seen through step-wise noise gives 0 (every pair of steps is alike); heads that
      change and persist a few steps (what a probe that predicts ahead relies on) give > 0.

    Why these instead of ``1 - adjacent Jaccard``: that is > 0 for any noise at all, so a test of it cannot
    fail (issue 32). Generations where a statistic is undefined (no active heads; fewer than 3 steps with a
    defined Jaccard) are left out of that statistic."""
    norm = normalised_samples(samples)
    top = normalised_samples([[list(static_ranking)[:top_n]]])[0][0] if static_ranking is not None else None
    outside, temporal = [], []
    for sample in norm:
        active = sum(len(step) for step in sample)
        if top is not None and active:
            outside.append(sum(len(step - top) for step in sample) / active)
        adjacent, distant = [], []
        for i, a in enumerate(sample):
            for j in range(i + 1, len(sample)):
                value = jaccard(a, sample[j])
                if value is not None:
                    (adjacent if j == i + 1 else distant).append(value)
        if adjacent and distant:
            temporal.append(float(np.mean(adjacent)) - float(np.mean(distant)))
    return {"outside_static": np.asarray(outside), "temporal": np.asarray(temporal)}
