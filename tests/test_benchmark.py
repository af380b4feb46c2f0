"""The benchmark measures what its labels say: the worst-case variant really re-runs every step, the
static variant gates one head in one pass, and every ratio is computed in one run (tiny model)."""

from __future__ import annotations

import pytest

from dynheads.models.engine import TraceEngine
from dynheads.suite.benchmarks.engine import _RerunEveryStep, batch_rates, time_ratios

from tiny_models import tiny_model


def test_the_worst_case_engine_reruns_every_step():
    model = tiny_model("llama")
    gen = _RerunEveryStep(model).generate(list(range(3, 24)), 5, target=[4, 5, 6], mask="dynamic")
    assert len(gen.steps) == 5
    assert all((0, 0) in s.gated and s.ungated_token_id is not None for s in gen.steps)


def test_time_ratios_report_every_variant():
    model = tiny_model("llama")
    result = time_ratios(model, TraceEngine(model), list(range(3, 24)), [4, 5, 6], new_tokens=4, repeats=1)
    for name in ("traced", "gated", "static", "two_pass"):
        assert result[f"{name}_over_plain"] > 0 and result[f"decode_{name}_over_plain"] > 0, name
    assert result["new_tokens"] == 4


def test_batch_rates_decode_every_row_and_report_each_batch_size():
    model = tiny_model("llama")

    def prompts(size):  # lengths differ, so batches are padded
        return [(list(range(3, 24 + r)), [4, 5, 6]) for r in range(size)]

    rows = batch_rates(model, TraceEngine(model), prompts, [1, 3], new_tokens=4, repeats=1)
    assert [r["batch"] for r in rows] == [1, 3] and rows[1]["padding"] == 2
    for r in rows:
        for name in ("plain", "traced", "gated"):
            assert r[f"{name}_tokens_per_s"] > 0 and r[f"{name}_decode_tokens_per_s"] > 0
    for r in rows:  # each batch size's throughput over the first's, as measured (not x / x)
        assert r["traced_speedup_over_first"] == pytest.approx(r["traced_tokens_per_s"] / rows[0]["traced_tokens_per_s"])
        assert r["decode_traced_speedup_over_first"] == pytest.approx(
            r["traced_decode_tokens_per_s"] / rows[0]["traced_decode_tokens_per_s"])
    assert rows[1]["traced_tokens_per_s"] != rows[0]["traced_tokens_per_s"]
