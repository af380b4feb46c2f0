"""Matplotlib plumbing shared by the task figures: headless backend, atomic PNG writes, Figures 3 / 7.

Inputs are small summaries, never traces, so every figure can be redrawn from run_suite's JSON
results without a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Colour-bar and axis words for the metric keys of the result files.
METRIC_LABELS = {"acc": "accuracy", "rouge_l": "ROUGE-L F-measure", "em": "exact match (EM)", "f1": "F1"}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def text_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (WCAG relative luminance)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` atomically (a reader never sees a half-written PNG) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    pyplot().close(fig)


def progressive_plot(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    path: Path,
    metrics: Sequence[tuple[str, str]] = (("acc", "accuracy"), ("rouge_l", "ROUGE-L")),
    xlabel: str = "dynamic retrieval heads masked per step (k; Eq. 1)",
) -> None:
    """Figures 3 and 7: mean peak static compensation (left axis) and task scores (right axis) against k.

    ``rows``: one per k with ``k``, ``samples``, ``static_compensation`` (mean m_s) and each key of
    ``metrics`` (``(key, label)`` pairs; NIAH: acc and ROUGE-L, HotpotQA: EM and F1). The title says
    how many prompts each point averages.
    """
    plt = pyplot()
    ks = [int(r["k"]) for r in rows]
    counts = sorted({int(r["samples"]) for r in rows})
    fig, left = plt.subplots(figsize=(5.8, 4.6))
    def band(axis: Any, key: str, colour: str) -> None:  # the 95 % interval over prompts, where the rows carry it
        bounds = [(r.get("intervals") or {}).get(key) for r in rows]
        if all(bounds):
            axis.fill_between(ks, [b["low"] for b in bounds], [b["high"] for b in bounds], color=colour, alpha=0.12, linewidth=0)

    left.plot(ks, [r["static_compensation"] for r in rows], "o-", color="tab:blue", label="compensated ∩ top-20 static (mean m_s)")
    band(left, "static_compensation", "tab:blue")
    left.set_xlabel(xlabel)
    left.set_ylabel("mean m_s (heads)", color="tab:blue")
    left.tick_params(axis="y", labelcolor="tab:blue")
    left.set_xticks(ks)
    right = left.twinx()
    for (key, label), style, alpha in zip(metrics, ("s-", "^--", "v:"), (1.0, 0.6, 0.4)):
        right.plot(ks, [r[key] for r in rows], style, color="tab:red", alpha=alpha, label=label)
        band(right, key, "tab:red")
    right.set_ylim(-0.05, 1.05)
    right.set_ylabel(" / ".join(label for _, label in metrics), color="tab:red")
    right.tick_params(axis="y", labelcolor="tab:red")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.set_title(f"{title}\nmean over {'/'.join(map(str, counts))} prompt{'s' if counts != [1] else ''} per k"
                   " (bands: 95 % bootstrap intervals)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the legend goes below the axes, off the curves
    fig.legend(handles, labels, fontsize=7, ncol=2, loc="lower center", frameon=False)
    save_figure(fig, path)


def cca_plot(rows: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    """Figures 4 / 8: canonical correlation against the temporal offset k (hidden state at n, scores at n + k).

    ``rows``: one per k with ``in_sample``, ``held_out`` and ``shuffled`` summaries (``top1``,
    ``top10_mean``, ``top50_mean``). Colour = statistic; solid = in-sample (the paper's), dashed =
    held-out generations (the number to quote), dotted = shuffled control (fitted on mismatched steps,
    scored on the held-out generations like the real one).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 5.4))
    lowest = 0.0
    for stat, label, colour in (("top1", "top-1", "tab:blue"), ("top10_mean", "top-10 mean", "tab:orange"),
                                ("top50_mean", "top-50 mean", "tab:green")):
        for source, style, name in (("in_sample", "o-", "in-sample"), ("held_out", "s--", "held-out"),
                                    ("shuffled", "^:", "shuffled (held-out)")):
            points = [(r["k"], r[source][stat]) for r in rows if r.get(source)]
            if points:
                ax.plot(*zip(*points), style, color=colour, label=f"{label}, {name}", markersize=4)
                lowest = min(lowest, *(v for _, v in points))
    ax.set_xlabel("temporal offset k (hidden state at step n, head scores at step n + k)")
    ax.set_ylabel("canonical correlation")
    ax.set_ylim(lowest - 0.05, 1.05)  # held-out correlations can be negative: keep them on the axes
    ax.set_xticks([int(r["k"]) for r in rows])
    ax.set_title(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, ncol=3, loc="lower center", frameon=False)
    save_figure(fig, path)
