"""The measured KV share kept by one document's decoding: what the ``kv`` task metrics and the ``kv`` stage report.

Why one function: the lm-eval metric (``kv_kept_heads`` / ``kv_kept_kv``) and the suite's table averaged the
per-step shares each in their own code; now both read this one.
"""

from __future__ import annotations

from collections.abc import Sequence


def mean_kept(steps: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Per column (0: per query head, 1: per KV head) the share of (head, key) pairs attended, averaged over the
    document's decode steps (each step a row ``[per query head, per KV head]``)."""
    if not steps:
        raise ValueError("dynheads: a KV share kept needs at least one decode step")
    return tuple(sum(step[i] for step in steps) / len(steps) for i in range(len(steps[0])))
