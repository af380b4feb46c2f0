"""Heads as ``(layer, head)`` pairs, and seeded random head draws (stdlib only: task packages import it at start-up)."""

from __future__ import annotations

import random

Head = tuple[int, int]


def random_heads(count: int, layers: int, heads: int, seed: str) -> list[Head]:
    """``count`` distinct heads drawn from ``layers x heads`` by a generator seeded with the text ``seed``, sorted.

    Seeded by text (e.g. ``"0-niah_uuid-<document hash>"``) so that a draw is reproducible and differs per
    document, strategy or retrieval, whatever order the documents come in.
    """
    rng = random.Random(str(seed))
    return sorted((p // heads, p % heads) for p in rng.sample(range(layers * heads), count))
