"""Batched decoding equals one-at-a-time decoding: same tokens, head sets, re-runs and hidden states.

Tiny random models of six architectures (sliding windows included). Prompts of different lengths share a
batch (left padding), every masking condition is a row, and rows stop at different steps.
"""

from __future__ import annotations

import pytest
import torch

from dynheads.models.engine import DecodeRequest, DynamicMask, FixedMask, TraceEngine, Unmasked
from dynheads.models.engine.scores import ReasoningScore

from tiny_models import ARCHITECTURES, tiny_model

NEW = 8
LENGTHS = (21, 14, 27)  # different lengths: the batch is left-padded; 21 and 27 exceed the sliding window
STATIC = ((0, 1), (2, 3))
CONDITIONS = [Unmasked(), DynamicMask(), FixedMask("static", STATIC), FixedMask("random", ((1, 0),)),
              DynamicMask(1)]


def _prompt(seed: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (n,), generator=g).tolist()


def _requests(engine: TraceEngine, eq2: bool = False, stop_after: dict[int, int] | None = None) -> list[DecodeRequest]:
    """Prompts whose 'needle' is copied by the model itself (its own greedy continuation, planted twice), so
    Eq. 1 heads exist; ``stop_after[i]``: request i stops after that many tokens."""
    out = []
    for i, n in enumerate(LENGTHS):
        start = _prompt(10 + i, n - 6)
        prompt = start + engine.generate(start, 6).token_ids
        target = list(range(n - 6, n))
        limit = (stop_after or {}).get(i)
        stop = None if limit is None else (lambda generated, limit=limit: len(generated) >= limit)
        kwargs = {"target": target, "score": ReasoningScore(1, 2, 0.2)} if eq2 else {"target": target}
        out.append(DecodeRequest(prompt, NEW, CONDITIONS, stop=stop, record_hidden=True, **kwargs))
    return out


