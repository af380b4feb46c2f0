"""Independent verification: every traced step recomputed with eager attention from the trace alone
(:mod:`.generations` for masked, unmasked and KV lines; :mod:`.rag` replays Section 5 answers).

Run it as ``python -m dynheads.models.verify --pretrained smollm2 TRACE.jsonl``."""

from .generations import gated, main, passed, recompute_unmasked, replay_kv, replay_masked, verify_records

__all__ = ["gated", "main", "passed", "recompute_unmasked", "replay_kv", "replay_masked", "verify_records"]
