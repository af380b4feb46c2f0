"""SmolLM2 end to end: niah_uuid through lm-eval's Python API with the dynheads model and trace files.

The cache root is a temporary folder (``$DYNHEADS_CACHE``) holding a symlink to the user's
de-quantised model folder, and the static-head calibration is one 300-token sample, so the module
never runs the slow default calibration nor touches the user's cached calibration files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import lm_eval
from lm_eval.tasks import TaskManager

from dynheads import traces
from dynheads.metrics.dynamism import summarise
from dynheads.metrics.text import contains_exact
from dynheads.models.harness import step_registry
from dynheads.models.engine import DecodingError
from dynheads.models.harness.loading import ModelLoadError, resolve_pretrained
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.models.verify import verify_records

pytestmark = pytest.mark.slow  # loads the embedded SmolLM2 model

TASKS_DIR = str(Path(__file__).resolve().parent.parent / "tasks")
SHORT = {"lengths": [300], "depths": [0.5], "runs": 2, "seed": 7}
CONDITIONS = ["none", "dynamic", "static", "random"]
HEAD_METRICS = ("heads_per_step", "heads_per_step_std", "unique_heads", "adjacent_jaccard", "head_entropy",
                "jaccard_static_20", "jaccard_static_50", "jaccard_static_100")
TOTAL_HEADS = 30 * 9


@pytest.fixture(scope="module")
def model_dir(isolated_cache):
    return isolated_cache


@pytest.fixture(scope="module")
def lm(smollm2_lm):
    return smollm2_lm  # the session's one loaded model (test_calibration reads the same)


def _evaluate(lm, metadata, limit=None):
    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False, metadata=metadata)
    return lm_eval.simple_evaluate(model=lm, tasks=["niah_uuid"], task_manager=manager, log_samples=True, limit=limit)


def _run(lm, mask, trace_dir, metadata=SHORT):
    lm.configure(mask=mask, trace_dir=trace_dir)
    try:
        out = _evaluate(lm, metadata)
    finally:
        lm.configure(mask="none")
    records = [json.loads(line) for line in (Path(trace_dir) / "niah_uuid.jsonl").read_text().splitlines()]
    return out, records


@pytest.fixture(scope="module")
def grid_run(lm, tmp_path_factory):
    """SHORT under the four conditions after one shared prefill per document, traced (first: none)."""
    return _run(lm, "+".join(CONDITIONS), tmp_path_factory.mktemp("trace_grid"))


SIGNALS = ("entropy", "token_prob")  # float readings of a step (trace format 3): equal up to float precision


def _assert_same_steps(a: list[dict], b: list[dict]) -> None:
    """Steps equal in everything decoded (tokens, head sets, gates); the float signal readings within 1e-4, since a
    prompt's rows compute them in batches of another shape."""
    assert [{k: v for k, v in s.items() if k not in SIGNALS} for s in a] == [{k: v for k, v in s.items() if k not in SIGNALS} for s in b]
    for x, y in zip(a, b):
        assert all(x[k] == pytest.approx(y[k], abs=1e-4) for k in SIGNALS)


def _none_records(records):
    return [r for r in records if r["condition"] == "none"]


def test_niah_short_context_retrieves_and_traces(lm, grid_run):
    """The first condition (none) is what lm-eval scores (its lines are replayed under eager attention, with every
    other condition, in test_batch_size_changes_nothing_in_the_traces)."""
    out, records = grid_run
    metrics = out["results"]["niah_uuid"]
    assert metrics["acc,none"] == 1.0
    assert metrics["rouge_l,none"] > 0.8
    records = _none_records(records)
    assert len(records) == 2
    samples = {s["doc_id"]: s for s in out["samples"]["niah_uuid"]}
    for rec in records:
        assert {"task", "doc_id", "condition", "response", "input_ids", "needle_token_indices", "steps"} <= set(rec)
        assert rec["task"] == "niah_uuid" and rec["condition"] == "none"
        doc = samples[rec["doc_id"]]["doc"]
        ids = rec["input_ids"]
        needle_text = lm.tokenizer.decode([ids[i] for i in rec["needle_token_indices"]])
        assert doc["uuid"] in needle_text and needle_text.strip().startswith("The magic")
        emitted = [s["token_id"] for s in rec["steps"]]
        assert doc["uuid"] in lm.tokenizer.decode(emitted)
        assert rec["response"] == samples[rec["doc_id"]]["filtered_resps"][0]
        for step in rec["steps"]:
            assert isinstance(step["token_id"], int)
            assert "gated" not in step and "heads_after" not in step  # nothing gated under none
            assert all(0 <= l < 30 and 0 <= h < 9 for l, h in step["heads"])
        assert sum(len(s["heads"]) for s in rec["steps"]) > 0  # copying the UUID uses retrieval heads


