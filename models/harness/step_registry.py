"""Per-document head traces handed from the ``dynheads`` model to a task's ``process_results``.

Why a side channel: lm-eval passes only the generated strings from a model to the task, but the head
statistics of the lm-eval table (Table 1 of the paper) need each step's Eq. 1 heads. The model
stores them here keyed by the document's content (lm-eval gives ``generate_until`` and
``process_results`` equal copies of the same document, not the same object), and the task reads them.
Under any other model (``--model hf``) nothing is stored, so the head metrics are absent, never zero.

Kept free of heavy imports: task modules import it at lm-eval start-up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

_ENTRIES: dict[str, dict[str, Any]] = {}


def doc_key(doc: Mapping[str, Any]) -> str:
    """Content hash of a document (key order and container types do not matter)."""
    blob = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


def remember(doc: Mapping[str, Any], record: dict[str, Any]) -> None:
    _ENTRIES[doc_key(doc)] = record


def take(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Remove and return the record stored for ``doc`` by the latest dynheads generation, or None.

    Consumed on read, so a later run in the same process under another model (``--model hf``) can
    never pick up a stale record. (A task with several filter pipelines therefore reports the head
    statistics for its first filter only.)
    """
    return _ENTRIES.pop(doc_key(doc), None)


def clear() -> None:
    """Forget every record (each ``generate_until`` call starts afresh, so runs never mix)."""
    _ENTRIES.clear()
