"""Figures of the NIAH analysis: condition heatmaps (paper Figure 2); Figure 3 is
:func:`dynheads.suite.plotting.progressive_plot`.

Plain matplotlib (Agg backend), written atomically. Inputs are small summaries, never traces, so the
figures can be redrawn from run_suite's JSON results without a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..plotting import metric_label, progressive_plot, pyplot, save_figure, text_colour

__all__ = ["condition_heatmaps", "progressive_plot"]


def condition_heatmaps(
    panels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], metric: str, title: str, path: Path
) -> None:
    """Side-by-side length × depth heatmaps, one panel per condition.

    ``panels``: ``(condition title, cells)`` where each cell has ``length``, ``depth``, ``metric`` and ``n``, its
    document count (from :func:`dynheads.suite.niah.report.per_cell`; the title says how many). Missing cells stay
    blank.
    """
    import numpy as np

    plt = pyplot()
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
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color=text_colour(image.cmap(image.norm(grid[i, j]))))
        ax.set_xticks(range(len(lengths)), [str(x) for x in lengths], rotation=45)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("context length (tokens)")
    axes[0][0].set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    axes[0][0].set_ylabel("needle depth")
    counts = sorted({int(c["n"]) for _, cells in panels for c in cells if "n" in c})
    if counts:  # what one number in a cell averages, so a 0.50 over 2 documents is not read as a rate
        title += f"\n(each cell: the mean over {counts[0]} documents)" if len(counts) == 1 else \
            f"\n(each cell: the mean over {counts[0]}-{counts[-1]} documents)"
    fig.suptitle(title)
    fig.colorbar(image, ax=list(axes[0]), label=metric_label(metric), shrink=0.9, fraction=0.03, pad=0.02)
    save_figure(fig, path)
