"""Figures of the HotpotQA analysis: Figure 5 (Eq. 2 scores of the most varying heads over the steps
of one answer) and Figure 6 (EM/F1 per context-length × first-fact-position cell under each masking
condition, with the samples per cell written in it). Figure 7 is :func:`dynheads.suite.plotting.progressive_plot`.

    python -m dynheads.suite.hotpotqa.figures TRACE.jsonl --doc 0 --out figure5.png

Reads one record of a ``hotpotqa_sf`` trace file (``trace_dir`` of the ``dynheads`` model; the record
must carry per-step ``scores``), picks the heads whose score varies most across the steps (population
variance; ties by (layer, head)) and draws their scores as a heads × steps heatmap whose columns are
labelled with the generated tokens. Why variance: the figure is meant to show heads switching on and
off during one answer, which a constant head cannot.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...metrics.heads import Head
from ...traces import read_lines
from ..plotting import metric_label, pyplot, save_figure, text_colour



def most_varying_heads(step_scores: Sequence[Sequence[Sequence[float]]], k: int = 10) -> list[Head]:
    """The ``k`` heads with the largest population variance of their score across steps."""
    if not step_scores:
        raise ValueError("dynheads: the trace record has no step scores; trace a hotpotqa_sf run with the dynheads model")
    layers, heads = len(step_scores[0]), len(step_scores[0][0])
    variance = {
        (l, h): statistics.pvariance([float(step[l][h]) for step in step_scores])
        for l in range(layers) for h in range(heads)
    }
    return sorted(variance, key=lambda head: (-variance[head], head))[:k]


def score_heatmap(record: Mapping[str, Any], labels: Sequence[str], path: Path, k: int = 10, title: str = "",
                  threshold: float | None = None) -> list[Head]:
    """Draw Figure 5 for one trace record; returns the heads shown (top row first).

    ``threshold`` (default: the record's own Eq. 2 threshold, if it has one) is marked on the colour
    bar, and every cell above it (a reasoning head at that step) gets a dot.
    """
    import numpy as np

    plt = pyplot()
    steps = [step["scores"] for step in record["steps"] if step.get("scores") is not None]
    if len(steps) != len(record["steps"]):
        raise ValueError("dynheads: some steps of this record carry no Eq. 2 scores; use a hotpotqa_sf trace")
    chosen = most_varying_heads(steps, k)
    grid = np.array([[step[l][h] for step in steps] for l, h in chosen])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(steps) + 2), 0.4 * len(chosen) + 1.8), layout="constrained")
    if threshold is None:
        threshold = (record.get("reasoning") or {}).get("threshold")
    image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(chosen)), [f"L{l}H{h}" for l, h in chosen])
    ax.set_ylabel("head (layer L, head H)")
    ax.set_xticks(range(len(steps)), [repr(t)[1:-1] for t in labels[: len(steps)]], rotation=90, fontsize=7)
    ax.set_xlabel("generation step (generated token)")
    ax.set_title(title or "Eq. 2 reasoning retrieval scores of the most varying heads", fontsize=10)
    label = "Eq. 2 score"
    if threshold is not None:
        rows, cols = np.nonzero(grid > threshold)
        ax.scatter(cols, rows, s=10, c=[text_colour(image.cmap(image.norm(grid[r, c]))) for r, c in zip(rows, cols)],
                   marker="o", linewidths=0)
        label += f" (line: threshold {threshold:g}; dot: above it)"
    bar = fig.colorbar(image, ax=ax, label=label, fraction=0.03, pad=0.02)
    if threshold is not None:
        bar.ax.axhline(threshold, color="tab:red", linewidth=2)
    save_figure(fig, path)
    return chosen


def ablation_heatmaps(
    panels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    metric: str,
    length_labels: Sequence[str],
    position_labels: Sequence[str],
    title: str,
    path: Path,
) -> None:
    """Figure 6: one position × length panel per condition; colour = ``metric``, text = value and samples.

    ``panels``: ``(condition title, cells)`` with cells from
    :func:`dynheads.suite.hotpotqa.ablation.ablation_cells`. Colours are the colour bar's exactly;
    each cell is annotated with its value and its sample count ``n`` (the small quick profile leaves
    many cells with one or two examples); a cell with no sample is blank, as in the paper.
    """
    import matplotlib.colors as mcolors

    plt = pyplot()
    cmap = plt.get_cmap("RdYlGn")
    fig, axes = plt.subplots(1, len(panels), figsize=(1.1 * len(length_labels) * len(panels) + 2.5, 0.6 * len(position_labels) + 2.3),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, (name, cells) in zip(axes[0], panels):
        ax.set_xlim(-0.5, len(length_labels) - 0.5)
        ax.set_ylim(len(position_labels) - 0.5, -0.5)
        for c in cells:
            value = float(c[metric])
            x, y = c["length_bin"], c["position_bin"]
            ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=cmap(value), edgecolor="white"))
            if not math.isnan(value):
                ax.text(x, y, f"{value:.2f}\nn={c['n']}", ha="center", va="center", fontsize=8, color=text_colour(cmap(value)))
        ax.set_xticks(range(len(length_labels)), list(length_labels), rotation=45, fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("context length (tokens)")
    axes[0][0].set_yticks(range(len(position_labels)), list(position_labels), fontsize=8)
    axes[0][0].set_ylabel("first supporting fact starts at\n(% of the paragraphs' characters)")
    fig.suptitle(title)
    mappable = plt.cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap=cmap)
    fig.colorbar(mappable, ax=list(axes[0]), label=f"{metric_label(metric)} (n = examples in the cell)", shrink=0.9,
                 fraction=0.03, pad=0.02)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", help="a hotpotqa_sf.jsonl trace file")
    parser.add_argument("--doc", type=int, default=0, help="doc_id of the answer to draw (default 0)")
    parser.add_argument("--mask", default="none", help="which condition's record (default none)")
    parser.add_argument("--pretrained", default=None, help="tokenizer for the step labels (default: embedded SmolLM2)")
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--out", default="figure5.png")
    args = parser.parse_args(argv)
    records = read_lines(args.trace)
    matches = [r for r in records if r.get("doc_id") == args.doc and r.get("condition", "none") == args.mask]
    if not matches:
        print(f"figures: no record with doc_id {args.doc} and mask {args.mask} in {args.trace}", file=sys.stderr)
        return 2
    from ...models.harness.loading import load_tokenizer

    tokenizer = load_tokenizer(args.pretrained)
    labels = [tokenizer.decode([step["token_id"]]) for step in matches[-1]["steps"]]
    chosen = score_heatmap(matches[-1], labels, Path(args.out), args.heads, f"doc {args.doc}: Eq. 2 scores")
    print(f"figures: wrote {args.out} ({', '.join(f'L{l}H{h}' for l, h in chosen)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
