"""``verify`` checks masked traces too: an independent eager replay with hook-gated heads agrees with the
engine on every condition (tiny models: plain, sliding-window and fused-qkv attention), and a trace
altered in its heads, its gated heads' effect or its tokens is caught."""

from __future__ import annotations

import copy

import pytest

from dynheads.models.engine import DynamicMask, FixedMask, TraceEngine, Unmasked
from dynheads.models.engine.scores import ReasoningScore
from dynheads.traces import generation_line
from dynheads.models.verify import main, verify_records

from tiny_models import tiny_model

CONDITIONS = [Unmasked(), DynamicMask(), DynamicMask(1),
              FixedMask("static", ((0, 1), (2, 3))), FixedMask("random", ((1, 0),))]


def _self_copying_prompt(engine: TraceEngine) -> list[int]:
    """A repeated token the model continues with itself, so Eq. 1 heads fire and dynamic steps re-run."""
    for token in range(3, 96):
        prompt = [token] * 12 + [7, 9, 4] + [token] * 3
        if engine.generate(prompt, 1).token_ids == [token]:
            return prompt
    raise AssertionError("no self-copying token in this tiny model; change the seed")


def _records(arch: str, eq2: bool = False) -> tuple[list[dict], object]:
    model = tiny_model(arch)
    engine = TraceEngine(model)
    ids = _self_copying_prompt(engine)
    target = list(range(len(ids) - 3))
    if eq2:
        reasoning = ReasoningScore(sink_tokens=1, local_window=2, threshold=0.3)
        gens = engine.generate_many(ids, 6, CONDITIONS, target=target, score=reasoning)
        records = [generation_line("t", 0, g, "", target, reasoning) for g in gens]
    else:
        gens = engine.generate_many(ids, 6, CONDITIONS, target=target)
        records = [generation_line("t", 0, g, "", target) for g in gens]
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    return records, eager


@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi3"])
def test_every_condition_agrees_with_the_eager_replay(arch):
    records, eager = _records(arch)
    dynamic = records[1]
    assert any(step.get("heads_after") is not None for step in dynamic["steps"]), "no dynamic step was re-run"
    result = verify_records(eager, records)
    assert result["masked_lines"] == 4 and result["steps"] == sum(len(r["steps"]) for r in records)
    assert result["agreement"] == 1.0, result


def test_eq2_traces_agree_too():
    records, eager = _records("llama", eq2=True)
    assert any(step["heads"] for r in records for step in r["steps"])
    assert verify_records(eager, records)["agreement"] == 1.0


def test_altered_traces_are_caught():
    records, eager = _records("llama")
    dynamic = copy.deepcopy(records[1])
    rerun = next(step for step in dynamic["steps"] if step.get("gated"))
    rerun["heads_after"] = rerun["heads_after"] + [[2, 3]] if [2, 3] not in rerun["heads_after"] else []
    static = copy.deepcopy(records[3])
    static["steps"][0]["token_id"] = (static["steps"][0]["token_id"] + 1) % 96
    unmasked = copy.deepcopy(records[0])
    looked = next(step for step in unmasked["steps"] if step["attended"])
    looked["attended"] = [(looked["attended"][0] + 1) % len(unmasked["input_ids"])] + looked["attended"][1:]
    result = verify_records(eager, [dynamic, static, unmasked])
    assert result["heads_after_agreement"] < 1.0 and result["tokens_agreement"] < 1.0 and result["agreement"] < 1.0
    assert result["attended_agreement"] < 1.0 and verify_records(eager, records)["attended_agreement"] == 1.0


def test_a_file_with_nothing_to_check_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no decode step to check" in err and err.count("\n") == 1
