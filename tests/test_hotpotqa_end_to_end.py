"""SmolLM2 end to end on hotpotqa_sf: a user's file in the official layout, scored as the official
script scores it, plus Eq. 2 reasoning-head traces and statistics."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

import lm_eval
from lm_eval.tasks import TaskManager

from dynheads.metrics.qa import exact_match_score, f1_score
from dynheads.metrics.reasoning import reasoning_heads
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.models.harness.settings import StaticSettings
from dynheads.tasks.hotpotqa_sf.utils import extract_answer

pytestmark = pytest.mark.slow  # loads the embedded SmolLM2 model

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = str(ROOT / "tasks")
METADATA = {"n": 2}


def user_records() -> list[dict]:
    """Two dev records in the official layout, renamed so that only the user's file can supply them."""
    with gzip.open(ROOT / "tasks" / "data" / "hotpotqa" / "hotpot_dev_distractor_1000.json.gz", "rt", encoding="utf-8") as fh:
        records = json.load(fh)[:2]
    for i, rec in enumerate(records):
        rec["_id"] = f"user-{i}"
    return records


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user_data") / "my_hotpot_dev.json"
    path.write_text(json.dumps(user_records()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(isolated_cache, tmp_path_factory, user_file):
    trace_dir = tmp_path_factory.mktemp("hotpot_traces")
    lm = DynHeadsLM(device="cpu", dtype="float32", static_heads="off", trace_dir=str(trace_dir))
    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False, metadata={"source": str(user_file), "n": "all"})
    out = lm_eval.simple_evaluate(model=lm, tasks=["hotpotqa_sf"], task_manager=manager, log_samples=True)
    records = [json.loads(line) for line in (trace_dir / "hotpotqa_sf.jsonl").read_text().splitlines()]
    return lm, out, records


def official_answer_metrics(prediction: dict, gold: list[dict]) -> dict[str, float]:
    """The answer part of hotpot_evaluate_v1.eval(prediction_file, gold_file): per-example EM, F1,
    precision and recall summed over the *gold* examples, divided by their number."""
    totals: Counter = Counter()
    for dp in gold:
        guess = prediction["answer"][dp["_id"]]
        f1, precision, recall = f1_score(guess, dp["answer"])
        totals.update({"em": float(exact_match_score(guess, dp["answer"])), "f1": f1, "prec": precision, "recall": recall})
    return {key: totals[key] / len(gold) for key in ("em", "f1", "prec", "recall")}


def test_user_official_file_is_scored_as_the_official_script(run, user_file):
    """The file given by path is read (its own ids), and lm-eval's em/f1 equal the official script's
    on the prediction file built from the same responses."""
    _, out, records = run
    gold = json.loads(user_file.read_text())
    samples = sorted(out["samples"]["hotpotqa_sf"], key=lambda s: s["doc_id"])
    assert [s["doc"]["id"] for s in samples] == ["user-0", "user-1"]
    responses = {r["doc_id"]: r["response"] for r in records}
    prediction = {"answer": {s["doc"]["id"]: extract_answer(responses[s["doc_id"]]) for s in samples}, "sp": {}}
    official = official_answer_metrics(prediction, gold)
    results = out["results"]["hotpotqa_sf"]
    assert results["em,none"] == pytest.approx(official["em"], abs=1e-12)
    assert results["f1,none"] == pytest.approx(official["f1"], abs=1e-12)
    for s, dp in zip(samples, gold):  # per example too, and per question type
        guess = prediction["answer"][dp["_id"]]
        assert s["em"] == float(exact_match_score(guess, dp["answer"])) == s[f"em_{dp['type']}"]
        assert s["f1"] == pytest.approx(f1_score(guess, dp["answer"])[0])
    assert {dp["type"] for dp in gold} == {"bridge", "comparison"}


def test_em_f1_and_reasoning_statistics_are_reported(run):
    _, out, _ = run
    results = out["results"]["hotpotqa_sf"]
    for key in ("em,none", "f1,none"):
        assert 0.0 <= results[key] <= 1.0
    for key in ("heads_per_step,none", "unique_heads,none", "head_entropy,none"):
        assert key in results
    assert not any(key.startswith("jaccard_static") for key in results)  # static_heads=off: absent, not 0


def test_traces_carry_supporting_fact_tokens_and_eq2_scores(run):
    lm, out, records = run
    assert len(records) == 2
    docs = {s["doc_id"]: s["doc"] for s in out["samples"]["hotpotqa_sf"]}
    for rec in records:
        doc = docs[rec["doc_id"]]
        assert rec["needle_token_indices"] == [] and rec["reasoning"]["threshold"] == 0.5
        support_text = lm.tokenizer.decode([rec["input_ids"][i] for i in rec["support_token_indices"]])
        for start, end in doc["support_char_spans"]:
            first_words = " ".join(doc["input"][start:end].split()[:3])
            assert first_words in support_text
        for step in rec["steps"]:
            scores = torch.tensor(step["scores"])
            assert scores.shape == (30, 9) and bool(((scores >= 0) & (scores <= 1)).all())
            assert [list(h) for h in reasoning_heads(scores, 0.5)] == step["heads"]
        assert max(max(max(row) for row in step["scores"]) for step in rec["steps"]) > 0.1  # attention does reach the facts


def test_reasoning_calibration_ranks_by_mean_eq2_score_and_feeds_jaccard(run, tmp_path):
    """static_heads=auto on HotpotQA: a cached Eq. 2 calibration on train examples, then Jaccard columns."""
    lm, _, _ = run
    clone = DynHeadsLM.__new__(DynHeadsLM)
    clone.__dict__.update(lm.__dict__)
    clone._static = {}
    clone.settings = dataclasses.replace(lm.settings, static=StaticSettings("auto", {**lm.settings.static.calibration, "examples": 1}))
    clone.configure(mask="none+static", trace_dir=tmp_path)
    static = clone.static("reasoning")
    data = json.loads(static.path.read_text())
    assert static.path.name.startswith("hotpotqa_") and data["task"] == "hotpotqa"
    assert data["setting"]["split"] == "train" and data["samples"] == 1
    scores = [s for _, _, s in static.ranking]
    assert len(static.ranking) == 270 and scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert static.matched_n is not None
    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False, metadata=METADATA)
    out = lm_eval.simple_evaluate(model=clone, tasks=["hotpotqa_sf"], task_manager=manager, limit=1)
    results = out["results"]["hotpotqa_sf"]
    assert 0.0 <= results["jaccard_static_20,none"] <= 1.0
    masked = [json.loads(line) for line in (tmp_path / "hotpotqa_sf.jsonl").read_text().splitlines()][1]
    assert masked["condition"] == "static"
    top = [list(h) for h in static.heads[: static.matched_n]]
    assert all(step["gated"] == sorted(top) for step in masked["steps"])


def test_figure5_from_a_real_trace(run, tmp_path):
    """Figure 5 picks the heads whose Eq. 2 score varies most over the answer and draws them."""
    import statistics

    from dynheads.suite.hotpotqa import figures

    _, _, records = run
    record = records[0]
    trace = tmp_path / "hotpotqa_sf.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "figure5.png"
    assert figures.main([str(trace), "--doc", str(record["doc_id"]), "--out", str(out), "--heads", "5"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    chosen = figures.most_varying_heads([s["scores"] for s in record["steps"]], 5)
    variance = {(l, h): statistics.pvariance([s["scores"][l][h] for s in record["steps"]]) for l in range(30) for h in range(9)}
    assert min(variance[h] for h in chosen) >= max(v for h, v in variance.items() if h not in chosen)
    assert figures.main([str(trace), "--doc", "99", "--out", str(out)]) == 2