def test_head_statistics_reported_under_dynheads(lm, grid_run):
    """Table 1 statistics of the first condition's steps appear in lm-eval's results."""
    out, records = grid_run
    records = _none_records(records)
    metrics = out["results"]["niah_uuid"]
    for name in HEAD_METRICS:
        assert f"{name},none" in metrics, name
        assert math.isfinite(metrics[f"{name},none"]), (name, metrics[f"{name},none"])
    # the same statistics recomputed from the trace file's per-step heads
    samples = [[s["heads"] for s in rec["steps"]] for rec in records]
    sizes = [len(step) for sample in samples for step in sample]
    assert metrics["heads_per_step,none"] == pytest.approx(sum(sizes) / len(sizes))
    assert metrics["heads_per_step,none"] > 0
    expected = summarise(samples, TOTAL_HEADS, lm.static().heads)
    assert metrics["heads_per_step_std,none"] == pytest.approx(expected["heads_per_step_std"])
    distinct = {tuple(h) for sample in samples for step in sample for h in step}
    assert metrics["unique_heads,none"] == expected["unique_heads"] == len(distinct)
    assert metrics["adjacent_jaccard,none"] == pytest.approx(expected["adjacent_jaccard"])
    assert metrics["head_entropy,none"] == pytest.approx(expected["entropy"])
    for k in (20, 50, 100):
        value = metrics[f"jaccard_static_{k},none"]
        assert value == pytest.approx(expected[f"jaccard_static_{k}"])
        assert 0.0 <= value <= 1.0


def test_four_conditions_share_prefill_and_gate_as_specified(lm, grid_run):
    """mask=none+dynamic+static+random: 4 trace lines per document, one prompt, each gate as specified."""
    out, records = grid_run
    by_doc: dict[int, dict[str, dict]] = {}
    for rec in records:
        by_doc.setdefault(rec["doc_id"], {})[rec["condition"]] = rec
    assert len(records) == 4 * 2 and sorted(by_doc) == [0, 1]
    n = lm.matched_count()
    assert n >= 1
    static_top = [list(h) for h in lm.static().heads[:n]]
    samples = {s["doc_id"]: s for s in out["samples"]["niah_uuid"]}
    changed = 0
    for doc_id, recs in by_doc.items():
        assert sorted(recs) == sorted(CONDITIONS)
        assert all(r["input_ids"] == recs["none"]["input_ids"] for r in recs.values())
        assert all(r["needle_token_indices"] == recs["none"]["needle_token_indices"] for r in recs.values())
        assert all("gated" not in s for s in recs["none"]["steps"])
        dynamic = recs["dynamic"]["steps"]
        assert all(s["gated"] == s["heads"] for s in dynamic)
        assert any(s["gated"] for s in dynamic)
        assert all("heads_after" in s for s in dynamic if s["gated"])
        for mask in ("static", "random"):
            assert all(len(s["gated"]) == n for s in recs[mask]["steps"]), mask
            assert all(s["gated"] == recs[mask]["steps"][0]["gated"] for s in recs[mask]["steps"]), mask
        assert all(sorted(s["gated"]) == sorted(static_top) for s in recs["static"]["steps"])
        # the first condition is the one lm-eval scores
        assert samples[doc_id]["filtered_resps"][0] == recs["none"]["response"]
        changed += recs["dynamic"]["response"] != recs["none"]["response"]
    acc_none = sum(contains_exact(by_doc[d]["none"]["response"], samples[d]["doc"]["uuid"]) for d in by_doc) / len(by_doc)
    assert out["results"]["niah_uuid"]["acc,none"] == pytest.approx(acc_none)
    assert changed >= 1, "masking the dynamic heads never changed the answer"


def test_dynamic_mask_changes_the_answer(lm, grid_run, tmp_path):
    """mask=dynamic alone: lm-eval scores the dynamic answers, identical to the grid run's dynamic lines."""
    out, records = _run(lm, "dynamic", tmp_path)
    assert lm.settings.mask.conditions[0].name == "none" and lm.settings.trace_dir is None  # configure restored
    assert len(records) == 2
    grid = {r["doc_id"]: r for r in grid_run[1] if r["condition"] == "dynamic"}
    samples = {s["doc_id"]: s for s in out["samples"]["niah_uuid"]}
    for rec in records:
        assert rec["condition"] == "dynamic"
        assert any(s["gated"] for s in rec["steps"]) and all(s["gated"] == s["heads"] for s in rec["steps"])
        # alone or after a shared prefill with other conditions: the same generation
        _assert_same_steps(rec["steps"], grid[rec["doc_id"]]["steps"])
        assert samples[rec["doc_id"]]["filtered_resps"][0] == rec["response"]
    acc = sum(contains_exact(r["response"], samples[r["doc_id"]]["doc"]["uuid"]) for r in records) / len(records)
    assert out["results"]["niah_uuid"]["acc,none"] == pytest.approx(acc)
    assert out["results"]["niah_uuid"]["acc,none"] < 1.0


