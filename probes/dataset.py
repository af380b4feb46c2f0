"""Step vectors from trace files: hidden states, head scores and the generation of every decode step.

Reads the binary sidecar written with the ``dynheads`` model argument ``hidden=true``
(:mod:`dynheads.traces`) into preallocated arrays: one pass counts the steps, a second copies
each line's memory-mapped block in place, so even 10^5 steps x 4096 floats are never Python lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..traces import read_lines, read_vectors, score_kind, trace_files


@dataclass
class StepVectors:
    """Rows are decode steps, contiguous per generation and in step order.

    ``kind``: ``copy_paste`` (Eq. 1 indicators, a classification target) or ``reasoning`` (Eq. 2 scores, a
    regression target); ``model``: the model that wrote the traces. Per generation (indexed by
    ``groups``): ``documents``, the document's content hash (``doc_key`` of its trace line; None in older
    traces), and ``sources``, the trace file it came from.
    """

    hidden: np.ndarray  # [steps, hidden] float32
    scores: np.ndarray  # [steps, layers * heads] float32
    groups: np.ndarray  # [steps] generation index
    kind: str
    model: str | None
    documents: list[str | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def subset(self, rows: np.ndarray) -> "StepVectors":
        """The given rows; ``groups`` keep their values, so the per-generation lists stay whole."""
        return StepVectors(self.hidden[rows], self.scores[rows], self.groups[rows], self.kind, self.model,
                           self.documents, self.sources)

    def documents_of(self, rows: np.ndarray) -> list[str]:
        """The known document hashes of the generations these rows belong to, sorted."""
        return sorted({self.documents[g] for g in np.unique(self.groups[rows]) if self.documents[g]})


def load_step_vectors(paths: Iterable[str | Path], mask: str = "none") -> StepVectors:
    """Every step of the ``mask`` lines (default: unmasked generations) of the trace files under ``paths``."""
    lines = []
    for file in trace_files(paths):
        for record in read_lines(file):
            if record.get("condition", "none") == mask and record.get("vectors") and record["vectors"]["steps"]:
                lines.append((file, record))
    if not lines:
        raise ValueError("dynheads: no trace line with hidden-state vectors found; trace with --model_args "
                         "hidden=true,trace_dir=DIR (unmasked condition) first")
    kinds = {score_kind(record) for _, record in lines}
    models = {record["vectors"].get("model") for _, record in lines}
    dims = {(record["vectors"]["hidden"]["dim"], record["vectors"]["scores"]["dim"]) for _, record in lines}
    if len(kinds) > 1 or len(models) > 1 or len(dims) > 1:
        raise ValueError(f"dynheads: the traces mix kinds {sorted(kinds)}, models {sorted(map(str, models))} or sizes "
                         f"{sorted(dims)}; train one probe per model and task kind")
    (hidden_dim, score_dim), total = dims.pop(), sum(record["vectors"]["steps"] for _, record in lines)
    hidden = np.empty((total, hidden_dim), dtype=np.float32)
    scores = np.empty((total, score_dim), dtype=np.float32)
    groups = np.empty(total, dtype=np.int64)
    row = 0
    for generation, (file, record) in enumerate(lines):
        h, s = read_vectors(file, record)
        hidden[row:row + len(h)], scores[row:row + len(h)], groups[row:row + len(h)] = h, s, generation
        row += len(h)
    return StepVectors(hidden, scores, groups, kinds.pop(), models.pop(), [record.get("doc_key") for _, record in lines],
                       [str(file) for file, _ in lines])
