"""Head-level KV compression (``kv=``): exactness against eager attention with per-head masks built by hand."""

from __future__ import annotations

import copy

import pytest
import torch

from dynheads.models.engine.batch import Streaming
from dynheads.models.engine import DecodeCondition, DecodeRequest, DecodingError, TraceEngine, Unmasked
from dynheads.models.engine.kv import choose, KVError, KVPolicy, kv_condition, select, static_scores
from dynheads.models.engine.eager_hooks import attention_modules, layer_masks, layer_windows

from test_trace_engine import _copying_prompt
from tiny_models import ARCHITECTURES, tiny_model

SINK, WINDOW = 2, 4
NEW = 8


def _prompt(seed: int = 3, n: int = 21) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (n,), generator=g).tolist()


def _ranking(engine: TraceEngine) -> tuple:
    return tuple((layer, head) for layer in range(engine.num_layers) for head in range(engine.num_heads))[::-1]


def _policy(engine: TraceEngine, strategy: str, budget=0, **kw) -> DecodeCondition:
    return kv_condition(KVPolicy(strategy, budget, SINK, WINDOW, ranking=_ranking(engine), **kw))


class EagerStreaming:
    """Eager attention over the whole sequence, every query row from ``first`` on restricted per head by hand."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = copy.deepcopy(model)
        self.model.set_attn_implementation("eager")
        self.windows = layer_windows(self.model)
        self.heads = self.model.config.num_attention_heads

    def run(self, seq: list[int], first: int, streaming: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(last logits, last-row attentions per layer); ``streaming[step]`` ``[layers, heads]`` for query ``first + step``."""
        n = len(seq)
        q = torch.arange(n)[:, None]
        k = torch.arange(n)[None, :]
        view = (k < SINK) | (k > q - WINDOW)
        with layer_masks(self.model) as masks, torch.no_grad():
            for layer, window in self.windows.items():
                ok = (k <= q) & (k > q - window if window is not None else True)
                ok = ok[None].expand(self.heads, n, n).clone()
                for row in range(first, n):
                    restricted = streaming[row - first][layer]
                    ok[restricted, row] &= view[row]
                masks[layer] = torch.where(ok, 0.0, torch.finfo(torch.float32).min)[None]
            out = self.model(input_ids=torch.tensor([seq]), output_attentions=True)
        return out.logits[0, -1], [a[0, :, -1, :] for a in out.attentions]


