"""Section 5's context visibility: hidden context positions really are invisible, visible ones really are not.

Tiny random models of six architectures (sliding-window layers included, whose window of 8 is shorter
than the suffix, so windowed layers drop keys while positions are hidden).
"""

from __future__ import annotations

import pytest
import torch

from dynheads.models.engine import TraceEngine
from dynheads.models.rag.algorithm import ContextExample, RagSettings

from tiny_models import ARCHITECTURES, tiny_model

CONTEXT = (6, 30)  # token positions of the context span; 30 .. 39 is the "question"
LENGTH = 40
NEW = 10


def _prompt(seed: int = 3) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (LENGTH,), generator=g).tolist()


def _example(engine: TraceEngine, ids: list[int]) -> ContextExample:
    return ContextExample(engine, ids, range(*CONTEXT), [10, 11, 12], RagSettings(sink_tokens=2), eos=set(), stop=None,
                          token_text=lambda t: f" w{t}")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_everything_visible_equals_plain_greedy_decoding(arch):
    engine = TraceEngine(tiny_model(arch))
    ids = _prompt()
    plain = engine.generate(ids, NEW).token_ids
    example = _example(engine, ids)
    assert example.decode([], NEW, None, record=False).tokens == plain  # the shared prefill, no mask
    # an explicit mask that hides nothing builds the causal / sliding-window rule itself: same tokens
    assert example.decode([], NEW, [CONTEXT], record=True).tokens == plain
    # continuing from a generated prefix recomputes the suffix and still agrees
    assert example.decode(plain[:4], NEW - 4, None, record=False).tokens == plain[4:]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_recorded_rows_put_zero_mass_on_hidden_positions(arch):
    engine = TraceEngine(tiny_model(arch))
    ids = _prompt()
    example = _example(engine, ids)
    windows = [(12, 16)]
    visible = example._visible(LENGTH, windows)
    hidden = [p for p in range(LENGTH) if not visible[p]]
    assert hidden == [p for p in range(*CONTEXT) if not 12 <= p < 16]
    batch = example.prefix.fork()
    with torch.no_grad():
        batch.step(torch.tensor([ids[CONTEXT[1] : -1]]), visible=[visible[: LENGTH - 1]])
        out = batch.step(torch.tensor([ids[-1:]]), record=True, visible=[visible])
    seen_any = False
    for layer in range(engine.num_layers):
        row = out.rows[layer][0]  # [heads, keys], right-aligned
        first = LENGTH - row.shape[-1]
        for p in hidden:
            if p >= first:
                assert torch.all(row[:, p - first] == 0), (layer, p)
        seen_any |= any(p >= first for p in range(12, 16)) and bool(row[:, max(12, first) - first : 16 - first].sum() > 0)
    if arch != "mistral":  # every mistral layer slides (window 8): no layer holds the window's keys from here
        assert seen_any  # the visible window does receive attention on the full-attention layers


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hidden_context_tokens_do_not_change_the_output(arch):
    engine = TraceEngine(tiny_model(arch))
    ids = _prompt()
    changed = list(ids)
    changed[25] = (ids[25] + 7) % 90 + 3  # a hidden position after the visible window
    windows = [(8, 14)]
    a = _example(engine, ids).decode([], NEW, windows, record=True)
    b = _example(engine, changed).decode([], NEW, windows, record=True)
    assert a.tokens == b.tokens and a.entropies == b.entropies  # bitwise equal logits' entropies
    assert all((x == y).all() for x, y in zip(a.rows, b.rows))
    if arch == "mistral":
        return  # every layer slides (window 8): no query of the suffix reaches the visible window at all
    # the same change at a *visible* position does change the logits
    visible_change = list(ids)
    visible_change[10] = (ids[10] + 7) % 90 + 3
    c = _example(engine, visible_change).decode([], NEW, windows, record=True)
    assert c.entropies != a.entropies


def test_forked_prefix_is_untouched_by_its_forks():
    engine = TraceEngine(tiny_model("gemma3"))
    ids = _prompt()
    example = _example(engine, ids)
    layers = example.prefix.cache.layers
    before = [(layer.prefix_keys.clone(), layer.keys.clone()) for layer in layers]
    first = example.decode([], NEW, [], record=True)
    example._memo.clear()
    again = example.decode([], NEW, [], record=True)
    assert first.tokens == again.tokens and first.entropies == again.entropies
    assert all(torch.equal(p, layer.prefix_keys) and torch.equal(k, layer.keys) for (p, k), layer in zip(before, layers))
