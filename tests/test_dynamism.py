"""Dynamism statistics (Table 1 / Table 5 / Appendix A.1-A.3) on hand-built traces.

Every expected number below is worked out by hand in the comments, never by calling the function
under test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from dynheads.metrics.dynamism import (
    activation_entropy,
    activation_rates,
    adjacent_jaccard,
    agg_adjacent_jaccard,
    agg_entropy,
    agg_heads_per_step,
    agg_heads_per_step_std,
    agg_jaccard_static_20,
    agg_jaccard_static_50,
    agg_jaccard_static_100,
    agg_unique_heads,
    compensated_heads,
    heads_per_step,
    jaccard,
    jaccard_with_static,
    matched_head_count,
    peak_static_compensation,
    rank_static_heads,
    summarise,
    unique_heads,
)

A, B, C = (0, 1), (1, 0), (2, 3)

# Three samples, 8 steps in all; heads as JSON-style lists to check that lists are accepted.
#   sample 0: t0 {A, C}   t1 {A}   t2 {}   t3 {B, A}
#   sample 1: t0 {B, A}   t1 {B}
#   sample 2: t0 {}       t1 {}            (only empty steps)
TRACE = [
    [[[0, 1], [2, 3]], [[0, 1]], [], [[1, 0], [0, 1]]],
    [[[1, 0], [0, 1]], [[1, 0]]],
    [[], []],
]
# |H_t| = 2,1,0,2 | 2,1 | 0,0 -> sum 8 over 8 steps -> mean 1.0
# squared deviations 1,0,1,1 | 1,0 | 1,1 = 6 -> population variance 6/8 = 0.75 -> std sqrt(0.75)
MEAN, STD = 1.0, math.sqrt(0.75)
# activation counts: A in s0t0,s0t1,s0t3,s1t0 = 4; B in s0t3,s1t0,s1t1 = 3; C in s0t0 = 1; total 8
ENTROPY = -(0.5 * math.log(0.5) + 0.375 * math.log(0.375) + 0.125 * math.log(0.125))  # ~0.974315
# adjacent pairs within samples: s0 (t0,t1) |{A}|/|{A,C}| = 1/2, (t1,t2) one empty = 0, (t2,t3) = 0;
# s1 (t0,t1) |{B}|/|{A,B}| = 1/2; s2 (t0,t1) both empty -> skipped. Mean of 0.5,0,0,0.5 = 0.25.
# (Crossing samples would add s0t3->s1t0 = 1 and s1t1->s2t0 = 0, giving 2/6 = 0.333...)
ADJ = 0.25
RANKING = [A, B, C]


# --------------------------------------------------------------------------- jaccard


def test_jaccard_basic_lists_tuples_and_undefined():
    assert jaccard([[0, 1]], [(0, 1)]) == 1.0
    assert jaccard([A, B], [B, C]) == pytest.approx(1 / 3)  # {B} / {A,B,C}
    assert jaccard([A], []) == 0.0
    assert jaccard([], []) is None
    assert jaccard([A, A, B], [A]) == pytest.approx(1 / 2)  # duplicates count once


def test_bad_head_raises():
    with pytest.raises(ValueError, match="pair"):
        unique_heads([[[[0, 1, 2]]]])
    with pytest.raises(ValueError, match="int"):
        unique_heads([[[[0.5, 1]]]])


# --------------------------------------------------------------------------- heads per step / unique


def test_heads_per_step_mean_and_population_std():
    mean, std = heads_per_step(TRACE)
    assert mean == pytest.approx(MEAN)
    assert std == pytest.approx(STD)  # sqrt(0.75) = 0.8660..., sample std would be sqrt(6/7)


def test_heads_per_step_counts_empty_steps_and_handles_no_steps():
    # one step with 3 heads and one empty EOS step: mean 1.5, deviations 1.5 each -> std 1.5
    mean, std = heads_per_step([[[A, B, C], []]])
    assert (mean, std) == (pytest.approx(1.5), pytest.approx(1.5))
    assert heads_per_step([[[]]]) == (0.0, 0.0)
    assert heads_per_step([]) is None
    assert heads_per_step([[], []]) is None  # samples without any step


def test_unique_heads():
    assert unique_heads(TRACE) == 3  # A, B, C
    assert unique_heads([[[], []]]) == 0
    assert unique_heads([]) == 0


# --------------------------------------------------------------------------- jaccard with static


def test_jaccard_with_static_top2():
    # S = top-2 of RANKING = {A, B}
    # s0: t0 {A,C}: 1/3   t1 {A}: 1/2   t2 {}: 0   t3 {A,B}: 1
    # s1: t0 {A,B}: 1     t1 {B}: 1/2
    # s2: 0, 0
    # sum = 10/3 over 8 steps -> 5/12
    assert jaccard_with_static(TRACE, RANKING[:2]) == pytest.approx(5 / 12)


def test_jaccard_with_static_top1_and_lists():
    # S = {A}: 1/2, 1, 0, 1/2 | 1/2, 0 | 0, 0 -> 2.5 / 8
    assert jaccard_with_static(TRACE, [[0, 1]]) == pytest.approx(0.3125)


def test_jaccard_with_static_errors_and_no_steps():
    with pytest.raises(ValueError, match="non-empty"):
        jaccard_with_static(TRACE, [])
    assert jaccard_with_static([], [A]) is None
    assert jaccard_with_static([[[]]], [A]) == 0.0  # an empty step against a non-empty S scores 0


# --------------------------------------------------------------------------- adjacent jaccard


def test_adjacent_jaccard_within_samples_only():
    assert adjacent_jaccard(TRACE) == pytest.approx(ADJ)


def test_adjacent_jaccard_undefined_cases():
    assert adjacent_jaccard([]) is None
    assert adjacent_jaccard([[[A]], [[A]]]) is None  # one step per sample: no pair (would be 1 across)
    assert adjacent_jaccard([[[], [], []]]) is None  # only empty pairs
    assert adjacent_jaccard([[[A], []]]) == 0.0
    # [A,B] -> [B] = 1/2 ; [B] -> [] = 0 ; [] -> [] skipped ; [] -> [C] = 0  -> 0.5/3
    assert adjacent_jaccard([[[A, B], [B], [], [], [C]]]) == pytest.approx(0.5 / 3)


# --------------------------------------------------------------------------- entropy / rates


def test_entropy_trace():
    assert activation_entropy(TRACE) == pytest.approx(ENTROPY)
    assert ENTROPY == pytest.approx(0.974315, abs=1e-6)


def test_entropy_uniform_20_heads_is_ln20():
    heads = [(i // 4, i % 4) for i in range(20)]
    # one step per head, each head active once -> p_h = 1/20 -> ln 20
    assert activation_entropy([[[h] for h in heads]]) == pytest.approx(2.995732, abs=1e-6)
    # all 20 in the same step, twice, plus empty steps: still uniform
    assert activation_entropy([[heads, [], heads], [[]]]) == pytest.approx(math.log(20))


def test_entropy_single_head_is_zero_and_none_without_activation():
    value = activation_entropy([[[A], [A], []], [[[0, 1]]]])
    assert value == 0.0 and math.copysign(1.0, value) == 1.0  # not -0.0
    assert activation_entropy([[[], []]]) is None
    assert activation_entropy([]) is None


def test_activation_rates():
    rates = activation_rates(TRACE)
    assert rates == {A: pytest.approx(4 / 8), B: pytest.approx(3 / 8), C: pytest.approx(1 / 8)}
    assert all(isinstance(h, tuple) for h in rates)
    # 4 steps (two empty), 5 activations: rates divide by steps, not activations
    assert activation_rates([[[A, B, C], [A]], [[], []]]) == {
        A: pytest.approx(2 / 4), B: pytest.approx(1 / 4), C: pytest.approx(1 / 4)
    }
    assert activation_rates([]) == {}


# --------------------------------------------------------------------------- static ranking


def test_rank_static_heads_full_grid_with_zero_scores():
    ranked = rank_static_heads(TRACE, num_layers=3, num_heads=4)
    assert len(ranked) == 12
    # rates A=4/8, B=3/8, C=1/8, then the 9 never-active heads at 0.0 in (layer, head) order
    assert ranked[:3] == [(0, 1, 0.5), (1, 0, 0.375), (2, 3, 0.125)]
    assert ranked[3:] == [
        (0, 0, 0.0), (0, 2, 0.0), (0, 3, 0.0),
        (1, 1, 0.0), (1, 2, 0.0), (1, 3, 0.0),
        (2, 0, 0.0), (2, 1, 0.0), (2, 2, 0.0),
    ]


def test_rank_static_heads_tie_break_by_layer_then_head():
    # 3 steps: (1,0) and (0,1) both active 2/3, (0,0) 1/3, (1,1) never; input order puts (1,0) first
    trace = [[[[1, 0], [0, 1]], [[1, 0], [0, 1]], [[0, 0]]]]
    ranked = rank_static_heads(trace, num_layers=2, num_heads=2)
    assert [(l, h) for l, h, _ in ranked] == [(0, 1), (1, 0), (0, 0), (1, 1)]
    assert [s for _, _, s in ranked] == pytest.approx([2 / 3, 2 / 3, 1 / 3, 0.0])


def test_rank_static_heads_errors():
    with pytest.raises(ValueError, match="decode step"):
        rank_static_heads([], 2, 2)
    with pytest.raises(ValueError, match="decode step"):
        rank_static_heads([[]], 2, 2)
    with pytest.raises(ValueError, match="outside"):
        rank_static_heads([[[[2, 0]]]], num_layers=2, num_heads=2)
    with pytest.raises(ValueError, match="outside"):
        rank_static_heads([[[[0, 2]]]], num_layers=2, num_heads=2)
    with pytest.raises(ValueError, match="outside"):
        rank_static_heads([[[[0, -1]]]], num_layers=2, num_heads=2)


# --------------------------------------------------------------------------- masking bookkeeping


@pytest.mark.parametrize(
    "counts, expected",
    [
        ([3, 4], 4),  # 3.5 rounds half up (Python's round() would give 4 too, but 2.5 -> 2)
        ([2, 3], 3),  # 2.5 -> 3, where banker's rounding would give 2
        ([1, 2, 2], 2),  # 1.667 -> 2
        ([2, 2, 3], 2),  # 2.333 -> 2, not the ceiling
        ([0, 0], 0),  # nothing was ever masked
        ([7], 7),
        ([0, 3, 0, 4, 0], 4),  # steps without masking are left out: mean of 3 and 4 = 3.5 -> 4
        ([0, 0, 0, 1], 1),  # not 0.25 -> 0
    ],
)
def test_matched_head_count(counts, expected):
    assert matched_head_count(counts) == expected


def test_matched_head_count_empty_raises():
    with pytest.raises(ValueError):
        matched_head_count([])


def test_compensated_heads():
    before = [[0, 1], [1, 1]]
    after = [(1, 1), [2, 0], (3, 3)]
    assert compensated_heads(before, after) == {(2, 0), (3, 3)}  # (1,1) was already active
    assert compensated_heads([A], []) == set()


def test_peak_static_compensation_is_max_not_mean():
    static = [(2, 0), (3, 3), (4, 4)]
    before = [[A], [], [(1, 1)], [A]]
    after = [[(2, 0)], [(2, 0), (3, 3), (1, 1)], [(1, 1)], [(4, 4), (5, 5)]]
    # E_t ∩ S: t0 {(2,0)} -> 1 ; t1 {(2,0),(3,3),(1,1)} ∩ S -> 2 ; t2 {} -> 0 ; t3 {(4,4),(5,5)} ∩ S -> 1
    # max = 2 (mean would be 1)
    assert peak_static_compensation(before, after, static) == 2


def test_peak_static_compensation_edge_cases():
    assert peak_static_compensation([], [], [A]) == 0
    with pytest.raises(ValueError, match="equal-length"):
        peak_static_compensation([[A]], [], [A])


# --------------------------------------------------------------------------- summarise


BASE_KEYS = {
    "steps", "samples", "heads_per_step_mean", "heads_per_step_std",
    "unique_heads", "total_heads", "adjacent_jaccard", "entropy",
}


def test_summarise_without_static():
    out = summarise(TRACE, total_heads=12, static_ranking=None)
    assert set(out) == BASE_KEYS
    assert out["steps"] == 8 and out["samples"] == 3
    assert out["heads_per_step_mean"] == pytest.approx(MEAN)
    assert out["heads_per_step_std"] == pytest.approx(STD)
    assert out["unique_heads"] == 3 and out["total_heads"] == 12
    assert out["adjacent_jaccard"] == pytest.approx(ADJ)
    assert out["entropy"] == pytest.approx(ENTROPY)


def test_summarise_with_static_custom_ks():
    out = summarise(TRACE, total_heads=12, static_ranking=RANKING, ks=(1, 2))
    assert set(out) == BASE_KEYS | {"jaccard_static_1", "jaccard_static_2"}
    assert out["jaccard_static_1"] == pytest.approx(0.3125)
    assert out["jaccard_static_2"] == pytest.approx(5 / 12)


def test_summarise_default_ks_with_short_ranking():
    out = summarise(TRACE, total_heads=12, static_ranking=RANKING)
    assert set(out) == BASE_KEYS | {"jaccard_static_20", "jaccard_static_50", "jaccard_static_100"}
    # the ranking has 3 heads, so every top-k is {A,B,C}:
    # 2/3, 1/3, 0, 2/3 | 2/3, 1/3 | 0, 0 -> (8/3)/8 = 1/3
    for k in (20, 50, 100):
        assert out[f"jaccard_static_{k}"] == pytest.approx(1 / 3)


def test_summarise_empty_corpus_is_none_not_zero():
    out = summarise([], total_heads=4, static_ranking=[A])
    assert out["steps"] == 0 and out["samples"] == 0 and out["unique_heads"] == 0
    for key in ("heads_per_step_mean", "heads_per_step_std", "adjacent_jaccard", "entropy",
                "jaccard_static_20", "jaccard_static_50", "jaccard_static_100"):
        assert out[key] is None, key


# --------------------------------------------------------------------------- lm-eval aggregations


# static ranking of 100 heads: A at index 0, B at index 20 (top-50 only), C at index 50 (top-100 only)
_FILLERS = [[10 + i // 16, i % 16] for i in range(97)]
STATIC_100 = [[0, 1]] + _FILLERS[:19] + [[1, 0]] + _FILLERS[19:48] + [[2, 3]] + _FILLERS[48:]


def _items(trace=TRACE, static=STATIC_100):
    items = [{"steps": sample, "total_heads": 12, "static": static} for sample in trace]
    return json.loads(json.dumps(items))  # exactly the JSON layout: lists, never tuples


def test_static_fixture_layout():
    assert len(STATIC_100) == 100 and len({tuple(h) for h in STATIC_100}) == 100
    assert STATIC_100.index([1, 0]) == 20 and STATIC_100.index([2, 3]) == 50


def test_agg_basic_statistics():
    items = _items()
    assert agg_heads_per_step(items) == pytest.approx(MEAN)
    assert agg_heads_per_step_std(items) == pytest.approx(STD)
    unique = agg_unique_heads(items)
    assert isinstance(unique, float) and unique == 3.0
    assert agg_adjacent_jaccard(items) == pytest.approx(ADJ)  # per-item samples: no crossing
    assert agg_entropy(items) == pytest.approx(ENTROPY)


def test_agg_jaccard_static_topk():
    items = _items()
    # top-20: S = {A} + 19 fillers (|S| = 20)
    #   s0: {A,C}: 1/21  {A}: 1/20  {}: 0  {A,B}: 1/21 | s1: {A,B}: 1/21  {B}: 0 | s2: 0, 0
    assert agg_jaccard_static_20(items) == pytest.approx((3 / 21 + 1 / 20) / 8)
    # top-50: S = {A, B} + 48 fillers (|S| = 50)
    #   s0: {A,C}: 1/51  {A}: 1/50  {}: 0  {A,B}: 2/50 | s1: {A,B}: 2/50  {B}: 1/50 | s2: 0, 0
    assert agg_jaccard_static_50(items) == pytest.approx((1 / 51 + 6 / 50) / 8)
    # top-100: S = {A, B, C} + 97 fillers (|S| = 100)
    #   s0: 2/100, 1/100, 0, 2/100 | s1: 2/100, 1/100 | s2: 0, 0 -> 8/100 / 8
    assert agg_jaccard_static_100(items) == pytest.approx(0.01)


def test_agg_undefined_is_nan():
    items = _items(trace=[[[], []]])  # one sample with only empty steps
    assert agg_heads_per_step(items) == 0.0
    assert math.isnan(agg_adjacent_jaccard(items))
    assert math.isnan(agg_entropy(items))
    no_steps = _items(trace=[[]])
    assert math.isnan(agg_heads_per_step(no_steps))
    assert math.isnan(agg_heads_per_step_std(no_steps))
    assert math.isnan(agg_jaccard_static_20(no_steps))
    assert agg_unique_heads(no_steps) == 0.0


def test_agg_jaccard_static_requires_static():
    for static in (None, []):
        with pytest.raises(ValueError, match="static"):
            agg_jaccard_static_20(_items(static=static))
    items = [{"steps": [[[0, 1]]], "total_heads": 4}]  # key missing altogether
    with pytest.raises(ValueError, match="static"):
        agg_jaccard_static_100(items)


def test_agg_rejects_items_without_steps():
    with pytest.raises(ValueError, match="steps"):
        agg_heads_per_step([{"total_heads": 4}])


# --------------------------------------------------------------------------- import hygiene


def test_import_does_not_pull_torch_or_numpy(tmp_path):
    code = (
        "import sys, dynheads.metrics.dynamism; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_rank_heads_by_mean_score():
    from dynheads.metrics.dynamism import rank_heads_by_mean_score

    # 2 layers x 2 heads, two steps; means: (0,0) 0.3, (0,1) 0.5, (1,0) 0.5, (1,1) 0.0
    steps = [[[0.2, 0.9], [0.4, 0.0]], [[0.4, 0.1], [0.6, 0.0]]]
    ranked = rank_heads_by_mean_score(steps, 2, 2)
    assert [(l, h) for l, h, _ in ranked] == [(0, 1), (1, 0), (0, 0), (1, 1)]  # tie at 0.5 by (layer, head)
    assert [s for _, _, s in ranked] == pytest.approx([0.5, 0.5, 0.3, 0.0])
    with pytest.raises(ValueError, match="not 2 x 2"):
        rank_heads_by_mean_score([[[0.1, 0.2]]], 2, 2)
    with pytest.raises(ValueError, match="at least one step"):
        rank_heads_by_mean_score([], 2, 2)
