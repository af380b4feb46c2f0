"""Section 5 traces checked independently (issue 23): an eager replay with masks built from the trace agrees on every
token, RIND trigger, top position and window for every strategy on tiny architectures, and catches an altered trace."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dynheads.models.engine import TraceEngine
from dynheads.models.rag.algorithm import ContextExample, RagSettings
from dynheads.models.rag.strategies import HeadSource, Strategy
from dynheads.models.verify.rag import ReplayError, replay_answer
from dynheads.models.harness.rag_requests import trace_rag
from dynheads.models.verify import passed, verify_records
from dynheads.traces import rag_line

from tiny_models import ARCHITECTURES, tiny_model

CONTEXT = (6, 40)
LENGTH = 50
NEW = 8
SUPPORT = list(range(12, 18)) + list(range(30, 34))
STRATEGIES = [Strategy.parse(s) for s in ("dynamic", "static", "dynamic_random", "fixed_random", "none", "full", "oracle")]


def token_text(t: int) -> str:
    return f" w{t}." if t % 5 == 0 else f" w{t}"  # some tokens end a sentence, so RIND retracts to sentence starts


def _prompt() -> list[int]:
    g = torch.Generator().manual_seed(4)
    return torch.randint(3, 96, (LENGTH,), generator=g).tolist()


# planted heads for the tiny models (3 layers x 4 heads): the probe and the calibration both rank (1, 0), (2, 3)
# first; the random strategies draw from the 12 heads, seeded
PLANTED_SCORES = np.zeros(12)
PLANTED_SCORES[[1 * 4 + 0, 2 * 4 + 3]] = [2.0, 1.0]
SOURCE = HeadSource(3, 4, 2, "0-doc", predict=lambda hidden: PLANTED_SCORES, static_heads=lambda: [(1, 0), (2, 3)])


def traced_lines(model: torch.nn.Module, algorithm: str, threshold: float = 0.0) -> list[dict]:
    """Every strategy's answer to one prompt as the trace lines the dynheads model writes."""
    settings = RagSettings(heads=2, threshold=threshold, top_positions=3, cluster_gap=2, window=4, sink_tokens=2,
                           max_retrievals=2, algorithm=algorithm)
    example = ContextExample(TraceEngine(model), _prompt(), range(*CONTEXT), SUPPORT, settings, eos=set(), stop=None,
                             token_text=token_text)
    answers = example.answer_many(STRATEGIES, NEW, SOURCE)
    decoding = {"max_new_tokens": NEW, "eos_token_ids": [], "until": []}
    return [rag_line("t", 0, example.ids, a.strategy, a.token_ids, "", trace_rag(a, example, decoding)) for a in answers]


def _eager(model: torch.nn.Module) -> torch.nn.Module:
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    return eager


FAST = {("llama", "paper"), ("gemma3", "paper"), ("mistral", "dragin")}  # sliding windows in the fast tier too
CASES = [pytest.param(arch, algorithm, marks=() if (arch, algorithm) in FAST else pytest.mark.slow)
         for arch in ARCHITECTURES for algorithm in ("paper", "dragin")]


@pytest.mark.parametrize("arch, algorithm", CASES)
def test_replay_agrees_on_every_field_for_every_strategy(arch, algorithm):
    model = tiny_model(arch)
    lines = traced_lines(model, algorithm)
    assert sum(len(line["rag"]["retrieval_log"]) for line in lines) >= 4  # threshold 0: the head strategies retrieve
    eager = _eager(model)
    for line in lines:
        checks = replay_answer(eager, line, token_text, lambda ids: "")
        assert all(all(flags) for flags in checks.values()), (line["condition"], checks)
        assert len(checks["tokens"]) == len(line["steps"])
        if line["rag"]["retrieval_log"]:
            assert len(checks["windows"]) == len(line["rag"]["retrieval_log"]) and checks["triggers"]
    result = verify_records(eager, lines, token_text, lambda ids: "")
    assert result["rag"]["lines"] == len(STRATEGIES) and passed(result)
    assert result["rag"]["top_positions_checked"] > 0 and result["rag"]["triggers_agreement"] == 1.0


def test_a_threshold_nothing_exceeds_is_checked_as_passing_drafts():
    model = tiny_model("llama")
    lines = traced_lines(model, "paper", threshold=float("inf"))
    eager = _eager(model)
    checks = replay_answer(eager, lines[0], token_text, lambda ids: "")
    assert checks["triggers"] == [True] and checks["windows"] == [] and all(checks["tokens"])


def test_an_altered_window_token_or_trigger_is_caught():
    model = tiny_model("llama")
    lines = traced_lines(model, "paper")
    eager = _eager(model)
    static = next(line for line in lines if line["condition"] == "rag:static")
    assert static["rag"]["retrieval_log"]
    moved = copy.deepcopy(static)
    s, e = moved["rag"]["retrieval_log"][0]["windows"][0]
    moved["rag"]["retrieval_log"][0]["windows"][0] = [s + 1, e + 1]
    checks = replay_answer(eager, moved, token_text, lambda ids: "")
    assert not all(checks["windows"])
    token = copy.deepcopy(static)
    token["steps"][-1]["token_id"] = (token["steps"][-1]["token_id"] + 1) % 96
    assert not all(replay_answer(eager, token, token_text, lambda ids: "")["tokens"])
    trigger = copy.deepcopy(static)
    trigger["rag"]["retrieval_log"][0]["trigger"]["score"] += 0.5
    assert not all(replay_answer(eager, trigger, token_text, lambda ids: "")["triggers"])
    top = copy.deepcopy(static)
    top["rag"]["retrieval_log"][0]["top_positions"] = [p + 1 for p in top["rag"]["retrieval_log"][0]["top_positions"]]
    assert not all(replay_answer(eager, top, token_text, lambda ids: "")["top_positions"])
    assert not passed(verify_records(eager, [moved], token_text, lambda ids: ""))


def test_a_line_it_cannot_check_is_one_line_not_a_traceback():
    model = tiny_model("llama")
    line = traced_lines(model, "paper")[0]
    old = copy.deepcopy(line)
    del old["rag"]["settings"]
    with pytest.raises(ReplayError, match=r"lacks settings .*TRACE_FORMAT 3"):
        replay_answer(_eager(model), old, token_text, lambda ids: "")
    result = verify_records(_eager(model), [old, {"condition": "none", "doc_id": 3}], token_text, lambda ids: "")
    assert len(result["unchecked"]) == 2 and all("\n" not in u for u in result["unchecked"])
    assert "rag" not in result and not passed(result)
