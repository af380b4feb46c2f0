"""The detectors' raw signals recorded by the engine (TRACE_FORMAT 3 and 5) equal an eager recomputation, padded batches too."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from dynheads.models.engine import DecodeRequest, TraceEngine
from dynheads.traces import (TRACE_FORMAT, append_vectors, generation_line, mass_rows, read_context_mass, read_mass,
                             read_vectors, score_matrix)

from tiny_models import tiny_model


def _prompt(seed: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (n,), generator=g).tolist()


def _eager(model: torch.nn.Module, ids: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        out = eager(input_ids=torch.tensor([ids]), output_attentions=True)
    return out.logits[0, -1].float(), [a[0, :, -1, :].float() for a in out.attentions]


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma3"])
def test_recorded_signals_equal_eager_recomputation_in_a_padded_batch(arch):
    """Entropy, greedy-token probability, every head's attention on the prompt less its response header, and on the
    target, and where each retrieval head looked, step by step, for two prompts of different lengths (and headers) decoded as one left-padded batch (a slice
    off by the padding or by the header would fail one of them)."""
    model = tiny_model(arch)
    prompts = [_prompt(1, 21), _prompt(2, 13)]
    targets, headers = [list(range(2, 8)), [3, 9, 10]], [0, 3]
    # the longer prompt stops first: the batch then trims its left padding, and the shorter row's keys shift
    requests = [DecodeRequest(p, n, ["none"], target=t, response_header=h)
                for p, n, t, h in zip(prompts, (3, 6), targets, headers)]
    gens = TraceEngine(model).generate_batch(requests, batch_size=2)
    for prompt, target, header, (gen,) in zip(prompts, targets, headers, gens):
        seq = list(prompt)
        for step in gen.steps:
            logits, rows = _eager(model, seq)
            p = torch.softmax(logits, dim=-1)
            assert step.entropy == pytest.approx(float(-(p * p.log()).sum()), abs=1e-4)
            assert step.token_prob == pytest.approx(float(p.max()), abs=1e-5)
            expected = torch.stack([r[:, : len(prompt) - header].sum(dim=-1) for r in rows])
            assert torch.allclose(step.context_mass, expected, atol=1e-5)
            assert torch.allclose(step.target_mass, torch.stack([r[:, target].sum(dim=-1) for r in rows]), atol=1e-5)
            # where each retrieval head looked (TRACE_FORMAT 6): eager's argmax, in the prompt's own positions; an Eq. 1
            # head looked at a needle token holding the token the step emits
            assert step.attended == [int(rows[layer][head].argmax()) for layer, head in step.heads]
            assert all(pos in target and seq[pos] == step.token_id for pos in step.attended)
            seq.append(step.token_id)


def test_untraced_steps_record_no_signals():
    gen = TraceEngine(tiny_model("llama")).generate(_prompt(1, 12), 3)
    assert all(s.entropy is None and s.context_mass is None and s.target_mass is None for s in gen.steps)
    assert mass_rows(gen) == {}


def test_trace_format_3_signals_and_sidecar_round_trip(tmp_path):
    model = tiny_model("qwen2")
    engine = TraceEngine(model)
    gen = engine.generate(_prompt(3, 16), 5, target=[2, 3, 4], record_hidden=True)
    line = generation_line("t", 0, gen, "text", [2, 3, 4])
    assert TRACE_FORMAT >= 3
    assert all(set(s) >= {"entropy", "token_prob"} for s in line["steps"])
    assert line["steps"][0]["token_prob"] == round(gen.steps[0].token_prob, 6)
    hidden = np.stack([s.hidden.numpy() for s in gen.steps])
    masses = mass_rows(gen)
    mass = masses["context_mass"]
    assert mass.shape == masses["target_mass"].shape == (5, engine.num_layers * engine.num_heads)
    line["vectors"] = append_vectors(tmp_path / "t.vectors.bin", hidden, score_matrix(gen.steps, 3, 4), "float32",
                                     masses=masses, response_header=2)
    json.dumps(line)
    got_hidden, got_scores = read_vectors(tmp_path / "t.jsonl", line)
    assert np.array_equal(got_hidden, hidden) and np.array_equal(read_context_mass(tmp_path / "t.jsonl", line), mass)
    assert np.array_equal(read_mass(tmp_path / "t.jsonl", line, "target_mass"), masses["target_mass"])
    assert line["vectors"]["context_mass"]["response_header"] == 2
    # a line written with context_mass alone (TRACE_FORMAT 3-4) still reads it; its target_mass is one clear error
    only = {"context_mass": mass}
    old = {"doc_id": 8, "vectors": append_vectors(tmp_path / "o.vectors.bin", hidden, np.zeros((5, 12)), "float32", masses=only)}
    assert np.array_equal(read_context_mass(tmp_path / "o.jsonl", old), mass)
    with pytest.raises(ValueError, match="document 8 has no target_mass .*TRACE_FORMAT 5"):
        read_mass(tmp_path / "o.jsonl", old, "target_mass")
    older = {"doc_id": 7, "vectors": {k: v for k, v in line["vectors"].items() if k != "context_mass"}}
    with pytest.raises(ValueError, match="document 7 has no context_mass .*TRACE_FORMAT 3"):
        read_context_mass(tmp_path / "t.jsonl", older)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_attended_positions_are_where_each_retrieval_head_looked(arch):
    """On prompts where Eq. 1 fires (the model's own loops), in a left-padded batch whose rows stop at different
    steps: each step's ``attended`` is eager attention's argmax of every head in ``heads``, in the prompt's own
    positions, and that position is a needle token holding the token the step emits."""
    from test_trace_engine import _copying_prompt

    model = tiny_model(arch)
    engine = TraceEngine(model)
    prompt, needle = _copying_prompt(engine)
    short = prompt[3:]
    requests = [DecodeRequest(prompt, 4, ["none"], target=needle),
                DecodeRequest(short, 8, ["none"], target=[i - 3 for i in needle if i >= 3])]
    gens = engine.generate_batch(requests, batch_size=2)
    looked = 0
    for request, (gen,) in zip(requests, gens):
        seq = list(request.prompt_ids)
        for step in gen.steps:
            _, rows = _eager(model, seq)
            assert step.attended == [int(rows[layer][head].argmax()) for layer, head in step.heads]
            assert all(pos in request.target and seq[pos] == step.token_id for pos in step.attended)
            looked += len(step.attended)
            seq.append(step.token_id)
    assert looked > 0, "no retrieval head fired: the test would check nothing"
