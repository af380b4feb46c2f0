"""The HotpotQA part of a ``run_suite`` profile (examples, chunks, Eq. 2 threshold, bins, probes) and its overrides
(Section 5's RAG part: :mod:`dynheads.suite.rag.profiles`)."""

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
                           "probes": {"train_n": 72, "chunk": 24, **PROBE_FIT, "hidden_sizes": [512, 256]}}},
    # ~90 min on 2 CPU cores (docs/results.md, "Power"): 200 dev examples for the Figure 6 ablation (the quick run's
    # paired F1 differences have SD ~0.3 per example, so the 95 % interval's half-width falls to ~0.04)
    "power": {"hotpotqa": {"split": "dev", "source": None, "n": 200, "chunk": 20, "calib_examples": 24, "threshold": 0.2,
                           "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 20, "ks": [0, 1, 2, 5, 10]},
                           "probes": {"train_n": 120, "chunk": 24, **PROBE_FIT, "hidden_sizes": [512, 256]}}},
    "paper": {"hotpotqa": {"split": "dev", "source": None, "n": 1000, "chunk": 50, "calib_examples": 200, "threshold": 0.5,
                           "thresholds": [0.2, 0.5], "length_edges": [1000, 1250, 1500, 1750, 2000],
                           "position_edges": [0.2, 0.4, 0.6, 0.8], "progressive": {"n": 200, "ks": [0, 5, 10, 15, 20]},
                           "probes": {"train_n": 601, "chunk": 50, **PROBE_FIT,
                                      "hidden_sizes": [8192, 4096, 4096]}}},
}
# Gemma-3-270M is ~2-3x slower per sample on 2 cores (262K-token vocabulary): half the quick profile's examples.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {"hotpotqa": {"split": "dev", "source": None, "n": 12, "chunk": 6, "calib_examples": 6, "threshold": 0.2,
                                 "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 4, "ks": [0, 1, 2, 5, 10]},
                                 "probes": {"train_n": 36, "chunk": 12, **PROBE_FIT, "hidden_sizes": [512, 256]}}},
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
    apply_arguments(hot["probes"], args)
    if args.hotpot_source:
        from ...tasks.hotpotqa_sf.utils import parse_metadata

        hot["source"] = parse_metadata({"source": args.hotpot_source}).source  # a missing file fails here, in one line
    for key in ("n", "chunk", "calib_examples"):
        if int(hot[key]) < 1:
            raise ValueError(f"run_suite: HotpotQA {key} = {hot[key]} must be at least 1, e.g. --hotpot-n 24")
    for key in ("length_edges", "position_edges"):
        hot[key] = check_edges(key, hot[key])
    return prof


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The ``dynheads`` model arguments this task's profile sets (calibration size, Eq. 2 threshold)."""
    hot = prof["hotpotqa"]
    return {"calib_examples": hot["calib_examples"], "reasoning_threshold": hot["threshold"]}
