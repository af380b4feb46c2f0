"""Figure 5 of the paper: Eq. 2 scores of the most varying heads over the steps of one answer.

    python -m dynheads.tasks.hotpotqa_sf.figures TRACE.jsonl --doc 0 --out figure5.png

Reads one record of a ``hotpotqa_sf`` trace file (``trace_dir`` of the ``dynheads`` model; the record
must carry per-step ``scores``), picks the heads whose score varies most across the steps (population
variance; ties by (layer, head)) and draws their scores as a heads × steps heatmap whose columns are
labelled with the generated tokens. Why variance: the figure is meant to show heads switching on and
off during one answer, which a constant head cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Head = tuple[int, int]


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


def score_heatmap(record: Mapping[str, Any], labels: Sequence[str], path: Path, k: int = 10, title: str = "") -> list[Head]:
    """Draw Figure 5 for one trace record; returns the heads shown (top row first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = [step["scores"] for step in record["steps"] if step.get("scores") is not None]
    if len(steps) != len(record["steps"]):
        raise ValueError("dynheads: some steps of this record carry no Eq. 2 scores; use a hotpotqa_sf trace")
    chosen = most_varying_heads(steps, k)
    grid = np.array([[step[l][h] for step in steps] for l, h in chosen])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(steps) + 2), 0.4 * len(chosen) + 1.8), layout="constrained")
    image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(chosen)), [f"L{l}H{h}" for l, h in chosen])
    ax.set_xticks(range(len(steps)), [repr(t)[1:-1] for t in labels[: len(steps)]], rotation=90, fontsize=7)
    ax.set_xlabel("generation step (generated token)")
    ax.set_title(title or "Eq. 2 reasoning retrieval scores of the most varying heads", fontsize=10)
    fig.colorbar(image, ax=ax, label="Eq. 2 score", fraction=0.03, pad=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", help="a hotpotqa_sf.jsonl trace file")
    parser.add_argument("--doc", type=int, default=0, help="doc_id of the answer to draw (default 0)")
    parser.add_argument("--mask", default="none", help="which condition's record (default none)")
    parser.add_argument("--pretrained", default=None, help="tokenizer for the step labels (default: embedded SmolLM2)")
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--out", default="figure5.png")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in Path(args.trace).read_text().splitlines() if line.strip()]
    matches = [r for r in records if r.get("doc_id") == args.doc and r.get("mask", "none") == args.mask]
    if not matches:
        print(f"figures: no record with doc_id {args.doc} and mask {args.mask} in {args.trace}", file=sys.stderr)
        return 2
    from dynheads.models.loading import load_tokenizer

    tokenizer = load_tokenizer(args.pretrained)
    labels = [tokenizer.decode([step["token_id"]]) for step in matches[-1]["steps"]]
    chosen = score_heatmap(matches[-1], labels, Path(args.out), args.heads, f"doc {args.doc}: Eq. 2 scores")
    print(f"figures: wrote {args.out} ({', '.join(f'L{l}H{h}' for l, h in chosen)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
