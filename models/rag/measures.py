"""Per-answer retrieval measures of a ``rag=`` answer, and their lm-eval metrics (stdlib only).

Why stdlib only: the tasks' ``process_results`` read these at lm-eval start-up, before any model loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RAG_METRICS = ("rag_retrievals", "rag_triggered", "rag_visible_tokens", "rag_precision", "rag_recall")


def measures(answer: Any) -> dict[str, Any]:
    """Per answer (a ``RagAnswer``): retrievals, and per retrieval the visible tokens and the windows' precision / recall."""
    return {"retrievals": len(answer.retrievals), "drafts": answer.drafts,
            "visible_tokens": [r.visible_tokens for r in answer.retrievals],
            "precision": [r.precision for r in answer.retrievals], "recall": [r.recall for r in answer.retrievals]}


def lm_eval_metrics(rag: Mapping[str, Any]) -> dict[str, Any]:
    """Retrievals of one answer; the visible tokens and window precision / recall of its retrievals (absent
    when it retrieved nothing, so they average over retrievals only)."""
    names = RAG_METRICS if rag["retrievals"] else RAG_METRICS[:2]
    values = (rag["retrievals"], float(rag["retrievals"] > 0), rag["visible_tokens"], rag["precision"], rag["recall"])
    return dict(zip(names, values))
