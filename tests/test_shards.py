"""Sharded suite runs: every cell belongs to one shard, a shard computes only its own, and two processes sharing
the results folder give tables byte-identical to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dynheads.suite.cells import CellRunner
from dynheads.suite.niah import stages as niah
from dynheads.suite.shards import CellOwners, CellsMissing, Missing, Shard, parse_shard

ROOT = Path(__file__).resolve().parent.parent


def test_every_cell_belongs_to_exactly_one_shard_in_equal_shares():
    keys = [f"L{n}_D{d}" for n in (500, 1000, 2000, 4000) for d in (0, 0.25, 0.5, 0.75, 1)]
    for count in (1, 2, 3, 5):
        plans = [CellOwners(Shard(i, count)) for i in range(count)]
        owners = [[i for i, plan in enumerate(plans) if plan.owns("niah", k)] for k in keys]
        assert all(len(o) == 1 for o in owners)
        shares = [sum(o[0] == i for o in owners) for i in range(count)]
        assert max(shares) - min(shares) <= 1  # round robin over the stage's cells
    plan = CellOwners(Shard(1, 2))
    first = [plan.owns("niah", k) for k in keys]
    assert [plan.owns("niah", k) for k in keys] == first  # asked again: same owner
    assert [plan.owns("probes", k) for k in keys] == first  # each stage counts its own cells


def test_shard_from_flag_launcher_or_slurm():
    assert parse_shard("1/4", {}) == Shard(1, 4) and parse_shard(None, {}) == Shard(0, 1)
    assert parse_shard(None, {"RANK": "2", "WORLD_SIZE": "3"}) == Shard(2, 3)
    assert parse_shard(None, {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}) == Shard(2, 4)
    assert parse_shard("0/2", {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(0, 2)  # the flag wins
    assert Shard(1, 2).builds_tables and not Shard(0, 2).builds_tables and Shard().builds_tables
    for bad in ("2/2", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match="run_suite: (shard|--shard)"):
            parse_shard(bad, {})


def test_a_missing_cell_stops_only_the_summary():
    cell = Missing("niah/L500_D0")
    cells = [cell, {"samples": []}]  # a stage can still list it beside its own cells
    assert len(cells) == 2
    with pytest.raises(CellsMissing, match="niah/L500_D0"):
        cell["samples"]
    with pytest.raises(CellsMissing):
        list(cell)


class _Counting:
    """A CellRunner stand-in for the lm-eval model: records which cells were computed."""

    def __init__(self):
        self.computed = []

    def identity(self):
        return {"model": "tiny"}

    def configure(self, **kwargs):
        self.trace_dir = Path(kwargs["trace_dir"])


def _evaluate(lm, task, metadata, limit):
    lm.trace_dir.mkdir(parents=True, exist_ok=True)
    (lm.trace_dir / f"{task.name}.jsonl").write_text(json.dumps({"doc_id": 0, "condition": "none", "response": "x", "steps": []}) + "\n")
    lm.computed.append(metadata["lengths"][0])
    return [{"doc_id": 0, "doc": {}, task.check_metric: 1.0}]


def test_runner_computes_its_own_cells_and_the_last_shard_reads_the_others(tmp_path):
    import dataclasses

    task = dataclasses.replace(niah.CELLS, score=lambda r, d: {"acc": 1.0}, describe=lambda d: {})
    lengths = list(range(100, 1100, 100))
    folder = tmp_path / "niah" / "cells"

    def run(shard: Shard) -> tuple[list, list, list]:
        lm, missing = _Counting(), []
        runner = CellRunner(lm, "tiny", folder, 0, None, evaluate=_evaluate, owners=CellOwners(shard), on_missing=missing.append)
        cells = [runner.run(niah.cell_key(n, 0), task, {"lengths": [n]}, ["none"], None) for n in lengths]
        return lm.computed, cells, missing

    first, cells, missing = run(Shard(0, 2))
    assert first and len(first) < len(lengths)
    assert [isinstance(c, Missing) for c in cells] == [n not in first for n in lengths]
    assert len(missing) == len(lengths) - len(first)
    second, cells, missing = run(Shard(1, 2))  # the last shard: computes its own, reads shard 0's
    assert sorted(first + second) == lengths and not missing and not any(isinstance(c, Missing) for c in cells)
    again, _, _ = run(Shard())
    assert again == []  # an unsharded run finds every cell


def _run(args: list[str]) -> subprocess.Popen:
    """run_suite.py in its own process, pinned to one thread: two shards share the 2 cores without oversubscribing
    them, and every process computes with the same thread count (a float reduction's order depends on it)."""
    pinned = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "run_suite.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=pinned)


STAGES = "niah,dynamism,hotpotqa,hotpotqa_dynamism"
PER_MODEL = ("niah_masking.json", "dynamism.json", "hotpotqa_masking.json", "hotpotqa_dynamism.json",
             "niah_masking.md", "hotpotqa_masking.md")


@pytest.mark.slow
def test_two_shard_processes_give_the_results_of_one(suite_run, tmp_path):
    """Two processes share a results folder, each computing its share of the session suite's cells (one NIAH cell,
    two HotpotQA chunks); once both are done the last shard writes the results the one-process ``--all`` wrote."""
    from conftest import TINY

    one = suite_run[0]
    two = tmp_path / "two"
    base = ["--stages", STAGES, *TINY, "--out", str(two)]
    shards = [_run([*base, "--shard", f"{i}/2"]) for i in range(2)]
    logs = [p.communicate()[0] for p in shards]
    assert [p.returncode for p in shards] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    stages = ("niah", "hotpotqa")
    cells = sorted(c for stage in stages for c in (two / "smollm2" / stage / "cells").glob("*.json"))
    assert len(cells) == 1 + 2 and sorted(c.name for c in cells) == sorted(
        c.name for stage in stages for c in (one / "smollm2" / stage / "cells").glob("*.json"))
    stamps = [c.stat().st_mtime_ns for c in cells]
    last = _run([*base, "--shard", "1/2"])  # the last shard again, once both are done
    log = last.communicate()[0]
    assert last.returncode == 0 and "not written yet" not in log, log[-2000:]
    assert [c.stat().st_mtime_ns for c in cells] == stamps  # it computed nothing: every cell was there
    for name in PER_MODEL:
        assert (two / "smollm2" / name).read_bytes() == (one / "smollm2" / name).read_bytes(), name
    assert (two / "table1.md").read_bytes() == (one / "table1.md").read_bytes()
