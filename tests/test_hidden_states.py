"""Hidden states in the trace: read from the step's own forward pass, equal to eager ``output_hidden_states``
(gated passes included), stored in the binary sidecar, and absent (trace unchanged) when not asked for."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from dynheads.models.engine import DynamicMask, FixedMask, TraceEngine, Unmasked
from dynheads.models.engine.scores import ReasoningScore
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.traces import generation_line
from dynheads.traces import append_vectors, read_vectors, score_matrix
from dynheads.models.verify import gated

from tiny_models import tiny_model

PROMPT = list(range(3, 24))
NEEDLE = list(range(2, 12))


def _eager_hidden_states(model: torch.nn.Module, tokens: list[int], gate: list) -> list[torch.Tensor]:
    """Each decode step's final hidden state from an independent eager replay: the prompt prefilled
    ungated, then one token per step with ``gate`` zeroed before ``o_proj`` (as the engine gates every
    decode step of a static condition). With no gate, one full forward gives the same rows."""
    from transformers import DynamicCache

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    sequence = PROMPT + tokens[:-1]
    with torch.no_grad():
        if not gate:
            out = eager(input_ids=torch.tensor([sequence]), output_hidden_states=True)
            return [out.hidden_states[-1][0, len(PROMPT) - 1 + t] for t in range(len(tokens))]
        cache = DynamicCache(config=eager.config)
        eager(input_ids=torch.tensor([PROMPT[:-1]]), cache=cache, use_cache=True)
        states = []
        for t in range(len(tokens)):
            with gated(eager, gate):
                out = eager(input_ids=torch.tensor([[sequence[len(PROMPT) - 1 + t]]]), cache=cache, use_cache=True,
                            output_hidden_states=True)
            states.append(out.hidden_states[-1][0, -1])
        return states


@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi3"])
def test_recorded_hidden_states_equal_eager_output_hidden_states(arch):
    model = tiny_model(arch)
    engine = TraceEngine(model)
    conditions = [Unmasked(), FixedMask("static", ((0, 1), (2, 0)))]
    for gen in engine.generate_many(PROMPT, 5, conditions, target=NEEDLE, record_hidden=True):
        gate = [(0, 1), (2, 0)] if gen.condition == "static" else []
        for step, want in zip(gen.steps, _eager_hidden_states(model, gen.token_ids, gate)):
            assert step.hidden.shape == want.shape and torch.allclose(step.hidden, want.float(), atol=1e-4), gen.condition


def test_recording_changes_nothing_else_and_only_adds_the_vectors_key(tmp_path):
    engine = TraceEngine(tiny_model("llama"))
    conditions = [Unmasked(), DynamicMask(), FixedMask("random", ((1, 1),))]
    plain = engine.generate_many(PROMPT, 6, conditions, target=NEEDLE)
    recorded = engine.generate_many(PROMPT, 6, conditions, target=NEEDLE, record_hidden=True)
    for a, b in zip(plain, recorded):
        assert all(s.hidden is None for s in a.steps) and all(s.hidden is not None for s in b.steps)
        off, on = generation_line("t", 0, a, "x", NEEDLE), generation_line("t", 0, b, "x", NEEDLE)
        hidden = torch.stack([s.hidden for s in b.steps]).numpy()
        on["vectors"] = append_vectors(tmp_path / "t.vectors.bin", hidden, score_matrix(b.steps, 3, 4))
        assert json.dumps(off) == json.dumps({k: v for k, v in on.items() if k != "vectors"})
        stored_hidden, stored_scores = read_vectors(tmp_path / "t.jsonl", on)
        assert np.allclose(stored_hidden, hidden, atol=1e-2, rtol=1e-3)  # float16 by default
        assert [sorted(map(tuple, np.argwhere(row.reshape(3, 4) == 1))) for row in stored_scores] == [s.heads for s in b.steps]


def test_sidecar_blocks_append_and_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    refs = []
    for steps in (3, 0, 5):
        hidden, scores = rng.normal(size=(steps, 7)).astype(np.float32), rng.random(size=(steps, 4)).astype(np.float32)
        refs.append((append_vectors(tmp_path / "x.vectors.bin", hidden, scores, "float32"), hidden, scores))
    assert refs[1][0]["offset"] == refs[0][0]["offset"] + 3 * (7 + 4) * 4
    for ref, hidden, scores in refs:
        got_hidden, got_scores = read_vectors(tmp_path / "x.jsonl", {"vectors": ref})
        assert np.array_equal(got_hidden, hidden) and np.array_equal(got_scores, scores)
    with pytest.raises(ValueError, match="hidden=true"):
        read_vectors(tmp_path / "x.jsonl", {})


def test_eq2_score_vectors_are_the_recorded_scores():
    engine = TraceEngine(tiny_model("llama"))
    gen = engine.generate(PROMPT, 4, target=NEEDLE, score=ReasoningScore(1, 2, 0.3))
    matrix = score_matrix(gen.steps, 3, 4)
    assert np.allclose(matrix, np.array([np.asarray(s.scores).ravel() for s in gen.steps]))


def test_hidden_needs_a_trace_dir_before_any_model_loads():
    with pytest.raises(ValueError, match="hidden=true .* give trace_dir=DIR"):
        DynHeadsLM(hidden="true")
    with pytest.raises(ValueError, match="hidden_dtype='float64'"):
        DynHeadsLM(hidden_dtype="float64")