def _streaming_of(engine: TraceEngine, step) -> torch.Tensor:
    full = torch.zeros(engine.num_layers, engine.num_heads, dtype=torch.bool)
    for layer, head in step.kv_full:
        full[layer, head] = True
    return ~full


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_full_and_every_head_selected_equal_plain_decoding(arch):
    engine = TraceEngine(tiny_model(arch))
    prompt = _prompt()
    total = engine.num_layers * engine.num_kv_heads
    plain, full, every = engine.generate_many(prompt, NEW, [Unmasked(), _policy(engine, "full"),
                                                            _policy(engine, "static", total)], target=list(range(3, 12)))
    assert full.condition == "kv:full" and every.condition == f"kv:static@{total}"
    for gen in (full, every):
        assert gen.token_ids == plain.token_ids
        assert [s.heads for s in gen.steps] == [s.heads for s in plain.steps]
        assert all(s.kv_kept == (1.0, 1.0) for s in gen.steps)
        assert all(len(s.kv_full) == engine.num_layers * engine.num_heads for s in gen.steps)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_streaming_heads_equal_eager_with_per_head_masks(arch):
    """Every step of static / random / streaming equals an eager forward whose decode rows see only sink + window in
    the streaming heads: the tokens, and attention rows that put exactly zero mass outside the view."""
    model = tiny_model(arch)
    engine, eager = TraceEngine(model), EagerStreaming(model)
    prompt = _prompt(seed=4)
    conditions = [_policy(engine, "static", 2), _policy(engine, "random", 3, seed="x"), _policy(engine, "streaming")]
    gens = engine.generate_many(prompt, NEW, conditions)
    restricted_anywhere = False
    for gen in gens:
        streaming = [_streaming_of(engine, s) for s in gen.steps]
        seq = list(prompt)
        batch = engine.batch([prompt], [0])  # the step API again, recording the rows the engine attended with
        for t, step in enumerate(gen.steps):
            with torch.no_grad():
                out = batch.step(torch.tensor([seq[-1:]]), record=True, stream=Streaming(streaming[t][None], SINK, WINDOW))
            logits, rows = eager.run(seq, len(prompt) - 1, streaming[: t + 1])
            assert int(logits.argmax()) == int(out.logits[0].argmax()) == step.token_id, (gen.condition, t)
            position = len(seq) - 1
            outside = torch.ones(len(seq), dtype=torch.bool)
            outside[:SINK] = False
            outside[max(0, position - WINDOW + 1):] = False
            for layer, row in enumerate(rows):
                mine = out.rows[layer][0]
                torch.testing.assert_close(mine, row.float(), atol=1e-5, rtol=1e-4)
                for head in streaming[t][layer].nonzero().flatten().tolist():
                    assert float(mine[head][outside].sum()) == 0.0
                    restricted_anywhere |= bool(outside.any())
            seq.append(step.token_id)
    assert restricted_anywhere
    assert gens[2].steps[0].kv_kept[0] < 1.0  # streaming kept less than the whole context, measured


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma3"])
def test_measured_share_counts_the_keys_each_head_and_group_saw(arch):
    """The measured shares equal a count by hand: per layer, the keys a head can see (its causal or sliding view,
    restricted to sink + window when streaming); a KV group counts what any of its query heads sees."""
    engine = TraceEngine(tiny_model(arch))
    prompt = _prompt(seed=6)
    gen = engine.generate_many(prompt, 3, [_policy(engine, "static", 3, granularity="head")])[0]
    windows = layer_windows(engine.model)
    group = engine.num_heads // engine.num_kv_heads
    for t, step in enumerate(gen.steps):
        position = len(prompt) - 1 + t
        keys = torch.arange(position + 1)
        streaming = _streaming_of(engine, step)
        head_kept = group_kept = full = 0
        for layer, window in windows.items():
            base = keys > position - window if window is not None else torch.ones_like(keys, dtype=torch.bool)
            narrow = base & ((keys < SINK) | (keys > position - WINDOW))
            counts = torch.tensor([int((narrow if streaming[layer, h] else base).sum()) for h in range(engine.num_heads)])
            head_kept += int(counts.sum())
            group_kept += int(counts.reshape(engine.num_kv_heads, group).amax(dim=1).sum())
            full += int(base.sum())
        assert step.kv_kept == pytest.approx((head_kept / (full * engine.num_heads), group_kept / (full * engine.num_kv_heads)))


def test_a_token_outside_a_streaming_heads_view_leaves_its_output_unchanged():
    """Layer 0 reads the embeddings, so its streaming heads' outputs at a decode step depend only on the tokens in
    their view: changing a prompt token outside it changes nothing there, while a head kept whole changes."""
    model = tiny_model("llama")
    engine = TraceEngine(model)
    module = attention_modules(model)[0]
    outputs = []
    hook = module.o_proj.register_forward_pre_hook(lambda _m, args: outputs.append(args[0][0, -1].clone()))
    streaming = torch.ones(1, engine.num_layers, engine.num_heads, dtype=torch.bool)
    streaming[0, 0, 0] = False  # head (0, 0) keeps the whole context
    try:
        for changed in (False, True):
            prompt = _prompt(seed=8)
            if changed:
                prompt[8] = (prompt[8] + 1) % 96  # position 8: after the 2 sinks, before the last 4 positions
            batch = engine.batch([prompt], [0])
            outputs.clear()
            with torch.no_grad():
                batch.step(torch.tensor([prompt[-1:]]), stream=Streaming(streaming, SINK, WINDOW))
            if not changed:
                before = outputs[-1]
    finally:
        hook.remove()
    after, dim = outputs[-1], before.shape[0] // engine.num_heads
    per_head = lambda v: v.reshape(engine.num_heads, dim)  # noqa: E731
    assert torch.equal(per_head(after)[1:], per_head(before)[1:])
    assert not torch.allclose(per_head(after)[0], per_head(before)[0])


def test_selection_by_kv_group_and_by_head():
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.5, 0.4, 0.8, 0.0]])
    by_head = select(scores, 2, kv_heads=2, granularity="head")
    assert by_head.nonzero().tolist() == [[0, 1], [1, 2]]
    by_group = select(scores, 2, kv_heads=2, granularity="kv")  # groups score 0.9, 0.3, 0.5, 0.8
    assert by_group.tolist() == [[True, True, False, False], [False, False, True, True]]
    ranked = static_scores([(1, 3), (0, 0)], 2, 4)
    assert ranked[1, 3] > ranked[0, 0] > 0 and ranked[0, 1] == 0


