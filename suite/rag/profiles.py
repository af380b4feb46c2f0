"""The Section 5 part of a ``run_suite`` profile (dev examples, chunks, head counts k, the RAG settings) and its
command-line overrides. The examples are HotpotQA's, read with the ``hotpotqa`` part's split and source."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..overrides import override

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"rag": {"n": 24, "chunk": 8, "heads": 5, "ks": [5, 10, 20]}},
    # 200 dev examples at k = 5 (the quick run's paired F1 differences have SD ~0.3 per example); k = 10 / 20 stay the
    # quick profile's (each extra k costs 4 more strategies per example)
    "power": {"rag": {"n": 200, "chunk": 20, "heads": 5, "ks": [5]}},
    # 500 dev examples: the paper's Table 4 scores are multiples of 1/500
    "paper": {"rag": {"n": 500, "chunk": 50, "heads": 5, "ks": [5, 10, 20]}},
}
# Gemma-3-270M is ~2-3x slower per sample on 2 cores (262K-token vocabulary): a third of the quick profile's examples
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {"gemma3-270m": {"rag": {"n": 8, "chunk": 8, "heads": 5, "ks": [5, 10, 20]}}}

RAG_ARGUMENTS = (
    ("threshold", float, "RIND threshold a draft word must exceed to trigger retrieval (default 1.2; DRAGIN's HotpotQA configs: 1.2-1.4)"),
    ("algorithm", str, "paper (Algorithm 1 as written: whole regeneration, windows kept until a draft passes; default) "
                       "or dragin (DRAGIN's code: first regenerated sentence, context hidden again)"),
    ("stopwords", str, "trigger (DRAGIN's code: any word may trigger; default) or skip (stop words never trigger)"),
    ("top_positions", int, "context positions taken from the chosen heads' mean attention (default 8)"),
    ("cluster_gap", int, "top positions at most this many tokens apart form one cluster (default 16)"),
    ("window", int, "tokens made visible around each cluster's best position (default 48)"),
    ("max_retrievals", int, "retrievals allowed per answer (default 3)"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rag-n", type=int, default=None, help="override the dev examples of the in-context RAG stage")
    p.add_argument("--rag-chunk", type=int, default=None, help="override RAG examples per resumable chunk")
    p.add_argument("--rag-ks", default=None, help="override the RAG head counts k of Table 6, e.g. 5,10,20 (the first is Table 4's)")
    for name, kind, what in RAG_ARGUMENTS:
        p.add_argument(f"--rag-{name.replace('_', '-')}", type=kind, default=None, help=f"RAG: {what}")


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """This section's part of profile ``name`` for ``model_name``, with the command line's overrides (a count
    below 1 fails here, before any model loads)."""
    prof = json.loads(json.dumps(PROFILES[name]))
    if name == "quick":
        prof.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    rag = prof["rag"]
    override(rag, "n", args.rag_n)
    override(rag, "chunk", args.rag_chunk)
    override(rag, "ks", args.rag_ks, int)
    if args.rag_ks:
        rag["heads"] = rag["ks"][0]
    for key, _, _ in RAG_ARGUMENTS:
        override(rag, key, getattr(args, f"rag_{key}"))
    if min(int(rag["n"]), int(rag["chunk"]), *(int(k) for k in rag["ks"])) < 1:
        raise ValueError("run_suite: RAG examples, chunk and head counts must be at least 1, e.g. --rag-n 16 --rag-chunk 8 --rag-ks 5,10,20")
    return prof


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The ``dynheads`` model arguments this section's profile sets (k, the RAG settings)."""
    rag = prof["rag"]
    return {"rag_heads": rag["heads"], **{f"rag_{key}": rag[key] for key, _, _ in RAG_ARGUMENTS if key in rag}}
