"""The KV-compression part of a ``run_suite`` profile (strategies, budgets, the streaming view, NIAH cells,
HotpotQA examples, the offset-1 probe) and its command-line overrides."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ...models.engine.kv import BUDGETED, DEFAULT_SINK, DEFAULT_WINDOW, KV_STRATEGIES
from ...spec import current_kv_name
from ..overrides import override
from ..probing import PROBE_FIT, apply_arguments

# SmolLM2 has ~4 Eq. 1 heads per step of its 270 query heads (90 KV heads): 0.05 keeps 5 of 90 KV heads whole (about
# the retrieval heads of a step), 0.15 keeps 14 and 0.3 keeps 27; in a first run (12 NIAH documents) every strategy lost
# the exact UUID at 0.05 and 0.15, so the quick profile spends its one budget at 0.3. Window 64 + 4 sinks: the needle of a 600-900
# token NIAH document lies outside every streaming head's view (DuoAttention keeps 64 sinks + 256 recent tokens for
# 4K-1M contexts; the window here is scaled to our contexts), and SmolLM2 still retrieves at these lengths with the
# full cache. NIAH cells use lengths and depths that the Claim 3 probe cells do not (600 / 900, depths 0.1 / 0.4 /
# 0.7), so the offset-1 probe is tested on unseen cells.
PROBE = {"seed": PROBE_FIT["seed"], "max_epochs": PROBE_FIT["max_epochs"], "hidden_sizes": [512, 256]}
# the strategies the suite runs by default: every one of models/engine/kv.py, so that the controls that isolate a
# per-step choice (probe_mean, frozen; redrawn for random) run at every budget beside what they control
SUITE_STRATEGIES = KV_STRATEGIES
PROFILES: dict[str, dict[str, Any]] = {
    # one budget on 12 NIAH documents (the declared minimum of 10 for a verdict, suite/claims.yaml), no HotpotQA (its
    # 1-2K-token prefills dominate): ~2 min; the power profile runs HotpotQA
    "quick": {"sink": DEFAULT_SINK, "window": DEFAULT_WINDOW, "granularity": "kv", "budgets": [0.3],
              "strategies": list(SUITE_STRATEGIES), "niah": {"lengths": [600, 900], "depths": [0.1, 0.4, 0.7], "runs": 2},
              "hotpotqa": {"n": 0, "chunk": 4}, "probe": PROBE},
    # the decisive run, declared before it is run (suite/claims.yaml, KV-*): three budgets, 48 NIAH documents over 4
    # lengths x 4 depths (none a probe-training cell) and 24 dev examples
    "power": {"sink": DEFAULT_SINK, "window": DEFAULT_WINDOW, "granularity": "kv", "budgets": [0.05, 0.15, 0.3],
              "strategies": list(SUITE_STRATEGIES),
              "niah": {"lengths": [600, 900, 1200, 1500], "depths": [0.1, 0.4, 0.6, 0.9], "runs": 3},
              "hotpotqa": {"n": 24, "chunk": 12}, "probe": PROBE},
    # DuoAttention's streaming view (64 sinks + 256 recent) on the paper's NIAH lengths, for GPUs
    "paper": {"sink": 64, "window": 256, "granularity": "kv", "budgets": [0.05, 0.1, 0.25, 0.5],
              "strategies": list(SUITE_STRATEGIES), "niah": {"lengths": [3000, 6000, 12000], "depths": [0.1, 0.4, 0.7], "runs": 5},
              "hotpotqa": {"n": 500, "chunk": 50}, "probe": {**PROBE, "hidden_sizes": [8192, 4096, 4096]}},
}

# Gemma-3-270M runs the same KV quick profile (its completion prompt stops after the UUID)
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kv-strategies", default=None, help=f"KV strategies of the kv stage, e.g. full,static,dynamic (default: all of {', '.join(SUITE_STRATEGIES)})")
    p.add_argument("--kv-budgets", default=None, help="budgets of the kv stage: shares of the units kept whole, e.g. 0.05,0.15,0.3")
    p.add_argument("--kv-sink", type=int, default=None, help=f"streaming heads' sink positions (default {DEFAULT_SINK})")
    p.add_argument("--kv-window", type=int, default=None, help=f"streaming heads' recent window (default {DEFAULT_WINDOW})")
    p.add_argument("--kv-granularity", choices=("kv", "head"), default=None,
                   help="select whole KV groups (kv, as DuoAttention; default) or query heads (head)")
    p.add_argument("--kv-lengths", default=None, help="NIAH lengths of the kv stage, e.g. 600,900")
    p.add_argument("--kv-depths", default=None, help="NIAH depths of the kv stage, e.g. 0.1,0.4,0.7")
    p.add_argument("--kv-runs", type=int, default=None, help="NIAH documents per cell of the kv stage")
    p.add_argument("--kv-hotpot-n", type=int, default=None, help="HotpotQA dev examples of the kv stage (0: none; quick: 0, power: 24)")


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    kv = json.loads(json.dumps(PROFILES[name]))
    if name == "quick":
        kv.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    override(kv, "strategies", getattr(args, "kv_strategies", None), str)
    override(kv, "budgets", getattr(args, "kv_budgets", None), float)
    override(kv, "sink", getattr(args, "kv_sink", None))
    override(kv, "window", getattr(args, "kv_window", None))
    override(kv, "granularity", getattr(args, "kv_granularity", None))
    override(kv["niah"], "lengths", getattr(args, "kv_lengths", None), int)
    override(kv["niah"], "depths", getattr(args, "kv_depths", None), float)
    override(kv["niah"], "runs", getattr(args, "kv_runs", None))
    override(kv["hotpotqa"], "n", getattr(args, "kv_hotpot_n", None))
    apply_arguments(kv["probe"], args)  # --probe-epochs / --probe-hidden-sizes size this probe too
    kv["strategies"] = [current_kv_name(s) for s in kv["strategies"]]
    unknown = [s for s in kv["strategies"] if s not in KV_STRATEGIES]
    if unknown:
        raise ValueError(f"run_suite: --kv-strategies {unknown}: choose among {', '.join(KV_STRATEGIES)}")
    if any(not 0 < b <= 1 for b in kv["budgets"]) or (set(kv["strategies"]) & set(BUDGETED) and not kv["budgets"]):
        raise ValueError("run_suite: --kv-budgets must be shares in (0, 1], e.g. 0.05,0.15,0.3")
    if kv["sink"] < 0 or kv["window"] < 1 or kv["niah"]["runs"] < 1 or kv["hotpotqa"]["n"] < 0:
        raise ValueError("run_suite: --kv-sink and --kv-hotpot-n (0: no HotpotQA) must be >= 0, --kv-window and --kv-runs >= 1")
    return {"kv": kv}


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The streaming view and the selection unit are fixed when the model loads."""
    kv = prof["kv"]
    return {"kv_sink": kv["sink"], "kv_window": kv["window"], "kv_granularity": kv["granularity"]}
