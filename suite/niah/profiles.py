"""The NIAH part of a ``run_suite`` profile: grid sizes per profile and model, and their command-line overrides."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..probing import PROBE_FIT, apply_arguments
from ..overrides import override

# retrieves up to ~1.5K tokens and fails near 2K, so the length axis spans both regimes.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        # 2 runs per cell: 18 documents, above the 10 that suite/claims.yaml declares as the minimum for a verdict
        "grid": {"lengths": [500, 1000, 2000], "depths": [0.0, 0.5, 1.0], "runs": 2},
        "calibration": {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1},
        # the paper's k = 0, 5, ..., 20 plus 1 and 2: this model has ~4 retrieval heads per step
        "progressive": {"length": 1000, "depths": [0.0, 0.5, 1.0], "runs": 1, "ks": [0, 1, 2, 5, 10, 15, 20]},
        # 45 unmasked generations of ~37 steps (>= 1,500 steps) at short contexts (fast prefill); an MLP sized for 2 cores
        "probes": {"lengths": [500, 750, 1000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 3, **PROBE_FIT,
                   "hidden_sizes": [512, 256]},
    },
    # Sized for ~90 min of SmolLM2 on 2 CPU cores (README, "Power"): 3 runs per grid cell over 5 depths, so the paired
    # Claim 2 differences rest on 45 documents instead of 9, and 60 probe generations over 20 cells, so the Claim 3
    # test split holds 4+ unseen cells instead of 3.
    "power": {
        "grid": {"lengths": [500, 1000, 2000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 3},
        "calibration": {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1},
        "progressive": {"length": 1000, "depths": [0.0, 0.5, 1.0], "runs": 2, "ks": [0, 1, 2, 5, 10, 15, 20]},
        "probes": {"lengths": [500, 750, 1000, 1250], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 3, **PROBE_FIT,
                   "hidden_sizes": [512, 256]},
    },
    # The paper's settings (Appendix A.1: 5 runs per cell; Figure 3: 20 runs at 5000 tokens) for GPUs.
    "paper": {
        "grid": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5},
        "calibration": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 1},
        "progressive": {"length": 5000, "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 4, "ks": [0, 5, 10, 15, 20]},
        "probes": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5,
                   **PROBE_FIT, "hidden_sizes": [8192, 4096, 4096]},
    },
}
# Gemma-3-270M runs the same NIAH quick profile: with its completion prompt (issue 36) it stops after the UUID, and the
# claims compare the two models at the same n.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lengths", default=None, help="override the grid's lengths, e.g. 500,1000")
    p.add_argument("--depths", default=None, help="override the grid's depths, e.g. 0,0.5,1")
    p.add_argument("--runs", type=int, default=None, help="override runs per cell of the grid")
    p.add_argument("--calib-lengths", default=None, help="override the calibration lengths, e.g. 500,1000")
    p.add_argument("--calib-depths", default=None, help="override the calibration depths, e.g. 0,1")
    p.add_argument("--prog-length", type=int, default=None, help="override the progressive ablation's length")
    p.add_argument("--prog-depths", default=None, help="override the progressive ablation's depths, e.g. 0.5")
    p.add_argument("--ks", default=None, help="override the progressive ablation's k values, e.g. 0,5,10")
    p.add_argument("--probe-lengths", default=None, help="override the probe generations' lengths, e.g. 500,1000")
    p.add_argument("--probe-depths", default=None, help="override the probe generations' depths, e.g. 0,0.5,1")
    p.add_argument("--probe-runs", type=int, default=None, help="override runs per cell of the probe generations")


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """This task's part of profile ``name`` for ``model_name``, with the command line's overrides."""
    prof = json.loads(json.dumps(PROFILES[name]))
    if name == "quick":
        prof.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    grid, cal, prog = prof["grid"], prof["calibration"], prof["progressive"]
    override(grid, "lengths", args.lengths, int)
    override(grid, "depths", args.depths, float)
    override(cal, "lengths", args.calib_lengths, int)
    override(cal, "depths", args.calib_depths, float)
    override(prog, "depths", args.prog_depths, float)
    override(prog, "ks", args.ks, int)
    override(grid, "runs", args.runs)
    override(prog, "length", args.prog_length)
    probe = prof["probes"]
    override(probe, "lengths", args.probe_lengths, int)
    override(probe, "depths", args.probe_depths, float)
    override(probe, "runs", args.probe_runs)
    apply_arguments(probe, args)
    return prof


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The ``dynheads`` model arguments this task's profile sets (the calibration grid)."""
    cal = prof["calibration"]
    return {"calib_lengths": "+".join(map(str, cal["lengths"])), "calib_depths": "+".join(map(str, cal["depths"])),
            "calib_runs": cal["runs"]}
