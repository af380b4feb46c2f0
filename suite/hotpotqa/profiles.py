"""The HotpotQA part of a ``run_suite`` profile (examples, chunks, Eq. 2 threshold, bins, probes, RAG) and its overrides."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..probing import PROBE_FIT, apply_arguments
from ..overrides import override

# Contexts are 1-2K tokens (SmolLM2 tokenizer: quartiles 1305 / 1535 / 1762 on the first 200 dev examples),
# so the Figure 6 length buckets split there; the first supporting fact's relative position is binned in fifths.
BINS = {"length_edges": [1250, 1500, 1750], "position_edges": [0.2, 0.4, 0.6, 0.8]}
PROFILES: dict[str, dict[str, Any]] = {
    # threshold 0.2, not the library default 0.5: SmolLM2 has ~0.2-0.4 heads per step above 0.5 (too few
    # to mask; N would be 0-1) and ~4-6 above 0.2, near its NIAH Eq. 1 count. Table 1 reports both.
    # probes: ~9 steps per answer, so 72 train examples give >= 600 steps; the 24 evaluated dev answers are the test set.
    # n = 24 (was 16 before batching): the batched engine's savings spent on the Figure 6 ablation and Table 4
    "quick": {"hotpotqa": {"split": "dev", "source": None, "n": 24, "chunk": 8, "calib_examples": 8, "threshold": 0.2,
                           "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 6, "ks": [0, 1, 2, 5, 10]},
                           "probes": {"train_n": 72, "chunk": 24, **PROBE_FIT, "hidden_sizes": [512, 256]},
                           "rag": {"n": 24, "chunk": 8, "heads": 5, "ks": [5, 10, 20]}}},
    # ~90 min on 2 CPU cores (README, "Power"): 200 dev examples for the Figure 6 ablation and Table 4 at k = 5 (the quick
    # run's paired F1 differences have SD ~0.3 per example, so the 95 % interval's half-width falls to ~0.04); k = 10 / 20
    # stay the quick profile's (each extra k costs 4 more strategies per example)
    "power": {"hotpotqa": {"split": "dev", "source": None, "n": 200, "chunk": 20, "calib_examples": 24, "threshold": 0.2,
                           "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 20, "ks": [0, 1, 2, 5, 10]},
                           "probes": {"train_n": 120, "chunk": 24, **PROBE_FIT, "hidden_sizes": [512, 256]},
                           "rag": {"n": 200, "chunk": 20, "heads": 5, "ks": [5]}}},
    "paper": {"hotpotqa": {"split": "dev", "source": None, "n": 1000, "chunk": 50, "calib_examples": 200, "threshold": 0.5,
                           "thresholds": [0.2, 0.5], "length_edges": [1000, 1250, 1500, 1750, 2000],
                           "position_edges": [0.2, 0.4, 0.6, 0.8], "progressive": {"n": 200, "ks": [0, 5, 10, 15, 20]},
                           "probes": {"train_n": 601, "chunk": 50, **PROBE_FIT,
                                      "hidden_sizes": [8192, 4096, 4096]},
                           # 500 dev examples: the paper's Table 4 scores are multiples of 1/500
                           "rag": {"n": 500, "chunk": 50, "heads": 5, "ks": [5, 10, 20]}}},
}
# Gemma-3-270M is ~3x slower per sample on 2 cores: 4 examples, 2 for Figure 7.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {"hotpotqa": {"split": "dev", "source": None, "n": 4, "chunk": 4, "calib_examples": 4, "threshold": 0.2,
                                 "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 2, "ks": [0, 1, 2, 5]},
                                 "probes": {"train_n": 24, "chunk": 12, **PROBE_FIT, "hidden_sizes": [256]},
                                 "rag": {"n": 4, "chunk": 4, "heads": 5, "ks": [5, 10, 20]}}},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hotpot-source", default=None,
                   help="HotpotQA evaluation data: a file (official or HF layout) or hf:NAME/CONFIG:SPLIT (default: vendored dev)")
    p.add_argument("--hotpot-n", type=int, default=None, help="override the number of HotpotQA evaluation examples")
    p.add_argument("--hotpot-chunk", type=int, default=None, help="override HotpotQA examples per resumable chunk")
    p.add_argument("--hotpot-calib", type=int, default=None, help="override the HotpotQA train examples of the Eq. 2 calibration")
    p.add_argument("--hotpot-threshold", type=float, default=None, help="override the Eq. 2 threshold that defines reasoning heads")
    p.add_argument("--hotpot-prog-n", type=int, default=None, help="override the examples of the HotpotQA progressive ablation")
    p.add_argument("--hotpot-ks", default=None, help="override the HotpotQA progressive ablation's k values, e.g. 0,2,5")
    p.add_argument("--hotpot-probe-train", type=int, default=None, help="override the train examples of the HotpotQA probe")
    p.add_argument("--rag-n", type=int, default=None, help="override the dev examples of the in-context RAG stage")
    p.add_argument("--rag-chunk", type=int, default=None, help="override RAG examples per resumable chunk")
    p.add_argument("--rag-ks", default=None, help="override the RAG head counts k of Table 6, e.g. 5,10,20 (the first is Table 4's)")
    for name, kind, what in RAG_ARGUMENTS:
        p.add_argument(f"--rag-{name.replace('_', '-')}", type=kind, default=None, help=f"RAG: {what}")


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


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """This task's part of profile ``name`` for ``model_name``, with the command line's overrides.

    A bad value (count below 1, unsorted bin edges, missing source file) fails here, before any model loads.
    """
    from .ablation import check_edges

    prof = json.loads(json.dumps(PROFILES[name]))
    if name == "quick":
        prof.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    hot = prof["hotpotqa"]
    override(hot["progressive"], "ks", args.hotpot_ks, int)
    for key, value in (("n", args.hotpot_n), ("chunk", args.hotpot_chunk), ("calib_examples", args.hotpot_calib),
                       ("threshold", args.hotpot_threshold)):
        override(hot, key, value)
    override(hot["progressive"], "n", args.hotpot_prog_n)
    override(hot["probes"], "train_n", args.hotpot_probe_train)
    override(hot["rag"], "n", args.rag_n)
    override(hot["rag"], "chunk", args.rag_chunk)
    override(hot["rag"], "ks", args.rag_ks, int)
    if args.rag_ks:
        hot["rag"]["heads"] = hot["rag"]["ks"][0]
    for name, _, _ in RAG_ARGUMENTS:
        override(hot["rag"], name, getattr(args, f"rag_{name}"))
    apply_arguments(hot["probes"], args)
    if args.hotpot_source:
        from ...tasks.hotpotqa_sf.utils import parse_metadata

        hot["source"] = parse_metadata({"source": args.hotpot_source}).source  # a missing file fails here, in one line
    if min(int(hot["rag"]["n"]), int(hot["rag"]["chunk"]), *(int(k) for k in hot["rag"]["ks"])) < 1:
        raise ValueError("run_suite: RAG examples, chunk and head counts must be at least 1, e.g. --rag-n 16 --rag-chunk 8 --rag-ks 5,10,20")
    for key in ("n", "chunk", "calib_examples"):
        if int(hot[key]) < 1:
            raise ValueError(f"run_suite: HotpotQA {key} = {hot[key]} must be at least 1, e.g. --hotpot-n 24")
    for key in ("length_edges", "position_edges"):
        hot[key] = check_edges(key, hot[key])
    return prof


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The ``dynheads`` model arguments this task's profile sets (calibration size, Eq. 2 threshold)."""
    hot = prof["hotpotqa"]
    rag = hot["rag"]
    return {"calib_examples": hot["calib_examples"], "reasoning_threshold": hot["threshold"], "rag_heads": rag["heads"],
            **{f"rag_{name}": rag[name] for name, _, _ in RAG_ARGUMENTS if name in rag}}
