"""Where batching is most exposed: KV compression on left-padded batches, and the position ids the model receives.

Every reference here is written in this file: an eager forward of one prompt alone, whose per-layer, per-head
additive mask is built by hand from the recorded choice (``kv_full``), the sink, the window and the layer's sliding
window. Nothing from the production mask builders (``attention.StreamView``, ``eager_hooks``) is imported, so a bug
shared by the engine and its replay (``verify``) cannot hide here.
"""

from __future__ import annotations

import copy

import pytest
import torch

from dynheads.models.engine import DecodeCondition, DecodeRequest, DynamicMask, FixedMask, TraceEngine, Unmasked
from dynheads.models.engine.kv import KVPolicy, kv_condition

from tiny_models import COMMON, tiny_model

SINK, WINDOW = 2, 4
NEW = 6
LENGTHS = (23, 14, 29)  # left-padded by up to 15 slots; 23 and 29 exceed the sliding window (8)


def _prompt(seed: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (n,), generator=g).tolist()


class LinearPredictor:
    """A fixed random map from the hidden state to head scores: a stand-in probe whose choice moves with its input."""

    def __init__(self, hidden: int, heads: int) -> None:
        self.weight = torch.randn(hidden, heads, generator=torch.Generator().manual_seed(11))

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ self.weight


def _conditions(engine: TraceEngine) -> list[DecodeCondition]:
    ranking = tuple((layer, head) for layer in range(engine.num_layers) for head in range(engine.num_heads))[::-1]
    predictor = LinearPredictor(engine.model.config.hidden_size, engine.num_layers * engine.num_heads)
    policy = lambda strategy, budget=0, **kw: kv_condition(KVPolicy(strategy, budget, SINK, WINDOW, ranking=ranking, **kw))  # noqa: E731
    return [policy("static", 2), policy("streaming"), policy("random", 3, seed="r"), policy("dynamic", 2, predictor=predictor)]


def _requests(engine: TraceEngine) -> list[DecodeRequest]:
    """Prompts of three lengths whose last six tokens are the model's own continuation (so Eq. 1 heads exist)."""
    out = []
    for i, n in enumerate(LENGTHS):
        start = _prompt(20 + i, n - 6)
        prompt = start + engine.generate(start, 6).token_ids
        out.append(DecodeRequest(prompt, NEW, _conditions(engine), target=list(range(n - 6, n)), record_hidden=True))
    return out


class EagerReference:
    """One prompt alone under eager attention; each layer's mask is swapped for one built here, per head."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = copy.deepcopy(model)
        self.model.set_attn_implementation("eager")
        config = self.model.config
        types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
        window = getattr(config, "sliding_window", None)
        self.windows = [window if (kind == "sliding_attention" or (window and kind == "full_attention" and
                                                                  config.model_type == "mistral")) else None
                        for kind in types]
        self.modules = {m.layer_idx: m for m in self.model.modules() if hasattr(m, "o_proj") and hasattr(m, "layer_idx")}
        self.heads = config.num_attention_heads

    def run(self, seq: list[int], first: int, kept: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(last logits, last-row attention per layer); ``kept[s]``: ``[layers, heads]`` True where query ``first + s``
        keeps the whole context (every other head sees the first SINK keys and the last WINDOW ones)."""
        n = len(seq)
        q, k = torch.arange(n)[:, None], torch.arange(n)[None, :]
        masks = {}
        for layer, window in enumerate(self.windows):
            ok = (k <= q) & ((k > q - window) if window is not None else torch.ones(n, n, dtype=torch.bool))
            ok = ok[None].repeat(self.heads, 1, 1)
            for row in range(first, n):
                streaming = ~kept[row - first][layer]
                ok[streaming, row] &= (k[0] < SINK) | (k[0] > row - WINDOW)
            masks[layer] = torch.where(ok, 0.0, torch.finfo(torch.float32).min)[None]
        hooks = [module.register_forward_pre_hook(
            lambda _m, args, kwargs, layer=layer: (args, {**kwargs, "attention_mask": masks[layer]}), with_kwargs=True)
            for layer, module in self.modules.items()]
        try:
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([seq]), output_attentions=True)
        finally:
            for hook in hooks:
                hook.remove()
        return out.logits[0, -1], [a[0, :, -1, :] for a in out.attentions]


