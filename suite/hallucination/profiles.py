"""The hallucination study's part of a ``run_suite`` profile (label threshold, regularisation, held-out share)
and its command-line overrides. The study decodes nothing of its own, so no profile changes its n."""

from __future__ import annotations

import argparse
from typing import Any

from ...tasks.hotpotqa_sf import utils as hotpotqa_task
from ..overrides import override

# Every profile: the study decodes nothing of its own (it reads the NIAH grid and probe cells, and the HotpotQA
# probe and evaluation answers), so its n follows theirs. f1_threshold: the task's (tasks/hotpotqa_sf/utils.py, where
# it is justified); c: scikit-learn's default strength.
SETTINGS = {"f1_threshold": hotpotqa_task.HALLUCINATION_F1, "c": 1.0, "test_share": 0.34}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--halluc-f1-threshold", type=float, default=None,
                   help=f"HotpotQA answers with F1 below this are hallucinated (default {SETTINGS['f1_threshold']})")
    p.add_argument("--halluc-c", type=float, default=None,
                   help=f"inverse L2 strength of the detectors' logistic regressions (default {SETTINGS['c']})")
    p.add_argument("--halluc-test-share", type=float, default=None,
                   help=f"share of NIAH cells held out to test the detectors (default {SETTINGS['test_share']})")


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(SETTINGS)
    override(settings, "f1_threshold", getattr(args, "halluc_f1_threshold", None))
    override(settings, "c", getattr(args, "halluc_c", None))
    override(settings, "test_share", getattr(args, "halluc_test_share", None))
    if not 0 < settings["f1_threshold"] <= 1 or settings["c"] <= 0 or not 0 < settings["test_share"] < 1:
        raise ValueError("run_suite: --halluc-f1-threshold must lie in (0, 1], --halluc-c above 0 and --halluc-test-share "
                         "in (0, 1)")
    return {"hallucination": settings}


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """No model argument: the detectors read what every trace records."""
    return {}