def test_bad_model_arguments_fail_with_one_line(monkeypatch):
    # offline, as in the test environment; skips five hub retries (~25 s) when there is no network
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="cannot load pretrained='no-such-model-xyz'") as err:
        resolve_pretrained("no-such-model-xyz")
    assert "\n" not in str(err.value)
    # all of these are refused before the model loads
    with pytest.raises(ValueError, match="unknown mask condition 'sometimes'"):
        DynHeadsLM(mask="sometimes")
    with pytest.raises(ValueError, match="cannot read the head count of 'dynamic:x'"):
        DynHeadsLM(mask="none+dynamic:x")
    with pytest.raises(ValueError, match="empty mask"):
        DynHeadsLM(mask="+")
    with pytest.raises(ValueError, match="mask=random needs heads=N"):
        DynHeadsLM(mask="random", heads="1:2")
    with pytest.raises(ValueError, match="cannot serve static and random together"):
        DynHeadsLM(mask="static+random", heads="1:2")
    with pytest.raises(ValueError, match="needs the calibration; set heads=N or static_heads=auto"):
        DynHeadsLM(mask="static", static_heads="off")
    with pytest.raises(ValueError, match=r"static_heads='/no/such\.json' is not a file"):
        DynHeadsLM(static_heads="/no/such.json")
    with pytest.raises(ValueError, match="cannot read calib_lengths='abc'"):
        DynHeadsLM(calib_lengths="abc")


def test_configure_validates_heads(lm):
    try:
        with pytest.raises(ValueError, match=r"heads=999 requested but the model has 270 heads"):
            lm.configure(mask="random", heads=999)
        with pytest.raises(DecodingError, match=r"head \(30, 0\) does not exist"):
            lm.configure(mask="static", heads="30:0")
        with pytest.raises(ValueError, match="cannot read head 'x'"):
            lm.configure(mask="static", heads="x")
        lm.configure(mask="static+random", heads=3)
        assert lm.matched_count() == 3
        assert lm.settings.mask.conditions[0].name == "static"
    finally:
        lm.configure(mask="none")


def test_context_longer_than_model_is_refused(lm):
    with pytest.raises(DecodingError, match="exceeds this model's 8192 positions"):
        lm.engine.generate([1] * 8190, 8)


def test_needle_lost_in_truncation_is_refused(lm):
    docs_meta = {"lengths": [300], "depths": [0.0], "runs": 1, "seed": 3}
    saved = lm._max_length
    lm._max_length = 200  # forces left truncation that cuts off the needle near the start
    try:
        with pytest.raises(DecodingError, match="needle was lost in truncation"):
            _evaluate(lm, docs_meta)
    finally:
        lm._max_length = saved


def test_batch_size_changes_nothing_in_the_traces(lm, grid_run, tmp_path, smollm2_eager):
    """--batch_size 4 (prompts of two lengths, left-padded, four conditions each) writes the traces of batch 1 (the
    300-token documents' batch-1 lines are the grid run's; only the 450-token ones are decoded alone here), and
    eager attention replays every batched line (masked ones included) with full agreement."""
    assert lm.batch_size_per_gpu == 1  # the grid run decoded one prompt at a time
    before = lm.batch_size_per_gpu
    try:
        _, longer = _run(lm, "+".join(CONDITIONS), tmp_path / "batch1", {**SHORT, "lengths": [450]})
        lm.batch_size_per_gpu = 4
        _, four = _run(lm, "+".join(CONDITIONS), tmp_path / "batch4", {**SHORT, "lengths": [300, 450]})
    finally:
        lm.batch_size_per_gpu = before
    one = grid_run[1] + longer
    assert len(one) == len(four) == 4 * len(CONDITIONS)
    key = lambda r: (tuple(r["input_ids"]), r["condition"])  # noqa: E731  (doc ids differ between the two grids)
    alone = {key(r): r for r in one}
    assert set(alone) == {key(r) for r in four}
    for b in four:
        a = alone[key(b)]
        assert {**a, "steps": None, "doc_id": None} == {**b, "steps": None, "doc_id": None}
        _assert_same_steps(a["steps"], b["steps"])
    check = verify_records(smollm2_eager, four)
    assert check["masked_lines"] == 3 * 4 and check["agreement"] == 1.0, check
    assert check["tokens_agreement"] == check["heads_agreement"] == 1.0, check


