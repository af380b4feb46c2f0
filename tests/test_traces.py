"""The trace format module: one file per lm-eval rank, read back together; a restarted cell removes them all."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dynheads import traces
from dynheads.models.harness.lm import DynHeadsLM


def _line(doc_id: int, mask: str = "none") -> dict:
    return {"task": "t", "doc_id": doc_id, "condition": mask, "response": "", "input_ids": [], "steps": []}


def test_each_rank_writes_its_own_file_and_read_task_reads_them_all(tmp_path):
    lm = SimpleNamespace(settings=SimpleNamespace(trace_dir=tmp_path), rank=0)
    assert DynHeadsLM.trace_file(lm, "t") == tmp_path / "t.jsonl"
    lm.rank = 2
    assert DynHeadsLM.trace_file(lm, "t") == tmp_path / "t.rank2.jsonl"
    assert DynHeadsLM.trace_file(SimpleNamespace(settings=SimpleNamespace(trace_dir=None), rank=0), "t") is None
    for rank, docs in ((0, [0, 2]), (1, [1, 3]), (10, [5])):
        traces.append_lines(traces.trace_path(tmp_path, "t", rank), [_line(d) for d in docs])
    traces.append_lines(tmp_path / "other.jsonl", [_line(9)])
    assert [r["doc_id"] for r in traces.read_task(tmp_path, "t")] == [0, 2, 1, 3, 5]  # rank 0, then ranks in order
    assert traces.sidecar_path(tmp_path / "t.rank1.jsonl") == tmp_path / "t.rank1.vectors.bin"
    (tmp_path / "t.vectors.bin").write_bytes(b"x")
    (tmp_path / "t.rank1.vectors.bin").write_bytes(b"x")
    traces.remove_task(tmp_path, "t")
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["other.jsonl"]


def test_lines_are_appended_whole(tmp_path):
    path = tmp_path / "t.jsonl"
    traces.append_lines(path, [_line(0), _line(0, "dynamic")])
    traces.append_lines(path, [_line(1)])
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 3
    assert [(r["doc_id"], r["condition"]) for r in traces.read_lines(path)] == [(0, "none"), (0, "dynamic"), (1, "none")]


def test_lines_written_before_format_4_read_their_mask_as_the_condition(tmp_path):
    """TRACE_FORMAT 4 renamed the line's ``mask`` to ``condition``; an older file reads the same."""
    path = tmp_path / "old.jsonl"
    old = {**_line(0, "kv:static@0.3")}
    old["mask"] = old.pop("condition")
    traces.append_lines(path, [old, _line(1, "dynamic")])
    assert [(r["doc_id"], r["condition"], "mask" in r) for r in traces.read_lines(path)] == [
        (0, "kv:static@0.3", False), (1, "dynamic", False)]
    assert traces.rag_line("t", 0, [1], "static:10", [2], "", {})["condition"] == "rag:static:10"