def test_policy_errors_are_one_clear_line():
    with pytest.raises(KVError, match="unknown kv strategy"):
        KVPolicy("sometimes")
    with pytest.raises(KVError, match="fraction"):
        KVPolicy("static", 1.5)
    with pytest.raises(KVError, match="kv_granularity"):
        KVPolicy("static", 2, granularity="layer")
    engine = TraceEngine(tiny_model("llama"))
    with pytest.raises(KVError, match="has 6"):
        engine.generate(_prompt(), 2, mask="none") and engine.generate_many(_prompt(), 2, [_policy(engine, "static", 7)])
    with pytest.raises(DecodingError, match="kv=observed@2 needs target"):
        engine.generate_many(_prompt(), 2, [_policy(engine, "observed", 2)])
    with pytest.raises(DecodingError, match="kv_probe"):
        engine.generate_many(_prompt(), 2, [_policy(engine, "dynamic", 2)])


class LinearPredictor:
    """A fixed random map from the hidden state to head scores (a stand-in probe that depends on its input)."""

    def __init__(self, hidden: int, heads: int) -> None:
        self.weight = torch.randn(hidden, heads, generator=torch.Generator().manual_seed(11))
        self.seen: list[torch.Tensor] = []

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        self.seen.append(hidden.clone())
        return hidden.float() @ self.weight


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_dynamic_chooses_each_step_from_the_previous_steps_hidden_state(arch):
    """Step 0 takes the static choice (no previous step); step t the predictor's top units for step t - 1's final
    hidden state; every step then equals the eager replay restricted to that choice."""
    model = tiny_model(arch)
    engine, eager = TraceEngine(model), EagerStreaming(model)
    predictor = LinearPredictor(model.config.hidden_size, engine.num_layers * engine.num_heads)
    prompt = _prompt(seed=9)
    condition = _policy(engine, "dynamic", 2, predictor=predictor)
    request = DecodeRequest(prompt, NEW, [condition, _policy(engine, "static", 2)], record_hidden=True)
    dynamic, static = engine.generate_batch([request])[0]
    assert dynamic.steps[0].kv_full == static.steps[0].kv_full
    choices = {tuple(map(tuple, s.kv_full)) for s in dynamic.steps}
    assert len(choices) > 1, "the predictor never changed the choice"
    for t in range(1, len(dynamic.steps)):
        expected = choose(condition.policy, engine, predictor(dynamic.steps[t - 1].hidden[None])[0])
        assert torch.equal(~_streaming_of(engine, dynamic.steps[t]), expected)
    streaming = [_streaming_of(engine, s) for s in dynamic.steps]
    seq = list(prompt)
    for t, step in enumerate(dynamic.steps):
        assert int(eager.run(seq, len(prompt) - 1, streaming[: t + 1])[0].argmax()) == step.token_id
        seq.append(step.token_id)


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_oracle_keeps_the_steps_own_heads_whole_then_reruns_restricted(arch):
    """Per step the unrestricted pass's Eq. 1 heads are kept whole (the budget exceeds them here), the static ranking
    fills the rest, and the emitted token is the restricted re-run's, which the eager replay reproduces."""
    model = tiny_model(arch)
    engine, eager = TraceEngine(model), EagerStreaming(model)
    prompt, needle = _copying_prompt(engine)  # a prompt on which Eq. 1 fires at many steps
    budget = 8
    oracle, full = engine.generate_many(prompt, NEW, [_policy(engine, "observed", budget, granularity="head"),
                                                      _policy(engine, "full")], target=needle)
    assert oracle.steps[0].heads == full.steps[0].heads  # the oracle's first pass is unrestricted
    assert any(s.heads for s in oracle.steps)
    ranking = list(_ranking(engine))
    for step in oracle.steps:
        kept = {tuple(h) for h in step.kv_full}
        heads = [tuple(h) for h in step.heads]
        assert len(kept) == budget
        if len(heads) <= budget:
            assert kept == set(heads) | set([h for h in ranking if h not in heads][: budget - len(heads)])
        else:
            assert kept < set(heads)
    streaming = [_streaming_of(engine, s) for s in oracle.steps]
    seq = list(prompt)
    for t, step in enumerate(oracle.steps):
        assert int(eager.run(seq, len(prompt) - 1, streaming[: t + 1])[0].argmax()) == step.token_id
        seq.append(step.token_id)


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma3"])
def test_verify_replays_kv_lines_from_the_trace_alone_and_catches_a_wrong_choice(arch):
    """``verify`` rebuilds every step's per-head masks from a kv line (sink, window, kv_full) and agrees on every
    step of static, oracle and streaming lines; a line whose recorded choice is not what ran is caught."""
    from dynheads import traces
    from dynheads.models.verify import verify_records

    model = tiny_model(arch)
    engine = TraceEngine(model)
    prompt, needle = _copying_prompt(engine)
    conditions = [_policy(engine, "static", 2), _policy(engine, "observed", 3), _policy(engine, "streaming")]
    gens = engine.generate_many(prompt, NEW, conditions, target=needle)
    view = {"sink": SINK, "window": WINDOW, "granularity": "kv"}
    lines = [traces.generation_line("toy", 0, g, "", needle, kv=view) for g in gens]  # the one writer of trace lines
    assert all({k: v for k, v in line["kv"].items() if k != "full"} == view and list(line)[-1] == "kv" for line in lines)
    for fixed in (lines[0], lines[2]):  # static and streaming: one choice, written once for the line
        assert "full" in fixed["kv"] and not any("kv_full" in step for step in fixed["steps"])
        assert all(traces.kv_full(fixed, step) == fixed["kv"]["full"] for step in fixed["steps"])
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    check = verify_records(eager, lines)
    assert check["kv_lines"] == 3 and check["agreement"] == 1.0, check
    assert any(s.get("heads_after") for s in lines[1]["steps"]) or any(s["heads"] for s in lines[1]["steps"])
    every = [[layer, head] for layer in range(engine.num_layers) for head in range(engine.num_heads)]
    tampered = copy.deepcopy(lines[2])
    tampered["kv"]["full"] = every  # claims the whole cache was kept
    assert verify_records(eager, [tampered])["agreement"] < 1.0
    old = {k: v for k, v in lines[0].items() if k != "kv"}
    assert verify_records(eager, [old])["unchecked"][0].startswith("the kv:static@2 line")


