"""Exactness of the trace engine against eager attention on tiny models of six architectures."""

from __future__ import annotations

import copy

import pytest
import torch

from dynheads.metrics.retrieval import copy_paste_heads
from dynheads.models.attention import PROBE, UnsupportedAttentionError, install
from dynheads.models.engine import DecodingError, TraceEngine

from tiny_models import ARCHITECTURES, SLIDING_WINDOW, tiny_model

PROMPT_LEN = 21  # longer than the sliding window, so windowed layers really drop keys


def _prompt(seed: int = 1, n: int = PROMPT_LEN) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (n,), generator=g).tolist()


def _eager_last_rows(model: torch.nn.Module, ids: list[int]) -> list[torch.Tensor]:
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        out = eager(input_ids=torch.tensor([ids]), output_attentions=True)
    return [a[0, :, -1, :].float() for a in out.attentions]


def _engine_last_rows(engine: TraceEngine, ids: list[int]) -> list[torch.Tensor]:
    cache = engine._new_cache()
    with torch.no_grad():
        engine._forward(torch.tensor([ids[:-1]]), cache, record=False, keep={})
        cache.crop(0)
        engine._forward(torch.tensor([ids[-1:]]), cache, record=True, keep={})
    rows = []
    for layer in range(engine.num_layers):
        row = PROBE.rows[layer][0]
        full = torch.zeros(row.shape[0], len(ids))
        full[:, len(ids) - row.shape[-1] :] = row  # keys are right-aligned
        rows.append(full)
    PROBE.rows = {}
    return rows


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_recorded_rows_equal_eager_attentions(arch):
    model = tiny_model(arch)
    engine = TraceEngine(model)
    ids = _prompt()
    # At the prompt's last token and again deeper into the sequence (a decode step with a longer cache).
    for length in (PROMPT_LEN, PROMPT_LEN - 7):
        expected = _eager_last_rows(model, ids[:length])
        got = _engine_last_rows(engine, ids[:length])
        for layer, (e, g) in enumerate(zip(expected, got)):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4, msg=f"{arch} layer {layer}")
            assert torch.equal(g.argmax(-1), e.argmax(-1))


def test_sliding_window_rows_exclude_old_keys():
    model = tiny_model("gemma3")
    engine = TraceEngine(model)
    rows = _engine_last_rows(engine, _prompt())
    # layers 0 and 1 are sliding: nothing older than the window gets probability
    for layer in (0, 1):
        assert rows[layer][:, : PROMPT_LEN - SLIDING_WINDOW].abs().max() == 0
        torch.testing.assert_close(rows[layer].sum(-1), torch.ones(rows[layer].shape[0]))
    assert rows[2][:, :PROMPT_LEN - SLIDING_WINDOW].sum() > 0  # the full layer sees everything


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gating_equals_removing_head_by_hand(arch):
    """Gate head (1, 2): logits must equal plain sdpa with that head's slice zeroed before o_proj."""
    layer, head = 1, 2
    model = tiny_model(arch)
    ids = _prompt(seed=3)
    reference = copy.deepcopy(model)
    head_dim = reference.config.hidden_size // reference.config.num_attention_heads
    head_dim = getattr(reference.config, "head_dim", None) or head_dim

    def zero_head(_module, args):
        x = args[0].clone()
        x[:, -1, head * head_dim : (head + 1) * head_dim] = 0
        return (x,)

    o_proj = reference.model.layers[layer].self_attn.o_proj
    cache = None
    with torch.no_grad():
        out = reference(input_ids=torch.tensor([ids[:-1]]), use_cache=True)
        cache = out.past_key_values
        handle = o_proj.register_forward_pre_hook(zero_head)
        expected = reference(input_ids=torch.tensor([ids[-1:]]), cache=cache, use_cache=True).logits[0, -1]
        handle.remove()
        plain = reference(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]

    engine = TraceEngine(model)
    keep = engine._keep_from_mask(engine.gate_mask([(layer, head)]))
    cache = engine._new_cache()
    with torch.no_grad():
        engine._forward(torch.tensor([ids[:-1]]), cache, record=False, keep={})
        cache.crop(0)
        got = engine._forward(torch.tensor([ids[-1:]]), cache, record=False, keep=keep)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-4)  # the gate really changed something


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_traced_greedy_matches_generate(arch):
    model = tiny_model(arch)
    ids = _prompt(seed=5)
    with torch.no_grad():
        reference = model.generate(
            torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0
        )[0, len(ids):].tolist()
    engine = TraceEngine(model)
    needle = list(range(4, 12))
    traced = engine.generate(ids, 12, needle_indices=needle)
    assert traced.token_ids == reference
    untraced = engine.generate(ids, 12)
    assert untraced.token_ids == reference


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_traced_heads_match_eager_recomputation(arch):
    """Every step's Eq. 1 set equals the one computed from a full eager forward of the same prefix."""
    model = tiny_model(arch)
    ids = _prompt(seed=7)
    needle = list(range(2, 18))
    gen = TraceEngine(model).generate(ids, 10, needle_indices=needle)
    seq = list(ids)
    for step in gen.steps:
        rows = _eager_last_rows(model, seq)
        assert step.heads == copy_paste_heads(rows, seq, needle, step.token_id)
        seq.append(step.token_id)


def _self_copying_prompt(engine: TraceEngine) -> list[int]:
    """A prompt of one repeated token that the model continues with that same token (so Eq. 1 fires)."""
    for token in range(3, 96):
        prompt = [token] * 12 + [7, 9, 4]
        if engine.generate(prompt, 1).token_ids == [token]:
            return prompt
    raise AssertionError("no self-copying token in this tiny model; change the seed")


def test_dynamic_mask_reruns_step_with_found_heads_gated():
    model = tiny_model("llama")
    engine = TraceEngine(model)
    ids = _self_copying_prompt(engine)
    gen = engine.generate(ids, 6, needle_indices=list(range(len(ids))), mask="dynamic")
    assert gen.steps[0].heads, "the repeated token is the argmax of some head and is generated"
    plain = engine.generate(ids, 1)
    assert gen.steps[0].ungated_token_id == plain.token_ids[0]
    for step in gen.steps:
        assert step.gated == step.heads
    # replay: gating the same heads step by step by hand (static mask per step) reproduces each token
    prefix = list(ids)
    for step in gen.steps:
        one = engine.generate(prefix, 1, mask="static", gate_heads=step.heads)
        assert one.token_ids == [step.token_id]
        prefix.append(step.token_id)


def test_bad_inputs_give_clear_errors():
    model = tiny_model("llama")
    engine = TraceEngine(model)
    with pytest.raises(DecodingError, match="unknown mask mode"):
        engine.generate([1, 2, 3], 2, mask="sometimes")
    with pytest.raises(DecodingError, match="exceeds this model's 256 positions"):
        engine.generate(list(range(3, 90)) * 3, 20)
    with pytest.raises(DecodingError, match="needle was lost"):
        engine.generate([5, 6, 7], 2, needle_indices=[10])
    with pytest.raises(DecodingError, match="does not exist"):
        engine.generate([5, 6, 7], 2, mask="static", gate_heads=[(9, 0)])


def test_softcap_is_refused():
    from transformers import AutoModelForCausalLM, Gemma2Config

    config = Gemma2Config(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, attn_logit_softcapping=50.0,
    )
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedAttentionError, match="softcapping"):
        install(model)