def _kept(engine: TraceEngine, step) -> torch.Tensor:
    kept = torch.zeros(engine.num_layers, engine.num_heads, dtype=torch.bool)
    for layer, head in step.kv_full:
        kept[layer, head] = True
    return kept


@pytest.mark.parametrize("arch", ["llama", "qwen3", "mistral", "phi3", "gemma3"])
def test_kv_strategies_on_a_left_padded_batch_equal_each_prompt_alone_under_eager_per_head_masks(arch):
    """static, streaming, random and dynamic rows of three prompts of different lengths, decoded as one left-padded
    batch: every step's token is the eager reference's argmax over that prompt alone with the recorded per-head
    view, its Eq. 1 heads are the reference's (argmax key in the needle holding the emitted token), the recorded
    choice is the one a one-prompt batch makes, and streaming heads really were restricted somewhere."""
    model = tiny_model(arch)
    engine, eager = TraceEngine(model), EagerReference(model)
    requests = _requests(engine)
    batched = engine.generate_batch(requests, batch_size=len(requests))
    restricted = 0
    for request, gens in zip(requests, batched):
        alone = engine.generate_batch([request], batch_size=1)[0]
        prompt, target = list(request.prompt_ids), set(request.target)
        for gen, single in zip(gens, alone):
            assert [s.kv_full for s in gen.steps] == [s.kv_full for s in single.steps], (arch, gen.condition)
            kept = [_kept(engine, s) for s in gen.steps]
            seq = list(prompt)
            for t, step in enumerate(gen.steps):
                logits, rows = eager.run(seq, len(prompt) - 1, kept[: t + 1])
                assert int(logits.argmax()) == step.token_id, (arch, gen.condition, len(prompt), t)
                heads = sorted([layer, head] for layer, row in enumerate(rows) for head in range(engine.num_heads)
                               if int(row[head].argmax()) in target and seq[int(row[head].argmax())] == step.token_id)
                assert sorted(map(list, step.heads)) == heads, (arch, gen.condition, t)
                outside = torch.ones(len(seq), dtype=torch.bool)
                outside[:SINK] = False
                outside[max(0, len(seq) - WINDOW):] = False
                restricted += int(bool(outside.any()) and bool((~kept[t]).any()))
                seq.append(step.token_id)
    assert restricted > 0
    dynamic = [g for gens in batched for g in gens if g.condition.startswith("kv:dynamic")]
    assert any(len({tuple(map(tuple, s.kv_full)) for s in g.steps}) > 1 for g in dynamic), "the probe never moved"


