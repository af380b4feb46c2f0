"""The data of one explorer page: every traced line of one document, as the page's script reads it.

Why a pure function apart from the page: what a reader sees (the tokens, the heads each step found, where each
looked, the needle or supporting facts, the retrievals of a RAG answer, the units a KV condition kept whole) is
decided here and tested here; the HTML only draws it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..spec import ConditionSpec
from ..traces import kv_full


def document_data(lines: Sequence[dict[str, Any]], token_text: Callable[[int], str], num_layers: int,
                  num_heads: int) -> dict[str, Any]:
    """One document's page data from its trace ``lines`` (one per condition; the same prompt): the prompt's tokens as
    text, the needle (Eq. 1) or supporting-fact (Eq. 2) positions, the context span of a RAG line, and per line its
    condition and steps. ``num_layers`` x ``num_heads``: the step x head grid's columns (query heads)."""
    if not lines:
        raise ValueError("dynheads: no trace line to show")
    prompt = lines[0]["input_ids"]
    if any(line["input_ids"] != prompt for line in lines):
        raise ValueError(f"dynheads: the lines of document {lines[0].get('doc_id')!r} do not share one prompt")
    first = lines[0]
    support = first.get("support_token_indices") or (first.get("rag") or {}).get("support_token_indices") or []
    span = (first.get("rag") or {}).get("context_token_span")
    return {"task": first.get("task"), "doc_id": first.get("doc_id"), "num_layers": num_layers, "num_heads": num_heads,
            "prompt": [token_text(t) for t in prompt], "needle": list(first.get("needle_token_indices") or []),
            "support": list(support), "context_span": list(span) if span else None,
            "reasoning": first.get("reasoning"), "lines": [line_data(line, token_text) for line in lines]}


def line_data(line: dict[str, Any], token_text: Callable[[int], str]) -> dict[str, Any]:
    """One line: its condition and family, its response, and per step the token's text, the retrieval heads, where
    each looked, the gated heads, the re-run's heads, the Eq. 2 scores, the KV units kept whole; a RAG line's
    retrievals (trigger word, heads, windows)."""
    spec = ConditionSpec.parse(line.get("condition", "none"))
    steps = []
    for t, step in enumerate(line["steps"]):
        steps.append({"text": token_text(step["token_id"]), "heads": step.get("heads", []),
                      "attended": step.get("attended"), "gated": step.get("gated", []),
                      "heads_after": step.get("heads_after"), "scores": step.get("scores"),
                      "kv_full": kv_full(line, step) if spec.family == "kv" else None})
    retrievals = [{"step": r["step"], "word": (r.get("trigger") or {}).get("word"), "heads": r.get("heads", []),
                   "windows": r.get("windows", [])} for r in (line.get("rag") or {}).get("retrieval_log", [])]
    return {"condition": spec.name, "family": spec.family, "response": line.get("response", ""), "steps": steps,
            "retrievals": retrievals}


def by_document(lines: Iterable[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """A trace file's lines grouped by document (``doc_key`` where written, else ``doc_id``), in file order."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for line in lines:
        out.setdefault(line.get("doc_key") or line.get("doc_id"), []).append(line)
    return out
