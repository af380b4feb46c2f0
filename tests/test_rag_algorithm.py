"""Algorithm 1 / 2 on a tiny model: what each strategy retrieves, what the thresholds do, what sharing saves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynheads.models.engine import DecodingError, TraceEngine
from dynheads.models.rag.algorithm import ContextExample, RagSettings, context_slice, draft_row, first_sentence
from dynheads.models.rag.strategies import HeadSource, HeadWindows, ProbeHeads, Strategy, rag_strategy
from dynheads.metrics.heads import random_heads

from tiny_models import tiny_model

CONTEXT = (6, 40)
LENGTH = 50
NEW = 8
SUPPORT = list(range(12, 18)) + list(range(30, 34))


def _prompt(seed: int = 4) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (LENGTH,), generator=g).tolist()


def _example(engine: TraceEngine, threshold: float, **kw) -> ContextExample:
    settings = RagSettings(heads=2, threshold=threshold, top_positions=3, cluster_gap=2, window=4, sink_tokens=2, **kw)
    return ContextExample(engine, _prompt(), range(*CONTEXT), SUPPORT, settings, eos=set(), stop=None,
                          token_text=lambda t: f" w{t}")  # every token a content word of one sentence


# planted heads for the tiny models (3 layers x 4 heads): the probe and the calibration both rank (1, 0), (2, 3)
# first; the random strategies draw from the 12 heads, seeded
PLANTED_SCORES = np.zeros(12)
PLANTED_SCORES[[1 * 4 + 0, 2 * 4 + 3]] = [2.0, 1.0]
SOURCE = HeadSource(3, 4, 2, "0-doc", predict=lambda hidden: PLANTED_SCORES, static_heads=lambda: [(1, 0), (2, 3)])


@pytest.fixture(scope="module")
def engine():
    return TraceEngine(tiny_model("llama"))


def test_none_and_full_are_the_hidden_and_the_plain_answers(engine):
    example = _example(engine, threshold=0.0)
    plain = engine.generate(_prompt(), NEW).token_ids
    assert example.answer(Strategy.parse("full"), NEW, SOURCE).token_ids == plain
    none = example.answer(Strategy.parse("none"), NEW, SOURCE)
    assert none.token_ids == example.decode([], NEW, [], record=False).tokens and not none.retrievals


def test_a_threshold_nothing_exceeds_keeps_the_first_draft(engine):
    example = _example(engine, threshold=float("inf"))
    none = example.answer(Strategy.parse("none"), NEW, SOURCE).token_ids
    for name in ("static", "oracle", "dynamic_random"):
        answer = example.answer(Strategy.parse(name), NEW, SOURCE)
        assert answer.token_ids == none and answer.retrievals == [] and answer.drafts == 1


def test_threshold_zero_retrieves_from_the_start_and_reveals_windows(engine):
    example = _example(engine, threshold=0.0, max_retrievals=2)
    static = example.answer(Strategy.parse("static"), NEW, SOURCE)
    assert 1 <= len(static.retrievals) <= 2
    first = static.retrievals[0]
    assert first.step == 0 and first.heads == [(1, 0), (2, 3)]  # one sentence: retracted to its start
    assert first.trigger["score"] > 0 and len(first.trigger["draft"]) == len(example.decode([], NEW, [], record=True).tokens)
    for s, e in first.windows:
        assert CONTEXT[0] <= s < e <= CONTEXT[1]  # merged windows may be longer than one
    assert first.visible_tokens == sum(e - s for s, e in first.windows) <= 3 * 4
    # the regeneration saw exactly those windows: it is the masked decode from the retracted state
    regen = example.decode([], NEW, first.windows, record=False, one_sentence=True).tokens
    assert static.token_ids[: len(regen)] == regen
    oracle = example.answer(Strategy.parse("oracle"), NEW, SOURCE).retrievals[0]
    assert oracle.windows == [(12, 18), (30, 34)] and oracle.precision == oracle.recall == 1.0 and oracle.heads == []


def test_windows_follow_the_chosen_heads_attention(engine):
    example = _example(engine, threshold=0.0)
    rows, hidden = example.inspect([])
    assert hidden.shape == (64,)
    a, top = example.head_windows(rows, [(1, 0), (2, 3)], query=LENGTH - 1)
    b, _ = example.head_windows(rows, [(0, 2)], query=LENGTH - 1)
    assert len(top) == 3 and all(any(s <= p < e for s, e in a) for p in top)  # every top position lies in a window
    assert a and b and a != b  # different heads, different evidence
    # the windows are centred on the chosen heads' strongest context position
    scores = context_slice(rows[0][2].numpy(), LENGTH - 1, *CONTEXT)
    best = CONTEXT[0] + int(np.argmax(scores))
    assert any(s <= best < e for s, e in b)


def test_sharing_one_prefill_changes_no_answer(engine):
    shared = _example(engine, threshold=0.0)
    labels = ("static", "dynamic_random", "oracle", "none", "full")
    together = [shared.answer(Strategy.parse(n), NEW, SOURCE).token_ids for n in labels]
    alone = [_example(engine, threshold=0.0).answer(Strategy.parse(n), NEW, SOURCE).token_ids for n in labels]
    assert together == alone


def test_helpers_and_bad_input():
    assert Strategy.parse("dynamic:10") == rag_strategy("dynamic", 10) and isinstance(Strategy.parse("dynamic"), ProbeHeads) and Strategy.parse("full").label == "full"
    for bad in ("bogus", "full:3", "static:x", "static:0"):
        with pytest.raises(DecodingError):
            Strategy.parse(bad)
    with pytest.raises(ValueError, match="rag_window"):
        RagSettings(window=0)
    assert random_heads(3, 4, 4, "s") == random_heads(3, 4, 4, "s") != random_heads(3, 4, 4, "t")
    row = torch.tensor([[0.1, 0.2, 0.7]])
    np.testing.assert_allclose(draft_row(row, 2), [[0.2, 0.7]])
    np.testing.assert_allclose(draft_row(row, 5), [[0, 0, 0.1, 0.2, 0.7]])
    np.testing.assert_allclose(context_slice(np.array([1.0, 2.0, 3.0]), 9, 5, 9), [0, 0, 1.0, 2.0])  # keys 7..9
    assert first_sentence([1, 2, 3, 4], lambda t: {1: "Yes", 2: ".", 3: " It", 4: " is"}[t]) == 2
    engine = TraceEngine(tiny_model("llama"))
    with pytest.raises(DecodingError, match="contiguous"):
        ContextExample(engine, _prompt(), [6, 7, 9], [], RagSettings(), set(), None, str)
    with pytest.raises(DecodingError, match="question after"):
        ContextExample(engine, _prompt(), range(6, LENGTH), [], RagSettings(), set(), None, str)


def _sentences(token: int) -> str:
    return f" w{token}." if token % 3 == 0 else f" w{token}"  # every third token ends a sentence


def test_paper_algorithm_appends_the_whole_regeneration_dragin_only_its_first_sentence(engine):
    """Algorithm 1 as written (line 12) keeps the whole regeneration under the windows; DRAGIN keeps its first
    sentence and drafts on with the context hidden (and may retrieve again)."""
    settings = dict(heads=2, threshold=0.0, top_positions=3, cluster_gap=2, window=4, sink_tokens=2, max_retrievals=1)
    make = lambda algorithm: ContextExample(engine, _prompt(), range(*CONTEXT), SUPPORT,
                                            RagSettings(algorithm=algorithm, **settings), eos=set(), stop=None,
                                            token_text=_sentences)
    paper, dragin = make("paper"), make("dragin")
    a = paper.answer(Strategy.parse("oracle"), NEW, SOURCE)
    (r,) = a.retrievals
    regen = paper.decode(a.token_ids[: r.step], NEW - r.step, r.windows, record=False).tokens
    assert a.token_ids == a.token_ids[: r.step] + regen and len(a.token_ids) == NEW
    assert a.drafts == 1  # nothing is drafted after a regeneration that ran to the end of the answer
    b = dragin.answer(Strategy.parse("oracle"), NEW, SOURCE)
    (r,) = b.retrievals
    regen = dragin.decode(b.token_ids[: r.step], NEW - r.step, r.windows, record=False, one_sentence=True).tokens
    kept = first_sentence(regen, _sentences)
    assert 0 < kept < len(regen) or kept == NEW - r.step  # the rule only differs when a sentence ends early
    assert b.token_ids[r.step : r.step + kept] == regen[:kept]
    rest = dragin.decode(b.token_ids[: r.step + kept], NEW - r.step - kept, [], record=True).tokens  # context hidden again
    assert b.token_ids[r.step + kept :] == rest and b.drafts == 2
    assert a.token_ids != b.token_ids  # the two rules disagree on this prompt
    with pytest.raises(ValueError, match="rag_algorithm"):
        RagSettings(algorithm="both")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_strategies_batched_give_the_answers_each_gives_alone(arch):
    """answer_many decodes the strategies' drafts and regenerations as rows of one batch per round (suffixes
    of different lengths, per-row windows; gemma3's sliding windows across the rows' gaps): same answers,
    retrievals and RIND triggers as each strategy answered alone, one row at a time."""
    engine = TraceEngine(tiny_model(arch))
    labels = ("static", "dynamic_random", "oracle", "fixed_random", "none", "full")
    strategies = [Strategy.parse(n) for n in labels]
    example = _example(engine, threshold=0.0, max_retrievals=2)
    rounds = []
    decode_many = example.decode_many
    example.decode_many = lambda specs: (rounds.append(len(set(specs))), decode_many(specs))[1]
    together = example.answer_many(strategies, NEW, SOURCE)
    assert max(rounds) >= 3  # several distinct continuations really shared a batch
    for strategy, answer in zip(strategies, together):
        alone = _example(engine, threshold=0.0, max_retrievals=2).answer(strategy, NEW, SOURCE)
        assert answer.token_ids == alone.token_ids, strategy
        assert [(r.step, r.windows, r.heads, r.trigger) for r in answer.retrievals] == \
               [(r.step, r.windows, r.heads, r.trigger) for r in alone.retrievals], strategy


class LastHeadOnly(HeadWindows):
    """A strategy defined here, not in the package: Algorithm 1 runs it with no edit of its loop."""
    name = "fixed_random"  # borrows a spec name for its label; its heads are its own

    def heads(self, index, hidden, source, k):
        return [(source.num_layers - 1, source.num_heads - 1)]


def test_a_new_strategy_is_a_new_class(engine):
    answer = _example(engine, threshold=0.0, max_retrievals=2).answer(LastHeadOnly(), NEW, SOURCE)
    assert answer.retrievals and all(r.heads == [(2, 3)] for r in answer.retrievals)
    assert answer.retrievals[0].windows != _example(engine, threshold=0.0).answer(
        Strategy.parse("oracle"), NEW, SOURCE).retrievals[0].windows