def _same(batched, single, arch: str) -> None:
    for gen_b, gen_s in zip(batched, single):
        assert gen_b.condition == gen_s.condition
        assert gen_b.token_ids == gen_s.token_ids, (arch, gen_b.condition)
        for b, s in zip(gen_b.steps, gen_s.steps):
            assert (b.heads, b.gated, b.heads_after, b.ungated_token_id) == (s.heads, s.gated, s.heads_after, s.ungated_token_id)
            torch.testing.assert_close(b.hidden, s.hidden, atol=1e-4, rtol=1e-4)
            if s.scores is not None:
                torch.testing.assert_close(torch.tensor(b.scores), torch.tensor(s.scores), atol=2e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batched_equals_one_at_a_time_for_every_condition(arch):
    engine = TraceEngine(tiny_model(arch))
    requests = _requests(engine, stop_after={1: 3, 2: 5})  # rows leave the batch at steps 3 and 5
    batched = engine.generate_batch(requests, batch_size=len(requests))
    for request, gens in zip(requests, batched):
        single = [engine.generate_batch([DecodeRequest(request.prompt_ids, NEW, [c], request.target, stop=request.stop,
                                                       record_hidden=True)], batch_size=1)[0][0] for c in CONDITIONS]
        _same(gens, single, arch)
    assert [len(g[0].steps) for g in batched] == [NEW, 3, 5]
    assert any(s.gated and s.ungated_token_id is not None for g in batched for gen in g for s in gen.steps)  # re-runs happened


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_batched_equals_one_at_a_time_under_eq2(arch):
    engine = TraceEngine(tiny_model(arch))
    requests = _requests(engine, eq2=True)
    batched = engine.generate_batch(requests, batch_size=2)  # 3 prompts: a batch of 2, then 1
    for request, gens in zip(requests, batched):
        single = engine.generate_batch([request], batch_size=1)[0]
        _same(gens, single, arch)


def test_prefills_are_held_once_and_freed_when_their_rows_leave():
    engine = TraceEngine(tiny_model("llama"))
    prompts = [_prompt(1, 20), _prompt(2, 12)]
    batch = engine.batch(prompts, [0, 0, 0, 1, 1])
    layer = batch.cache.layers[0]
    assert layer.prefix_keys.shape[0] == 2 and layer.prefix_keys.shape[2] == 19  # one prefill per prompt, padded to 19
    assert layer.keys.shape[2] == 0  # rows hold nothing of their own yet
    batch.step(torch.tensor([[prompts[0][-1]]] * 3 + [[prompts[1][-1]]] * 2))
    assert layer.keys.shape[:3] == (5, layer.prefix_keys.shape[1], 1)
    batch.select([3, 4])  # the first prompt's rows stop: its prefill and the padding go
    assert layer.prefix_keys.shape[0] == 1 and layer.prefix_keys.shape[2] == 11 and batch.pad.tolist() == [0, 0]
    forked = batch.fork()
    assert forked.cache.layers[0].prefix_keys.data_ptr() == layer.prefix_keys.data_ptr()  # nothing copied
    forked.step(torch.tensor([[5], [6]]))
    assert layer.keys.shape[2] == 1 and forked.cache.layers[0].keys.shape[2] == 2  # the original is untouched


def test_a_batch_step_equals_the_rows_stepped_alone():
    """The step API itself: per-row gates, a per-row re-run, and left padding, against one-row batches."""
    engine = TraceEngine(tiny_model("qwen2"))
    prompts = [_prompt(4, 16), _prompt(5, 9)]
    keep = torch.ones(2, engine.num_layers, engine.num_heads)
    keep[1, 1, 2] = 0
    batch = engine.batch(prompts, [0, 1])
    tokens = torch.tensor([[prompts[0][-1]], [prompts[1][-1]]])
    both = batch.step(tokens, keep=keep, record=True)
    again = batch.rerun([1], tokens[1:], keep=torch.ones(1, engine.num_layers, engine.num_heads), record=True)
    alone = [engine.batch([p], [0]) for p in prompts]
    one = [alone[0].step(tokens[:1], keep=keep[:1], record=True), alone[1].step(tokens[1:], record=True)]
    torch.testing.assert_close(both.logits[0], one[0].logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again.logits[0], one[1].logits[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both.logits[1], again.logits[0], atol=1e-4)  # the gate mattered
    pad = int(batch.pad[1])
    for layer in range(engine.num_layers):
        torch.testing.assert_close(again.rows[layer][0, :, pad:], one[1].rows[layer][0], atol=1e-6, rtol=1e-5)
        assert again.rows[layer][0, :, :pad].abs().max() == 0  # padding gets no attention
    # the re-run replaced row 1's newest position: the next step continues from the ungated state
    nxt = torch.tensor([[7], [7]])
    step2 = batch.step(nxt)
    torch.testing.assert_close(step2.logits[1], alone[1].step(nxt[1:]).logits[0], atol=1e-5, rtol=1e-5)


def test_a_batch_that_does_not_fit_is_split_with_one_line(monkeypatch, capsys):
    import dynheads.models.engine.trace_engine as engine_module

    engine = TraceEngine(tiny_model("llama"))
    requests = _requests(engine)
    whole = engine.generate_batch(requests, batch_size=3)
    one_prompt = engine.batch_bytes(requests, [0])
    monkeypatch.setattr(engine_module, "available_bytes", lambda device: int(one_prompt * 1.5))
    split = engine.generate_batch(requests, batch_size=3)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dynheads: a batch")]
    assert len(lines) == 2 and "batches of 2 and 1" in lines[0] and "batches of 1 and 1" in lines[1]
    assert [[g.token_ids for g in gens] for gens in split] == [[g.token_ids for g in gens] for gens in whole]


def test_running_out_of_device_memory_splits_the_batch(monkeypatch, capsys):
    engine = TraceEngine(tiny_model("llama"))
    requests = _requests(engine)
    decode = engine._decode

    def small_only(requests_, chunk, rows, on_step):
        if len(chunk) > 1:
            raise torch.OutOfMemoryError("pretend")
        return decode(requests_, chunk, rows, on_step)

    monkeypatch.setattr(engine, "_decode", small_only)
    gens = engine.generate_batch(requests, batch_size=3)
    assert "ran out of device memory" in capsys.readouterr().err
    assert [len(g) for g in gens] == [len(CONDITIONS)] * 3


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_rows_fed_suffixes_of_different_lengths_equal_rows_fed_alone(arch):
    """Section 5's batched rows: one shared prefill, suffixes of 2 / 5 / 9 tokens (gaps inside the sequence),
    per-row visibility; then lockstep steps. Sliding-window layers must count true distances across the gaps."""
    engine = TraceEngine(tiny_model(arch))
    context = _prompt(7, 16)
    suffixes = [_prompt(8, 2), _prompt(9, 5), _prompt(10, 9)]
    hidden = torch.ones(40, dtype=torch.bool)
    hidden[3:9] = False  # row 1 may not see context positions 3..8
    visible = [None, hidden, None]
    prefix = engine.batch([context + [0]], [0])  # prefills the whole context
    batch = prefix.fork()
    batch.select([0, 0, 0])
    together = batch.feed(suffixes, visible=visible, record=True)
    steps = [batch.step(torch.tensor([[11], [12], [13]]), visible=visible, record=True) for _ in range(3)]
    for r, suffix in enumerate(suffixes):
        alone = prefix.fork()
        first = alone.step(torch.tensor([suffix]), visible=None if visible[r] is None else [visible[r]], record=True)
        torch.testing.assert_close(together.logits[r], first.logits[0], atol=1e-5, rtol=1e-5)
        for step in steps:
            single = alone.step(torch.tensor([[11 + r]]), visible=None if visible[r] is None else [visible[r]], record=True)
            torch.testing.assert_close(step.logits[r], single.logits[0], atol=1e-5, rtol=1e-5)
            for layer in range(engine.num_layers):  # rows over true positions: padding slots read 0
                slots = batch.key_pos[r][: step.rows[layer].shape[-1]] >= 0
                torch.testing.assert_close(step.rows[layer][r][:, slots], single.rows[layer][0], atol=1e-6, rtol=1e-5)
    if arch != "mistral":  # every mistral layer slides (window 8): hidden positions 3..8 are out of reach anyway
        assert not torch.allclose(together.logits[1], prefix.fork().step(torch.tensor([suffixes[1]])).logits[0], atol=1e-4)
