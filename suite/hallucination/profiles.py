"""The hallucination study's part of a ``run_suite`` profile (its transition-zone NIAH cells, label threshold,
regularisation, held-out share) and its command-line overrides."""

from __future__ import annotations

import argparse
from typing import Any

from ...tasks.hotpotqa_sf import utils as hotpotqa_task
from ..overrides import override

# f1_threshold: the task's (tasks/hotpotqa_sf/utils.py, where it is justified); c: None = the L2 strength chosen by
# cross-validation on the training rows (--halluc-c fixes it). The HotpotQA answers are Claim 3's (their n follows
# that stage's); the NIAH documents are this study's own, in the model's transition zone: lengths where a measured
# pilot of the embedded SmolLM2 (docs/hallucination.md) failed on 30-70 % of unmasked answers, depths apart from
# every other stage's, seed + 3.
SETTINGS = {"f1_threshold": hotpotqa_task.HALLUCINATION_F1, "c": None, "test_share": 0.34}
# Pilot (2026-12-07, SmolLM2 float32 greedy, depths 0.15 / 0.35 / 0.65 / 0.85, seed 99): unmasked failure rate 0.42 at
# 900 tokens (12 documents), 0.42 at 1100 (12), 0.38 at 1250 (8), 0.33 at 1300 (12), 0.75 at 1500 (8), 0.75 at 1750 (8),
# 1.0 at 2000 (8): the zone is 900-1500 tokens, pooled ~0.48.
TRANSITION = {"lengths": [900, 1100, 1300, 1500], "depths": [0.15, 0.35, 0.65, 0.85]}
# Gemma-3-270M has no transition zone a 2-core quick run can reach. Pilot (2026-12-07, float32 greedy, completion
# prompt, the same depths, seed 99, 8 documents per length): unmasked failure rate 0.12 at 2000 tokens, 0.0 at 3000,
# 0.12 at 4000, 0.12 at 6000 (471 s for the 32). It runs SmolLM2's cells (where it fails ~1 in 32): its NIAH rows
# hold one class and say so; finding its zone (beyond 6K tokens) is work for a GPU (--halluc-lengths).
NIAH = {"quick": {**TRANSITION, "runs": 2},  # 32 documents, ~11 held out: below the declared minimum per class
        "power": {**TRANSITION, "runs": 14},  # 224 documents, ~75 held out: ~36 failing at the pilot's ~0.48
        "paper": {"lengths": [8000, 16000, 24000, 32000], "depths": [0.15, 0.35, 0.65, 0.85], "runs": 12}}
# HotpotQA with its gold paragraphs only (the faithfulness label: is the answer in the context it was given?), decoded
# by this study: train examples to fit, dev examples to test; yes / no answers are left out (their support cannot be
# read off the text), so the rows are fewer than the examples
GOLD = {"quick": {"train_n": 48, "dev_n": 24, "chunk": 12}, "power": {"train_n": 120, "dev_n": 200, "chunk": 20},
        "paper": {"train_n": 601, "dev_n": 1000, "chunk": 50}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--halluc-f1-threshold", type=float, default=None,
                   help=f"HotpotQA answers with F1 below this are hallucinated (default {SETTINGS['f1_threshold']})")
    p.add_argument("--halluc-c", type=float, default=None,
                   help="fix the inverse L2 strength of the detectors' logistic regressions (default: chosen by "
                        "cross-validated AUROC on the training rows)")
    p.add_argument("--halluc-lengths", default=None, help="NIAH lengths of the study's transition-zone cells, e.g. 1500,2000")
    p.add_argument("--halluc-depths", default=None, help="NIAH depths of those cells, e.g. 0.15,0.85")
    p.add_argument("--halluc-runs", type=int, default=None, help="NIAH documents per transition-zone cell")
    p.add_argument("--halluc-gold-n", type=int, default=None,
                   help="HotpotQA dev examples answered from their gold paragraphs only (the faithfulness label)")
    p.add_argument("--halluc-gold-train-n", type=int, default=None,
                   help="HotpotQA train examples answered from their gold paragraphs only (to fit the detectors)")
    p.add_argument("--halluc-test-share", type=float, default=None,
                   help=f"share of NIAH cells held out to test the detectors (default {SETTINGS['test_share']})")


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = {**SETTINGS, "niah": dict(NIAH.get(name, NIAH["quick"])), "gold": dict(GOLD.get(name, GOLD["quick"]))}
    override(settings["gold"], "dev_n", getattr(args, "halluc_gold_n", None))
    override(settings["gold"], "train_n", getattr(args, "halluc_gold_train_n", None))
    override(settings["niah"], "lengths", getattr(args, "halluc_lengths", None), int)
    override(settings["niah"], "depths", getattr(args, "halluc_depths", None), float)
    override(settings["niah"], "runs", getattr(args, "halluc_runs", None))
    override(settings, "f1_threshold", getattr(args, "halluc_f1_threshold", None))
    override(settings, "c", getattr(args, "halluc_c", None))
    override(settings, "test_share", getattr(args, "halluc_test_share", None))
    if (not 0 < settings["f1_threshold"] <= 1 or (settings["c"] is not None and settings["c"] <= 0)
            or not 0 < settings["test_share"] < 1 or settings["niah"]["runs"] < 1 or min(settings["gold"]["dev_n"], settings["gold"]["train_n"]) < 0):
        raise ValueError("run_suite: --halluc-f1-threshold must lie in (0, 1], --halluc-c above 0, --halluc-test-share "
                         "in (0, 1), --halluc-runs >= 1 and the --halluc-gold-*n >= 0")
    return {"hallucination": settings}


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """No model argument: the detectors read what every traced cell records (hidden=true cells)."""
    return {}