def test_a_new_kv_control_is_a_new_class_not_an_engine_edit():
    """A control the engine has never heard of (here: the static ranking read backwards, fixed per generation) runs
    through the decode loop, the trace writer and the independent verifier by subclassing alone."""
    from dataclasses import dataclass

    from dynheads import traces
    from dynheads.models.engine.kv import KVCompression
    from dynheads.models.verify import verify_records

    @dataclass(frozen=True)
    class BackwardsKV(KVCompression):
        def fixed_choice(self, engine):
            return choose(self.policy, engine, 1.0 - self.ranked(engine))

    model = tiny_model("llama")
    engine = TraceEngine(model)
    prompt, needle = _copying_prompt(engine)
    policy = KVPolicy("static", 2, SINK, WINDOW, ranking=_ranking(engine))
    backwards, static = engine.generate_many(prompt, NEW, [BackwardsKV(policy=policy), kv_condition(policy)], target=needle)
    assert backwards.steps[0].kv_full != static.steps[0].kv_full  # a different choice...
    assert len({tuple(map(tuple, s.kv_full)) for s in backwards.steps}) == 1  # ...fixed for the generation
    line = traces.generation_line("toy", 0, backwards, "", needle, kv={"sink": SINK, "window": WINDOW, "granularity": "kv"})
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert verify_records(eager, [line])["agreement"] == 1.0


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_the_controls_frozen_and_redrawn_are_what_they_say_and_verify_from_the_trace(arch):
    """frozen: dynamic's step-0 static choice, then its first probe choice (step 1) kept to the end; redrawn: each
    step's units are a fresh seeded draw. Both replay exactly from their trace lines alone."""
    from dynheads import traces
    from dynheads.models.engine.kv import random_scores
    from dynheads.models.verify import verify_records

    model = tiny_model(arch)
    engine = TraceEngine(model)
    predictor = LinearPredictor(model.config.hidden_size, engine.num_layers * engine.num_heads)
    prompt = _prompt(seed=9)
    mean = tuple(torch.linspace(1.0, 0.0, engine.num_layers * engine.num_heads).tolist())
    conditions = [_policy(engine, name, 2, predictor=predictor, seed="doc", probe_mean=mean)
                  for name in ("dynamic", "frozen", "redrawn", "probe_mean")]
    dynamic, frozen, redrawn, probe_mean = engine.generate_batch([DecodeRequest(prompt, NEW, conditions)])[0]
    choice = lambda step: tuple(map(tuple, step.kv_full))  # noqa: E731
    assert [choice(s) for s in frozen.steps[:2]] == [choice(s) for s in dynamic.steps[:2]]
    assert {choice(s) for s in frozen.steps[1:]} == {choice(frozen.steps[1])}  # kept from step 1 on
    assert len({choice(s) for s in dynamic.steps[1:]}) > 1, "the stand-in probe never moved, so frozen tests nothing"
    for t, step in enumerate(redrawn.steps):
        drawn = choose(conditions[2].policy, engine, random_scores(engine.num_layers, engine.num_heads, f"doc-step{t}"))
        assert torch.equal(~_streaming_of(engine, step), drawn), t
    assert len({choice(s) for s in redrawn.steps}) > 1
    view = {"sink": SINK, "window": WINDOW, "granularity": "kv"}
    lines = [traces.generation_line("toy", 0, g, "", None, kv=view) for g in (frozen, redrawn, probe_mean)]
    assert "full" in lines[2]["kv"]  # a fixed choice is written once per line
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert verify_records(eager, lines)["agreement"] == 1.0


