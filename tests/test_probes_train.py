"""From traces written with hidden=true to a saved probe and a report with its controls (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynheads.models.engine import DynamicMask, TraceEngine, Unmasked
from dynheads.traces import generation_line, write_generations
from dynheads.probes.dataset import load_step_vectors
from dynheads.probes.mlp import load_probe
from dynheads.probes.train import main

from tiny_models import tiny_model


def _write_traces(folder, generations: int = 12, steps: int = 8) -> None:
    """Unmasked (plus one masked) traced generations of a tiny model with vectors, as the lm-eval model writes them."""
    engine = TraceEngine(tiny_model("llama"))
    rng = np.random.default_rng(0)
    for doc in range(generations):
        prompt = rng.integers(3, 96, size=20).tolist()
        gens = engine.generate_many(prompt, steps, [Unmasked(), DynamicMask()],
                                    target=list(range(2, 14)), record_hidden=True)
        lines = [generation_line("niah_uuid", doc, gen, "", list(range(2, 14)), doc_key=f"d{doc}") for gen in gens]
        write_generations(folder / "niah_uuid.jsonl", lines, gens, "float32", "tiny", engine.num_layers, engine.num_heads)


def test_step_vectors_are_the_unmasked_steps_in_generation_order(tmp_path):
    _write_traces(tmp_path)
    data = load_step_vectors([tmp_path])
    assert data.kind == "copy_paste" and data.model == "tiny" and data.hidden.shape == (12 * 8, 64)
    assert data.scores.shape == (96, 12) and set(np.unique(data.scores)) <= {0.0, 1.0}
    assert data.groups.tolist() == [g for g in range(12) for _ in range(8)]
    with pytest.raises(ValueError, match="no trace line with hidden-state vectors"):
        load_step_vectors([tmp_path], mask="static")


def test_cli_trains_saves_and_reports_with_baselines(tmp_path, capsys):
    _write_traces(tmp_path)
    out, report = tmp_path / "probe.pt", tmp_path / "report.json"
    assert main([str(tmp_path), "--out", str(out), "--report", str(report), "--hidden-sizes", "16",
                 "--max-epochs", "3", "--max-offset", "2", "--components", "4"]) == 0
    data = json.loads(report.read_text())
    assert [data["split"][s]["generations"] for s in ("train", "validation", "test")] == [8, 2, 2]
    assert [row["k"] for row in data["cca"]] == [0, 1, 2]
    for row in data["cca"]:
        assert {"in_sample", "held_out", "shuffled"} <= set(row)
    assert {"probe", "prior", "previous_step", "predicts"} <= set(data["probe"])
    probe, meta = load_probe(out)
    assert meta["model"] == "tiny" and meta["kind"] == "copy_paste" and meta["hidden_dim"] == 64 and meta["hidden_sizes"] == [16]
    assert len(meta["documents"]) == 10 and set(meta["documents"]) <= {f"d{g}" for g in range(12)}  # train + validation
    assert probe.predict_proba(np.zeros((2, 64), dtype=np.float32)).shape == (2, 12)


def test_cli_without_vectors_is_one_line(tmp_path, capsys):
    (tmp_path / "t.jsonl").write_text(json.dumps({"condition": "none", "steps": []}) + "\n")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "hidden=true" in err and err.count("\n") == 1
