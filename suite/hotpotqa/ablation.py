"""The Figure 6 grid: HotpotQA scores per (context-length bucket, position of the first supporting fact).

Why: the paper's Figure 6 asks whether masking hurts uniformly or only for long contexts / facts
deep in the context. HotpotQA contexts are not built to a length, so each example falls into a
*bucket* of its prompt length, and the first supporting fact's *relative position* in the paragraphs
is binned the same way. Cells differ in how many examples they hold, which the figure shows as
opacity and the tables as a count (a cell with none stays blank, never 0).

Conventions (documented in the README):

* context length = ``n_tokens`` of the document (the whole rendered prompt, as the model reads it);
* relative position = (first character of the earliest supporting sentence - start of the paragraph
  block) / length of the paragraph block, in ``[0, 1)``; 0 = the first paragraph's first sentence;
* ``edges`` are the inner boundaries of the bins: ``[a, b]`` makes ``< a``, ``a .. < b`` and ``>= b``.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def first_support_position(doc: Mapping[str, Any]) -> float:
    """Relative position in ``[0, 1)`` of the earliest supporting sentence inside the paragraph block."""
    start, end = doc["context_char_span"]
    if end <= start or not doc["support_char_spans"]:
        raise ValueError(f"hotpotqa_sf: document {doc.get('id')!r} has an empty context or no supporting facts")
    first = min(s for s, _ in doc["support_char_spans"])
    return (first - start) / (end - start)


def bin_index(value: float, edges: Sequence[float]) -> int:
    """Index of the bin holding ``value``: ``edges`` are ascending inner boundaries (left-closed bins)."""
    return bisect.bisect_right(list(edges), value)


def bin_labels(edges: Sequence[float], unit: str = "", percent: bool = False) -> list[str]:
    """Readable labels for the ``len(edges) + 1`` bins, e.g. ``['<1250', '1250-1500', '>=1500']``."""
    show = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:g}{unit}")
    if not edges:
        return ["all"]
    inner = [f"{show(a)}-{show(b)}" for a, b in zip(edges, edges[1:])]
    return [f"<{show(edges[0])}", *inner, f">={show(edges[-1])}"]


def check_edges(name: str, edges: Sequence[float]) -> list[float]:
    """Edges must be strictly ascending numbers; one clear line otherwise."""
    values = [float(e) for e in edges]
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"hotpotqa_sf: {name} edges {list(edges)} must be strictly ascending, e.g. 1250,1500,1750")
    return values


def ablation_cells(
    samples: Iterable[Mapping[str, Any]],
    length_edges: Sequence[float],
    position_edges: Sequence[float],
    metrics: Sequence[str] = ("em", "f1"),
) -> list[dict[str, Any]]:
    """Mean of each metric per (length bucket, position bin) over ``samples``.

    Each sample carries ``n_tokens``, ``position`` (see :func:`first_support_position`) and the
    metrics. Returns one dict per *occupied* cell: ``length_bin``, ``position_bin``, ``n`` and the
    metric means, sorted by (length_bin, position_bin). Empty cells are absent.
    """
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for s in samples:
        key = (bin_index(s["n_tokens"], length_edges), bin_index(s["position"], position_edges))
        groups.setdefault(key, []).append(s)
    return [
        {"length_bin": lb, "position_bin": pb, "n": len(rows), **{m: statistics.fmean(r[m] for r in rows) for m in metrics}}
        for (lb, pb), rows in sorted(groups.items())
    ]


def markdown_grid(cells: Sequence[Mapping[str, Any]], metric: str, length_labels: Sequence[str],
                  position_labels: Sequence[str]) -> str:
    """Position bins × length buckets as Markdown, ``value (n)`` per cell and ``—`` for an empty one."""
    by_key = {(c["length_bin"], c["position_bin"]): c for c in cells}
    lines = ["| first fact at \\ context | " + " | ".join(length_labels) + " |",
             "|---" + "|---:" * len(length_labels) + "|"]
    for p, plabel in enumerate(position_labels):
        row = []
        for lb in range(len(length_labels)):
            c = by_key.get((lb, p))
            row.append("—" if c is None else f"{c[metric]:.2f} ({c['n']})")
        lines.append(f"| {plabel} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
