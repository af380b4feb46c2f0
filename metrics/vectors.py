"""Binary sidecar of a trace file: each decode step's final hidden state and every head's retrieval score.

Part of the trace contract, so it sits in the bottom layer (numpy only): the model writes it, the
probes read it.

Why binary: Claim 3's probes read one hidden vector (576 floats for SmolLM2, 4096 for an 8B model)
per decode step, over up to ~10^5 steps; as JSON floats that would be slow to write, huge, and read
back as Python lists. The vectors are appended to ``<task>.vectors.bin`` beside ``<task>.jsonl`` and
each trace line says where its block lies (public contract, see the README):

    "vectors": {"file": "niah_uuid.vectors.bin", "offset": 1234, "steps": T, "model": "smollm2",
                "hidden": {"dim": 576, "dtype": "float16"}, "scores": {"dim": 270, "dtype": "float32"}}

At ``offset`` bytes into ``file``: ``T x hidden.dim`` little-endian values of ``hidden.dtype`` (row-major:
step, then feature), then ``T x scores.dim`` little-endian float32 (step, then ``layer * heads + head``).
Both come from the step's *first* pass (ungated under none / dynamic, the gated pass under static /
random): the hidden state after the final norm (what the LM head reads), and the Eq. 1 indicators
(1 for the heads in ``steps[t].heads``) or, on Eq. 2 traces, the Eq. 2 scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HIDDEN_DTYPES = ("float16", "float32")


def score_matrix(steps: list[Any], num_layers: int, num_heads: int) -> np.ndarray:
    """``[steps, layers * heads]`` float32: Eq. 2 scores where the steps carry them, else Eq. 1 indicators."""
    out = np.zeros((len(steps), num_layers * num_heads), dtype=np.float32)
    for t, step in enumerate(steps):
        if step.scores is not None:
            out[t] = np.asarray(step.scores, dtype=np.float32).reshape(-1)
        else:
            for layer, head in step.heads:
                out[t, layer * num_heads + head] = 1.0
    return out


def append_vectors(path: Path, hidden: np.ndarray, scores: np.ndarray, hidden_dtype: str = "float16",
                   model: str | None = None) -> dict[str, Any]:
    """Append one line's block to the sidecar ``path``; returns the reference to store in the trace line
    (``model`` names the model that wrote it, so a probe trained on it knows what it was trained on)."""
    if hidden_dtype not in HIDDEN_DTYPES:
        raise ValueError(f"dynheads: hidden_dtype={hidden_dtype!r}; choose float16 or float32")
    hidden = np.ascontiguousarray(hidden, dtype=np.dtype(hidden_dtype).newbyteorder("<"))
    scores = np.ascontiguousarray(scores, dtype=np.dtype("float32").newbyteorder("<"))
    if hidden.ndim != 2 or scores.ndim != 2 or len(hidden) != len(scores):
        raise ValueError(f"dynheads: sidecar blocks must be [steps, dim] with equal steps, got {hidden.shape}, {scores.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        offset = fh.seek(0, 2)
        fh.write(hidden.tobytes() + scores.tobytes())
    return {"file": path.name, "offset": offset, "steps": len(hidden), "model": model,
            "hidden": {"dim": hidden.shape[1], "dtype": hidden_dtype}, "scores": {"dim": scores.shape[1], "dtype": "float32"}}


def read_vectors(trace_file: str | Path, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(hidden [T, D], scores [T, L*H])`` arrays of one trace line (memory-mapped, not loaded whole)."""
    ref = record.get("vectors")
    if not ref:
        raise ValueError("dynheads: this trace line has no vectors; trace with the model argument hidden=true")
    path = Path(trace_file).parent / ref["file"]
    steps, h, s = ref["steps"], ref["hidden"], ref["scores"]
    hidden_type = np.dtype(h["dtype"]).newbyteorder("<")
    hidden = np.memmap(path, dtype=hidden_type, mode="r", offset=ref["offset"], shape=(steps, h["dim"]))
    scores_at = ref["offset"] + steps * h["dim"] * hidden_type.itemsize
    scores = np.memmap(path, dtype=np.dtype("float32").newbyteorder("<"), mode="r", offset=scores_at, shape=(steps, s["dim"]))
    return hidden, scores