def test_hallucination_absence_metric_equals_the_trace_and_is_absent_otherwise(model_dir, lm, tmp_path):
    """hallucination=absence adds the share of answer steps without an Eq. 1 head (recomputed here from the trace
    file) and its AUROC; without the argument, and under hf, neither metric appears."""
    from dynheads.metrics.hallucination import absence_share, answer_steps, token_ends
    from dynheads.tasks.niah_uuid.utils import answer_span

    detector = DynHeadsLM(device="cpu", dtype="float32", calib_lengths="300", calib_depths="0.5",
                          hallucination="absence", trace_dir=str(tmp_path))
    out = _evaluate(detector, SHORT)
    metrics = out["results"]["niah_uuid"]
    records = [json.loads(line) for line in (tmp_path / "niah_uuid.jsonl").read_text().splitlines()]
    shares = []
    for rec in records:
        ends = token_ends(detector.tok_decode, [s["token_id"] for s in rec["steps"]])
        steps = answer_steps(ends, answer_span(rec["response"]))
        assert steps and len(steps) < len(rec["steps"])  # the UUID's steps, not the lead-in "The magic word is"
        shares.append(absence_share([s["heads"] for s in rec["steps"]], steps))
    assert metrics["hallucination_absence,none"] == pytest.approx(sum(shares) / len(shares))
    assert "hallucination_auroc,none" in metrics  # both answers are right here: one class, so NaN, never 0
    assert math.isnan(metrics["hallucination_auroc,none"])
    other = _evaluate(lm, SHORT, limit=1)  # (under hf: test_hf_run_after_dynheads_has_no_dynheads_metric)
    assert not [k for k in other["results"]["niah_uuid"] if k.startswith("hallucination")]
    with pytest.raises(ValueError, match="hallucination='psychic'; choose absence"):
        DynHeadsLM(device="cpu", hallucination="psychic")


def test_kv_compression_through_lm_eval_scores_the_first_strategy_and_reports_measured_shares(lm, grid_run, tmp_path):
    """kv=full+streaming+static@0.05+random@0.05: lm-eval scores kv:full, which answers exactly as the unmasked model;
    the trace holds every strategy with its measured shares; kv_kept_* are the first strategy's means (1.0 for full)
    and are absent without kv= and under hf; a same-step probe is refused as kv_probe."""
    lm.configure(kv="full+streaming+static@0.05+random@0.05", trace_dir=tmp_path / "kv")
    try:
        out = _evaluate(lm, SHORT)
    finally:
        lm.configure(mask="none")
    records = [json.loads(line) for line in (tmp_path / "kv" / "niah_uuid.jsonl").read_text().splitlines()]
    assert [r["condition"] for r in records[:4]] == ["kv:full", "kv:streaming", "kv:static@0.05", "kv:random@0.05"]
    metrics = out["results"]["niah_uuid"]
    assert metrics["kv_kept_heads,none"] == 1.0 and metrics["kv_kept_kv,none"] == 1.0
    plain = _none_records(grid_run[1])  # the same documents, unmasked, decoded once by the grid run
    full = sorted((r for r in records if r["condition"] == "kv:full"), key=lambda r: r["doc_id"])
    plain = sorted(plain, key=lambda r: r["doc_id"])
    assert [r["input_ids"] for r in full] == [r["input_ids"] for r in plain]
    assert [r["response"] for r in full] == [r["response"] for r in plain]
    streaming = [s["kv_kept"] for r in records if r["condition"] == "kv:streaming" for s in r["steps"]]
    static = [s["kv_kept"] for r in records if r["condition"] == "kv:static@0.05" for s in r["steps"]]
    assert max(k[1] for k in streaming) < min(k[1] for k in static) < 1.0
    assert all(len(traces.kv_full(r, s)) == 5 * 3 for r in records if r["condition"] == "kv:static@0.05" for s in r["steps"])  # 5 KV groups of 3


def _dynheads_only(out) -> list[str]:
    return [key for key in out["results"]["niah_uuid"]
            if key.split(",")[0] in HEAD_METRICS or key.startswith(("hallucination", "kv_", "rag_"))]


def test_hf_run_after_dynheads_has_no_dynheads_metric(smollm2_hf, lm):
    """lm-eval's own hf model scores the task with none of the dynheads metrics (head statistics, hallucination, KV
    shares: absent, not zero or nan), although dynheads runs of the very same documents came earlier in this process
    (Python-API use: compare the two models in one session; nothing may leak)."""
    first = _evaluate(lm, SHORT, limit=1)
    assert "heads_per_step,none" in first["results"]["niah_uuid"]  # dynheads reported them just before
    out = _evaluate(smollm2_hf, SHORT, limit=1)
    metrics = out["results"]["niah_uuid"]
    assert "acc,none" in metrics and "rouge_l,none" in metrics
    assert _dynheads_only(out) == []
