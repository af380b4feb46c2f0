"""run_suite.py on a one-cell grid: tables and heatmaps are written, and a rerun reuses the finished cell."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_suite():
    spec = importlib.util.spec_from_file_location("run_suite", ROOT / "run_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_cell_suite_writes_tables_and_resumes(run_suite, tmp_path):
    args = ["--stages", "niah", "--models", "smollm2", "--lengths", "300", "--depths", "0.5", "--runs", "1",
            "--seed", "5", "--out", str(tmp_path)]
    assert run_suite.main(args) == 0
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert [row["model"] for row in board] == ["smollm2"]
    row = board[0]
    assert row["samples"] == 1 and row["acc"] in (0.0, 1.0) and 0.0 <= row["rouge_l"] <= 1.0
    assert row["steps"] > 0 and row["heads_per_step_mean"] is not None
    with open(tmp_path / "leaderboard.csv") as fh:
        assert next(csv.DictReader(fh))["model"] == "smollm2"
    assert "| smollm2 | 1 |" in (tmp_path / "leaderboard.md").read_text()
    for name in ("niah_acc_heatmap.png", "niah_rouge_l_heatmap.png"):
        assert (tmp_path / "smollm2" / name).read_bytes()[:4] == b"\x89PNG"
    cell = tmp_path / "smollm2" / "niah" / "cells" / "L300_D0.5.json"
    first = cell.stat().st_mtime_ns
    assert run_suite.main(args) == 0
    assert cell.stat().st_mtime_ns == first  # reused, not recomputed
    assert json.loads((tmp_path / "leaderboard.json").read_text()) == board


def test_unknown_stage_is_refused(run_suite, capsys):
    assert run_suite.main(["--stages", "nope"]) == 2
    assert "unknown stage(s) nope" in capsys.readouterr().err
