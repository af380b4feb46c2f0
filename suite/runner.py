"""Run resolved stages for one model, with per-stage timings, and rebuild the tables from the result files."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from ..util import write_atomic
from . import claims, tables
from .model import ModelSuite
from .registry import Stage
from .shards import CellsMissing, Shard


def run_model(model_name: str, profile: dict[str, Any], stages: Mapping[str, Stage], out: Path, seed: int,
              limit: int | None, model_args: dict[str, Any], progress: Callable, shard: Shard = Shard()) -> list[str]:
    """``stages`` (already in run order, prerequisites first) for one model; ``timings.json`` per stage.

    Sharded (:mod:`dynheads.suite.shards`): a stage whose summary needs another shard's cells stops there,
    after computing its own; returns those stages, each with what it waits for (``[]`` when all were built).
    """
    t0 = time.time()
    suite = ModelSuite(model_name, profile, Path(out), seed, limit, progress, model_args, shard)
    seconds = {"load": time.time() - t0}
    timings = suite.dir / "timings.json"
    earlier = json.loads(timings.read_text()) if timings.is_file() else {}
    cached: list[str] = []
    waiting: list[str] = []
    for name, stage in stages.items():
        if stage.run is None:
            continue
        began, work = time.time(), suite.computed
        try:
            stage.run(suite)
        except CellsMissing as missing:
            waiting.append(f"{name} (waits for {missing})")
            continue
        seconds[name] = time.time() - began
        if suite.computed == work and name in earlier:  # all cached: keep the seconds of the run that computed it
            seconds[name] = earlier[name]
            cached.append(name)
    if cached and len(cached) == len(seconds) - 1 and "load" in earlier:
        # nothing was computed: the load read a warm cache, so it is not the load time of the run the stages record
        seconds["load"] = earlier["load"]
    # wall-clock seconds per stage of the run that computed it (a fully cached stage keeps the earlier value)
    write_atomic(timings, json.dumps({**earlier, **{k: round(v, 1) for k, v in seconds.items()}}, indent=1))
    print(f"run_suite: {model_name} done in {time.time() - t0:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" + (" earlier, cached now" if k in cached else "") for k, v in seconds.items()) + ")")
    if waiting:
        print(f"run_suite: shard {shard}: {model_name}: {len(set(suite.missing))} cells of other shards are not written yet; "
              f"not summarised: {'; '.join(waiting)}")
    return waiting


def write_tables(out: Path, tasks: Sequence[Any]) -> list[dict[str, Any]]:
    """The leaderboard and every task's tables, rebuilt from the result files under ``out``."""
    rows = tables.collect_rows(out, {k: v for task in tasks for k, v in task.RESULT_FILES.items()})
    board = tables.write_leaderboard(out, rows, [t.leaderboard_columns for t in tasks], [t.leaderboard_section for t in tasks])
    for task in tasks:
        for name, text in task.tables(rows).items():
            write_atomic(out / name, text)
    claims.write(out, rows)
    print(board)
    for task in tasks:
        if text := task.console(rows):
            print(text)
    return rows
