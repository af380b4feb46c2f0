"""A cached cell is reused only when nothing that changes its output changed, and recomputed exactly then.

The cells are those the suite's stages run (a NIAH grid cell and progressive cell, a HotpotQA chunk and
progressive chunk), with the tasks' real cell settings; lm-eval and the model are replaced by a fake
that records which cells it was asked to compute, so this runs in well under a second.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dynheads import traces
from dynheads.models.engine.scores import ReasoningScore
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.models.harness.settings import ModelSettings
from dynheads.suite.hotpotqa import stages as hotpotqa
from dynheads.suite.niah import stages as niah
from dynheads.suite.cells import CellRunner
from dynheads.suite.summaries import CONDITIONS

RANKING = [(l, h) for l in range(4) for h in range(3)]


class FakeLM:
    """What CellRunner uses of DynHeadsLM; ``identity`` is the real method on a fake model config."""

    identity = DynHeadsLM.identity

    def __init__(self) -> None:
        self.pretrained_name, self.revision = "tiny", "main"
        self.model = SimpleNamespace(config=SimpleNamespace(), dtype=torch.float32)
        self.settings = ModelSettings(reasoning=ReasoningScore(threshold=0.2))
        self.rankings = {"copy_paste": list(RANKING), "reasoning": list(reversed(RANKING))}
        self.mask, self.trace_dir = None, None

    def static(self, kind: str) -> SimpleNamespace:
        return SimpleNamespace(heads=self.rankings[kind])

    def configure(self, mask: str, heads, trace_dir: Path, hidden: bool = False) -> None:
        self.mask, self.trace_dir = mask, Path(trace_dir)


def fake_task(task):
    return dataclasses.replace(task, score=lambda response, doc: {task.check_metric: 1.0}, describe=lambda doc: {})


class Harness:
    """Runs the four cells; ``computed`` lists the cells whose evaluation ran."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.lm, self.seed, self.computed = folder, FakeLM(), 0, []
        self.grid_meta = {"lengths": [300], "depths": [0.5], "runs": 1}

    def evaluate(self, lm, task, metadata, limit):
        self.computed.append(self.current)
        lm.trace_dir.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"doc_id": 0, "condition": m, "response": "x", "steps": []}) for m in lm.mask.split("+")]
        (lm.trace_dir / f"{task.name}.jsonl").write_text("\n".join(lines) + "\n")
        return [{"doc_id": 0, "doc": {}, task.check_metric: 1.0}]

    def run_all(self) -> list[str]:
        self.computed = []
        cells = [("grid", niah, self.grid_meta, list(CONDITIONS), 2),
                 ("niah_progressive", niah, {"lengths": [300], "depths": [0.5], "runs": 1}, ["none", "dynamic:1"], None),
                 ("chunk", hotpotqa, {"split": "dev", "source": None, "start": 0, "n": 1}, list(CONDITIONS), 3),
                 ("hotpot_progressive", hotpotqa, {"split": "dev", "source": None, "start": 0, "n": 1}, ["none", "dynamic:2"], None)]
        for name, module, meta, conditions, heads in cells:
            self.current = name
            runner = CellRunner(self.lm, "tiny", self.folder / name, self.seed, None, evaluate=self.evaluate)
            runner.run("cell", fake_task(module.CELLS), meta, conditions, heads)
        return self.computed


ALL = ["grid", "niah_progressive", "chunk", "hotpot_progressive"]


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    assert h.run_all() == ALL  # cold: every cell computed
    assert h.run_all() == []  # nothing changed: every cell reused
    return h


def _swap_top(ranking: list, n: int) -> list:
    """The same heads with the N-th and (N+1)-th swapped: the top-N set changes, N does not."""
    ranking = list(ranking)
    ranking[n - 1], ranking[n] = ranking[n], ranking[n - 1]
    return ranking


@pytest.mark.parametrize("change, expected", [
    ("niah_static_top_n", ["grid"]),
    ("niah_static_below_n", []),
    ("hotpotqa_static_top_n", ["chunk"]),
    ("dtype", ALL),
    ("revision", ALL),
    ("hub_commit", ALL),
    ("model", ALL),
    ("trace_format", ALL),
    ("eq2_threshold", ["chunk", "hotpot_progressive"]),
    ("eq2_window", ["chunk", "hotpot_progressive"]),
    ("grid_metadata", ["grid"]),
    ("seed", ["grid", "niah_progressive", "chunk"]),  # NIAH documents are seeded; random heads are drawn from it
])
def test_a_change_recomputes_exactly_the_cells_it_affects(harness, monkeypatch, change, expected):
    lm = harness.lm
    if change == "niah_static_top_n":
        lm.rankings["copy_paste"] = _swap_top(lm.rankings["copy_paste"], 2)
    elif change == "niah_static_below_n":
        lm.rankings["copy_paste"] = lm.rankings["copy_paste"][:2] + list(reversed(lm.rankings["copy_paste"][2:]))
    elif change == "hotpotqa_static_top_n":
        lm.rankings["reasoning"] = _swap_top(lm.rankings["reasoning"], 3)
    elif change == "dtype":
        lm.model.dtype = torch.bfloat16
    elif change == "revision":
        lm.revision = "v2"
    elif change == "hub_commit":
        lm.model.config._commit_hash = "0123abcd"
    elif change == "model":
        lm.pretrained_name = "other"
    elif change == "trace_format":
        monkeypatch.setattr(traces, "TRACE_FORMAT", traces.TRACE_FORMAT + 1)
    elif change == "eq2_threshold":
        lm.settings = dataclasses.replace(lm.settings, reasoning=dataclasses.replace(lm.settings.reasoning, threshold=0.3))
    elif change == "eq2_window":
        lm.settings = dataclasses.replace(lm.settings, reasoning=dataclasses.replace(lm.settings.reasoning, local_window=16))
    elif change == "grid_metadata":
        harness.grid_meta = {**harness.grid_meta, "runs": 2}
    elif change == "seed":
        harness.seed = 1
    assert harness.run_all() == expected
    assert harness.run_all() == []  # and the recomputed cells are reused from then on


def test_a_cell_records_what_it_was_computed_with(harness):
    grid = json.loads((harness.folder / "grid" / "cell.json").read_text())["settings"]
    assert grid["model"] == "tiny" and grid["revision"] == "main" and grid["dtype"] == "float32"
    assert grid["trace_format"] == traces.TRACE_FORMAT and grid["seed"] == 0
    assert grid["static_heads"] == [list(h) for h in RANKING[:2]] and "reasoning" not in grid
    chunk = json.loads((harness.folder / "chunk" / "cell.json").read_text())["settings"]
    assert chunk["reasoning"] == {"sink_tokens": 4, "local_window": 32, "threshold": 0.2}
    assert chunk["static_heads"] == [list(h) for h in list(reversed(RANKING))[:3]]
    progressive = json.loads((harness.folder / "hotpot_progressive" / "cell.json").read_text())["settings"]
    assert "static_heads" not in progressive and "seed" not in progressive


def test_a_half_written_trace_restarts_the_cell(harness):
    """A cell file without matching settings (an interrupted run left only traces) is recomputed from scratch."""
    (harness.folder / "grid" / "cell.json").unlink()
    stale = harness.folder / "grid" / "cell.traces" / "niah_uuid.jsonl"
    stale.write_text(stale.read_text() + '{"doc_id": 0, "condition": "none", "respo')
    assert harness.run_all() == ["grid"]
    assert all(json.loads(line) for line in stale.read_text().splitlines())
