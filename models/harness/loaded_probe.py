"""A probe file loaded once: the estimator, what it was saved with, and where it came from.

Why one object: the model holds up to three probes (Claim 3's ``probe=``, the dynamic RAG strategy's, ``kv=dynamic``'s
offset-1 probe), and everything that reads one (the probe metrics, the held-out check, the KV predictor, the RAG head
choice, a cell's identity) needs the same three facts together; passed as loose attributes they drifted apart
(the KV probe's path lived in the settings, the RAG probe's beside the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...probes.mlp import load_probe


@dataclass(frozen=True)
class LoadedProbe:
    """``estimator``: a probes/mlp.py estimator (``predict`` on float32 hidden states); ``meta``: what
    :func:`~dynheads.probes.mlp.load_probe` read beside it (kind, offset, fitted documents...); ``path``: its file."""

    estimator: Any = field(repr=False)
    meta: dict[str, Any]
    path: str

    @classmethod
    def load(cls, path: str | Path) -> "LoadedProbe":
        estimator, meta = load_probe(str(path))
        return cls(estimator, meta, str(path))
