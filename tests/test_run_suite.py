"""run_suite.py on a one-cell grid: every stage writes its tables and figures, and a rerun reuses cells."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--models", "smollm2", "--lengths", "300", "--depths", "0.5", "--runs", "1", "--seed", "5",
        "--calib-lengths", "300", "--calib-depths", "0.5", "--prog-length", "300", "--prog-depths", "0.5"]


@pytest.fixture(scope="module")
def run_suite():
    spec = importlib.util.spec_from_file_location("run_suite", ROOT / "run_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_all_stages_write_tables_figures_and_resume(run_suite, isolated_cache, tmp_path):
    args = ["--all", *TINY, "--ks", "0,5", "--out", str(tmp_path)]
    assert run_suite.main(args) == 0
    model = tmp_path / "smollm2"

    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [row["model"] for row in board] == ["smollm2"]
    row = board[0]
    assert row["samples"] == 1 and row["total_heads"] == 270
    for key in ("acc", "acc_mask_dynamic", "acc_mask_static", "acc_mask_random"):
        assert row[key] in (0.0, 1.0), key
    assert 0.0 <= row["rouge_l"] <= 1.0
    calibration = json.loads((model / "calibration.json").read_text())
    assert row["matched_n"] == calibration["matched_n"] >= 0 and len(calibration["top20"]) == 20
    with open(tmp_path / "leaderboard.csv") as fh:
        assert next(csv.DictReader(fh))["model"] == "smollm2"

    # Table 1 / Table 5 are computed from the unmasked traces of the grid
    stats = json.loads((model / "dynamism.json").read_text())
    cell = json.loads((model / "niah" / "cells" / "L300_D0.5.json").read_text())
    steps = cell["samples"][0]["conditions"]["none"]["heads"]
    assert stats["steps"] == len(steps) > 0
    assert stats["heads_per_step_mean"] == pytest.approx(sum(map(len, steps)) / len(steps))
    assert stats["unique_heads"] == len({tuple(h) for s in steps for h in s})
    for k in (20, 50, 100):
        assert 0.0 <= stats[f"jaccard_static_{k}"] <= 1.0
    table1 = (tmp_path / "table1.md").read_text()
    assert f"| smollm2 | 1 | {len(steps)} |" in table1 and "llama3.1-8b" in table1  # ours, then the paper's
    assert "| smollm2 |" in (tmp_path / "table5.md").read_text()

    # the four conditions of the prompt: the dynamic one gates its own heads, static/random gate N
    conds = cell["samples"][0]["conditions"]
    assert set(conds) == {"none", "dynamic", "static", "random"}
    assert all(g == 0 for g in conds["none"]["gated"])
    assert all(g == len(h) for g, h in zip(conds["dynamic"]["gated"], conds["dynamic"]["heads"]))
    assert all(g == row["matched_n"] for g in conds["static"]["gated"] + conds["random"]["gated"])
    for name in ("niah_masking_acc.png", "niah_masking_rouge_l.png", "progressive_ablation.png"):
        assert _png(model / name), name

    # Figure 3: k = 0 is the unmasked run; k = 5 masks at most 5 heads per step
    prog = json.loads((model / "progressive.json").read_text())
    assert [p["k"] for p in prog] == [0, 5]
    assert prog[0]["static_compensation"] == 0 and prog[0]["acc"] == row["acc"]
    assert 0 < prog[1]["masked_per_step"] <= 5 and not math.isnan(prog[1]["static_compensation"])
    assert "| 5 | 1 |" in (tmp_path / "figure3.md").read_text()

    # a rerun reuses every cell; a changed k list recomputes only the progressive cell
    grid_cell = model / "niah" / "cells" / "L300_D0.5.json"
    prog_cell = model / "progressive" / "cells" / "L300_D0.5.json"
    stamps = grid_cell.stat().st_mtime_ns, prog_cell.stat().st_mtime_ns
    assert run_suite.main(args) == 0
    assert (grid_cell.stat().st_mtime_ns, prog_cell.stat().st_mtime_ns) == stamps
    assert json.loads((tmp_path / "leaderboard.json").read_text()) == board
    assert run_suite.main(["--stages", "progressive", *TINY, "--ks", "0,10", "--out", str(tmp_path)]) == 0
    assert grid_cell.stat().st_mtime_ns == stamps[0] and prog_cell.stat().st_mtime_ns != stamps[1]
    assert [p["k"] for p in json.loads((model / "progressive.json").read_text())] == [0, 10]


def test_unknown_stage_is_refused(run_suite, capsys):
    assert run_suite.main(["--stages", "nope"]) == 2
    assert "unknown stage(s) nope" in capsys.readouterr().err
