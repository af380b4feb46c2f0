"""Refuse to score a document that a fitted piece of the model has already seen.

Two pieces are fitted on documents: the static-head calibration (on its task's reserved seed) and a saved
probe (Claim 3's, or ``kv=dynamic``'s offset-1 one, on the documents its file records). Scoring either on its own documents would measure
memory, not the effect; the lm-eval model calls :func:`check_request` once per request, before decoding.
"""

from __future__ import annotations

from typing import Any

from ..engine import DecodingError
from .static_heads import calibration_for
from .context import ConditionModel
from ...spec import KV_PREDICTED


def check_calibration_seed(doc: dict | None, kind: str, static_source: str) -> None:
    """A document on the seed its task's static-head calibration is reserved to (while it is calibrated here)."""
    seed = (doc or {}).get("seed")
    calibration = calibration_for(kind)
    reserved = calibration.reserved_seed if calibration is not None else None
    if static_source == "auto" and seed is not None and reserved is not None and int(seed) == reserved:
        raise DecodingError(
            f"dynheads: this document uses seed {seed}, the static-head calibration seed; "
            "evaluate with another seed (e.g. --metadata '{\"seed\": 0}') so calibration and evaluation stay disjoint"
        )


def check_unseen(meta: dict[str, Any], doc_key: str, path: str, task: str, doc_id: Any) -> None:
    """A document the probe saved with ``meta`` was trained or validated on (its file lists their hashes)."""
    if doc_key in (meta.get("documents") or ()):
        raise DecodingError(f"dynheads: probe={path!r} was trained or validated on {task} document {doc_id}; use it on "
                            "documents it has not seen (for niah_uuid another --metadata seed, e.g. '{\"seed\": 7}'; "
                            "for hotpotqa_sf the dev split, or another start)")


def check_request(lm: ConditionModel, doc: dict, doc_key: str, kind: str | None, task: str, doc_id: Any) -> None:
    """Every held-out check of one request: ``kind`` is the retrieval score of a needle document (calibration
    seed), None otherwise; the probe checked is the one the request reads (``probe=`` metrics, the dynamic
    RAG strategy's, or ``kv=dynamic``'s offset-1 probe)."""
    if kind is not None:
        check_calibration_seed(doc, kind, lm.settings.static.source)
    strategies = lm.settings.rag_strategies
    reads = [(lm.probe, not strategies), (lm.rag_probe, any(s.name == "dynamic" for s in strategies)),
             (lm.kv_probe, any(name in KV_PREDICTED for name, _ in lm.settings.kv.strategies))]
    for probe, read in reads:
        if probe is not None and read:
            check_unseen(probe.meta, doc_key, probe.path, task, doc_id)
