"""``probe=PATH`` on the dynheads model: a probe of another model, size or task kind is one clear error, and the
task metrics pool every step of every document (fast parts; the SmolLM2 run is in test_end_to_end)."""

from __future__ import annotations

import numpy as np
import pytest

from dynheads.models.engine import TraceEngine
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.models.harness.probe_metrics import check_probe, probe_record
from dynheads.probes.evaluation import agg_probe_auprc, agg_probe_f1, agg_probe_mae, agg_probe_r2, classification_scores
from dynheads.probes.mlp import HeadProbeClassifier
from dynheads.tasks.common import head_metrics
from dynheads.models.harness import step_registry

from tiny_models import tiny_model


def test_a_probe_of_another_model_or_size_is_refused_in_one_line():
    meta = {"model": "smollm2", "hidden_dim": 576, "heads": 270, "documents": []}
    check_probe(meta, "smollm2", 576, 270, "p.pt")
    with pytest.raises(ValueError, match="does not record the documents") as info:
        check_probe({k: v for k, v in meta.items() if k != "documents"}, "smollm2", 576, 270, "p.pt")
    assert "\n" not in str(info.value) and "--stages probes" in str(info.value)
    for model, dim, heads in (("gemma3-270m", 576, 270), ("smollm2", 640, 270), ("smollm2", 576, 72)):
        with pytest.raises(ValueError, match="was trained on smollm2") as info:
            check_probe(meta, model, dim, heads, "p.pt")
        assert "\n" not in str(info.value) and "--stages probes" in str(info.value)


def test_an_unreadable_probe_fails_before_the_model_loads(tmp_path):
    bad = tmp_path / "p.pt"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="probe=.* cannot be read|not a dynheads probe"):
        DynHeadsLM(probe=str(bad))


def test_probe_records_feed_the_pooled_task_metrics():
    engine = TraceEngine(tiny_model("llama"))
    gen = engine.generate(list(range(3, 24)), 5, target=list(range(2, 12)), record_hidden=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 64)).astype(np.float32), (rng.random((40, 12)) > 0.7).astype(np.float32)
    probe = HeadProbeClassifier(hidden_sizes=(8,), max_epochs=2).fit(x, y)
    meta = {"model": "tiny", "kind": "copy_paste", "hidden_dim": 64, "heads": 12}
    record = probe_record(probe, meta, "copy_paste", gen, 3, 4, "p.pt")
    assert np.asarray(record["pred"]).shape == (5, 12) and np.asarray(record["target"]).shape == (5, 12)
    with pytest.raises(ValueError, match="trained on copy_paste heads but this task's documents give reasoning heads"):
        probe_record(probe, meta, "reasoning", gen, 3, 4, "p.pt")
    doc = {"input": "x", "needle": "y"}
    step_registry.remember(doc, {"steps": [], "total_heads": 12, "static": None, "probe": record})
    metrics = head_metrics(doc)
    assert metrics["probe_f1"] is record and metrics["probe_auprc"] is record and "probe_r2" not in metrics
    pooled = classification_scores(np.r_[np.ravel(record["target"]), np.ravel(record["target"])],
                                   np.r_[np.ravel(record["pred"]), np.ravel(record["pred"])], record["threshold"])
    assert agg_probe_f1([record, record]) == pooled["f1"]
    assert agg_probe_auprc([record, record]) == pytest.approx(pooled["auprc"], nan_ok=True)
    regression = {"kind": "reasoning", "target": [[0.1, 0.5], [0.2, 0.4]], "pred": [[0.1, 0.5], [0.2, 0.4]], "threshold": None}
    assert agg_probe_r2([regression]) == 1.0 and agg_probe_mae([regression]) == 0.0