class PositionRecorder:
    """The ``position_ids`` every forward of the decoder body received (``None``: the model's own arange from 0)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[torch.Tensor | None] = []
        body = model.get_decoder()
        self.hook = body.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, _module, args, kwargs):
        ids = kwargs.get("position_ids")
        self.calls.append(None if ids is None else ids.detach().clone())


def test_a_feed_of_chunks_of_different_lengths_gives_each_row_its_true_positions():
    """Section 5's ``feed`` left-pads chunks of different lengths inside one call: each real token sits at its row's
    next positions (the prompt of n tokens holds n - 1, so its chunk starts at n - 1), padding at 0, never shifted by
    the padding of the prefixes (rows of 23, 14, 29 tokens, padded by up to 15 slots)."""
    engine = TraceEngine(tiny_model("llama"))
    prompts = [_prompt(30 + i, n) for i, n in enumerate(LENGTHS)]
    recorder = PositionRecorder(engine.model)
    try:
        batch = engine.batch(prompts, [0, 1, 2])
        with torch.no_grad():
            batch.feed([[5, 6, 7], [8], [9, 10]])
    finally:
        recorder.hook.remove()
    assert recorder.calls[:3] == [None, None, None]  # the prefills run alone, unpadded: the model's arange from 0
    assert recorder.calls[3].tolist() == [[22, 23, 24], [0, 0, 13], [0, 28, 29]]


def test_decode_steps_receive_each_rows_true_positions():
    """Under left padding, step t of a prompt of n tokens feeds its last token first, at position n - 1 + t: each row's
    positions start at 0 at its own first real token, whatever the padding (a uniform per-row offset would pass every
    logits comparison on RoPE models, so it is asserted here, at the model's input)."""
    engine = TraceEngine(tiny_model("llama"))
    prompts = [_prompt(30 + i, n) for i, n in enumerate(LENGTHS)]
    recorder = PositionRecorder(engine.model)
    try:
        engine.generate_batch([DecodeRequest(p, NEW, ["none"]) for p in prompts], batch_size=len(prompts))
    finally:
        recorder.hook.remove()
    prefills, steps = recorder.calls[: len(prompts)], recorder.calls[len(prompts):]
    assert prefills == [None] * len(prompts)
    order = sorted(LENGTHS, reverse=True)  # rows are batched longest first
    assert len(steps) == NEW
    for t, ids in enumerate(steps):
        assert ids.tolist() == [[n - 1 + t] for n in order], t


def _longrope_model(seed: int = 0) -> torch.nn.Module:
    """A tiny Phi-3 with LongRoPE: short factors up to 16 positions, long ones (and an attention factor) beyond, so
    the rotary embedding is not shift-invariant: the frequencies depend on the absolute position reached."""
    from transformers import AutoModelForCausalLM, Phi3Config

    half = COMMON["hidden_size"] // COMMON["num_attention_heads"] // 2
    config = Phi3Config(**{**COMMON, "pad_token_id": 0}, original_max_position_embeddings=16,
                        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                         "short_factor": [1.0] * half, "long_factor": [1.0 + i for i in range(half)],
                                         "original_max_position_embeddings": 16})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "qkv_proj" in name:
                param.mul_(6.0)
    return model.eval()


def test_a_rotary_embedding_that_is_not_shift_invariant_decodes_batched_exactly_as_alone():
    """LongRoPE picks its frequencies from the largest position of the call: the same tokens at shifted positions give
    other logits (checked first, so the model is really position-sensitive). Prompts past its 16 positions decode
    in a left-padded batch exactly as alone, every condition (tokens and Eq. 1 head sets). transformers chooses the
    frequencies from the batch's largest position, so rows on both sides of 16 would differ in its own batched
    generate too; the prompts here are all past it."""
    model = _longrope_model()
    ids = torch.tensor([_prompt(40, 12)])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        shifted = model(input_ids=ids, position_ids=torch.arange(12)[None] + 10).logits
    assert not torch.allclose(plain, shifted, atol=1e-3)
    engine = TraceEngine(model)
    conditions = [Unmasked(), DynamicMask(), FixedMask("static", ((0, 1), (2, 3)))]
    requests = []
    for i, n in enumerate((19, 26, 31)):
        start = _prompt(50 + i, n - 6)
        prompt = start + engine.generate(start, 6).token_ids
        requests.append(DecodeRequest(prompt, NEW, conditions, target=list(range(n - 6, n))))
    batched = engine.generate_batch(requests, batch_size=len(requests))
    hits = 0
    for request, gens in zip(requests, batched):
        alone = engine.generate_batch([request], batch_size=1)[0]
        for b, s in zip(gens, alone):
            assert b.token_ids == s.token_ids and [x.heads for x in b.steps] == [x.heads for x in s.steps], b.condition
            hits += sum(len(x.heads) for x in b.steps)
    assert hits > 0
