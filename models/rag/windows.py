"""Algorithm 2's windows: from head attention over the context to the token windows made visible.

The paper (Section 5, Algorithm 2) averages the chosen heads' attention over the context, takes the
top-scoring positions, clusters nearby ones, expands a fixed-size window around each cluster's
representative and merges overlapping windows. It gives no numbers; ours (README, "Section 5") are
arguments of :func:`attention_windows`. Pure functions over arrays, tested on planted scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_TOP_POSITIONS = 8
"""Context positions taken from the averaged attention (before clustering)."""
DEFAULT_CLUSTER_GAP = 16
"""Top positions at most this many tokens apart fall into one cluster (single linkage)."""
DEFAULT_WINDOW = 48
"""Tokens made visible around each cluster's representative (its highest-scoring position)."""

Window = tuple[int, int]  # [start, end) absolute token positions


def clusters(positions: Iterable[int], gap: int) -> list[list[int]]:
    """Sorted positions split wherever two neighbours are more than ``gap`` apart."""
    out: list[list[int]] = []
    for p in sorted(set(int(p) for p in positions)):
        if out and p - out[-1][-1] <= gap:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def merge(windows: Iterable[Window]) -> list[Window]:
    """Overlapping or touching windows joined; sorted."""
    out: list[list[int]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def attention_windows(scores: np.ndarray, positions: Sequence[int], top_positions: int = DEFAULT_TOP_POSITIONS,
                      cluster_gap: int = DEFAULT_CLUSTER_GAP, window: int = DEFAULT_WINDOW,
                      bounds: Window | None = None) -> list[Window]:
    """Windows around the clusters of the ``top_positions`` highest ``scores``.

    ``scores[i]`` is the averaged attention on absolute position ``positions[i]``; ties keep the earlier
    position. Each window is ``window`` tokens centred on its cluster's best position, clipped to
    ``bounds`` (default: the span of ``positions``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.int64)
    if scores.shape != positions.shape or scores.ndim != 1:
        raise ValueError("dynheads: one attention score per context position is needed")
    if min(top_positions, window) < 1 or cluster_gap < 0:
        raise ValueError("dynheads: top_positions and window must be >= 1 and cluster_gap >= 0")
    if scores.size == 0:
        return []
    lo, hi = bounds if bounds is not None else (int(positions.min()), int(positions.max()) + 1)
    order = top_indices(scores, top_positions)
    best = {int(positions[i]): float(scores[i]) for i in order}
    out = []
    for group in clusters(best, cluster_gap):
        rep = max(group, key=lambda p: (best[p], -p))
        start = max(lo, min(rep - window // 2, hi - window))
        out.append((start, min(hi, start + window)))
    return merge(out)


def top_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, best first, ties to the earlier index (Algorithm 2's top positions)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:count]


def runs(indices: Iterable[int]) -> list[Window]:
    """Consecutive runs of token indices as windows (e.g. the gold supporting sentences)."""
    return merge((i, i + 1) for i in indices)


def coverage(windows: Sequence[Window], support: Iterable[int]) -> dict[str, float | int | None]:
    """Visible tokens, and the precision / recall of the visible tokens against the supporting-fact tokens."""
    support = set(int(i) for i in support)
    visible = sum(e - s for s, e in windows)
    hit = sum(1 for i in support if any(s <= i < e for s, e in windows))
    return {"visible_tokens": visible, "precision": hit / visible if visible else None,
            "recall": hit / len(support) if support else None}


def pooled_mean(items: Iterable[Sequence[float | None] | float | None]) -> float:
    """lm-eval aggregation: the mean over every retrieval of every answer (per-answer lists pooled; None
    values, e.g. the precision of an empty window set, skipped). NaN when no answer retrieved anything."""
    values = []
    for item in items:
        values.extend(v for v in (item if isinstance(item, (list, tuple)) else [item]) if v is not None)
    return float(np.mean(values)) if values else float("nan")
