"""Figures of the NIAH analysis: condition heatmaps (paper Figure 2) and the progressive ablation (Figure 3).

Plain matplotlib (Agg backend), written atomically. Inputs are small summaries, never traces, so the
figures can be redrawn from run_suite's JSON results without a model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def condition_heatmaps(
    panels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], metric: str, title: str, path: Path
) -> None:
    """Side-by-side length × depth heatmaps, one panel per condition.

    ``panels``: ``(condition title, cells)`` where each cell has ``length``, ``depth`` and ``metric``
    (from :func:`dynheads.tasks.niah_uuid.utils.per_cell`). Missing cells stay blank.
    """
    import numpy as np

    plt = _pyplot()
    lengths = sorted({int(c["length"]) for _, cells in panels for c in cells})
    depths = sorted({float(c["depth"]) for _, cells in panels for c in cells})
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 * len(lengths) * len(panels) + 2.5, 0.55 * len(depths) + 2.2),
                             squeeze=False, sharey=True, layout="constrained")
    image = None
    for ax, (name, cells) in zip(axes[0], panels):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for c in cells:
            grid[depths.index(float(c["depth"])), lengths.index(int(c["length"]))] = float(c[metric])
        image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not math.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(lengths)), [str(x) for x in lengths], rotation=45)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("context length (tokens)")
    axes[0][0].set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    axes[0][0].set_ylabel("needle depth")
    fig.suptitle(title)
    fig.colorbar(image, ax=list(axes[0]), label=metric, shrink=0.9, fraction=0.03, pad=0.02)
    _save(fig, path)
    plt.close(fig)


def progressive_plot(rows: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    """Figure 3: mean peak static compensation (left axis) and accuracy / ROUGE-L (right axis) against k.

    ``rows``: one per k with ``k``, ``static_compensation`` (mean m_s), ``acc`` and ``rouge_l``.
    """
    plt = _pyplot()
    ks = [int(r["k"]) for r in rows]
    fig, left = plt.subplots(figsize=(5.5, 3.8))
    left.plot(ks, [r["static_compensation"] for r in rows], "o-", color="tab:blue", label="compensated ∩ top-20 static (mean m_s)")
    left.set_xlabel("masked dynamic heads per step (k)")
    left.set_ylabel("mean m_s (heads)", color="tab:blue")
    left.tick_params(axis="y", labelcolor="tab:blue")
    left.set_xticks(ks)
    right = left.twinx()
    right.plot(ks, [r["acc"] for r in rows], "s-", color="tab:red", label="accuracy")
    right.plot(ks, [r["rouge_l"] for r in rows], "^--", color="tab:red", alpha=0.6, label="ROUGE-L")
    right.set_ylim(-0.05, 1.05)
    right.set_ylabel("accuracy / ROUGE-L", color="tab:red")
    right.tick_params(axis="y", labelcolor="tab:red")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, fontsize=7, loc="center right")
    left.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