def test_probe_mean_is_a_fixed_ranking_and_the_controls_equal_dynamic_under_a_constant_probe():
    """With a probe whose output never changes, dynamic's per-step choice is one fixed choice: frozen gives dynamic's
    answer and choices step for step, and probe_mean (that constant as its mean) gives dynamic's choice at every step
    after the first. With a moving probe, probe_mean keeps one choice while dynamic changes its."""
    model = tiny_model("llama")
    engine = TraceEngine(model)
    units = engine.num_layers * engine.num_heads
    constant = torch.linspace(1.0, 0.0, units)  # index order: unlike the static ranking (reversed index order)

    def constant_probe(hidden: torch.Tensor) -> torch.Tensor:
        return constant.expand(hidden.shape[0], -1)

    prompt = _prompt(seed=9)
    names = ("dynamic", "frozen", "probe_mean")
    conditions = [_policy(engine, name, 2, predictor=constant_probe, probe_mean=tuple(constant.tolist())) for name in names]
    dynamic, frozen, probe_mean = engine.generate_batch([DecodeRequest(prompt, NEW, conditions)])[0]
    choice = lambda step: tuple(map(tuple, step.kv_full))  # noqa: E731
    assert frozen.token_ids == dynamic.token_ids and [choice(s) for s in frozen.steps] == [choice(s) for s in dynamic.steps]
    assert [choice(s) for s in probe_mean.steps[1:]] == [choice(s) for s in dynamic.steps[1:]]
    assert choice(probe_mean.steps[0]) != choice(dynamic.steps[0])  # dynamic's first step takes the static choice

    moving = LinearPredictor(model.config.hidden_size, units)
    conditions = [_policy(engine, name, 2, predictor=moving, probe_mean=tuple(constant.tolist())) for name in names]
    dynamic, _, probe_mean = engine.generate_batch([DecodeRequest(prompt, NEW, conditions)])[0]
    assert {choice(s) for s in probe_mean.steps} == {choice(probe_mean.steps[0])}
    assert len({choice(s) for s in dynamic.steps[1:]}) > 1


def test_probe_mean_without_the_probes_mean_is_one_clear_line():
    engine = TraceEngine(tiny_model("llama"))
    with pytest.raises(DecodingError, match="kv=probe_mean needs the offset-1 probe's mean training prediction"):
        engine.generate_many(_prompt(), 2, [_policy(engine, "probe_mean", 2)])


def test_the_old_name_oracle_reads_as_observed_with_one_warning():
    from dynheads.spec import ConditionSpec

    with pytest.warns(FutureWarning, match="kv=oracle is now kv=observed"):
        assert ConditionSpec.parse("kv:oracle@0.3").name == "kv:observed@0.3"
