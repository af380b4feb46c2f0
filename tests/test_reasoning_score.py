"""Eq. 2 (reasoning retrieval score) on hand-built attention rows, plus a slow reference cross-check."""

from __future__ import annotations

import random

import pytest
import torch

from dynheads.metrics.reasoning import (
    DEFAULT_LOCAL_WINDOW,
    DEFAULT_SINK_TOKENS,
    DEFAULT_THRESHOLD,
    reasoning_heads,
    reasoning_scores,
    reasoning_scores_for_sequence,
)

# Small layout used by most tests: total_len = 12, sink_tokens = 2, local_window = 3
#   positions 0,1        -> sink
#   positions 2..8       -> eligible (denominator)
#   positions 9,10,11    -> local (11 is the query position)
TOTAL = 12
SINK = 2
LOCAL = 3
SUPPORT = [4, 5]  # inside the eligible range


def _row(mass: dict[int, float], length: int = TOTAL) -> torch.Tensor:
    """One head's row ``[keys]`` with the given (key index -> probability); the rest is 0."""
    row = torch.zeros(length)
    for k, v in mass.items():
        row[k] = v
    return row


def _score(rows, support=SUPPORT, total=TOTAL, sink=SINK, local=LOCAL) -> torch.Tensor:
    return reasoning_scores_for_sequence(rows, total, support, sink_tokens=sink, local_window=local)


def test_defaults():
    assert (DEFAULT_SINK_TOKENS, DEFAULT_LOCAL_WINDOW, DEFAULT_THRESHOLD) == (4, 32, 0.5)


def test_all_long_range_mass_on_support_scores_one():
    # all of it on positions 4 and 5 (support): 1.0 / 1.0 = 1
    rows = [torch.stack([_row({4: 0.5, 5: 0.5})])]
    assert _score(rows).tolist() == [[1.0]]


def test_split_mass_gives_exact_ratio():
    # head 0: support 4 -> 0.3, non-support 7 -> 0.1 ; 0.3 / (0.3 + 0.1) = 0.75
    # head 1: support 5 -> 0.1, non-support 2,8 -> 0.2 + 0.2 ; 0.1 / 0.5 = 0.2
    # head 2: nothing on support, all on 3 -> 0
    rows = [torch.stack([_row({4: 0.3, 7: 0.1, 11: 0.6}), _row({5: 0.1, 2: 0.2, 8: 0.2, 0: 0.5}), _row({3: 1.0})])]
    scores = _score(rows)
    assert scores.shape == (1, 3)
    assert scores.dtype == torch.float32
    assert scores[0].tolist() == pytest.approx([0.75, 0.2, 0.0], abs=1e-6)


def test_sink_and_local_mass_is_ignored():
    # eligible part: 0.3 on support 4, 0.1 on 6 -> 0.75 ; then pile huge mass onto the sink (0, 1)
    # and the local window (9, 10, 11): the ratio must not move.
    base = _row({4: 0.03, 6: 0.01})
    heavy = base.clone()
    heavy[0], heavy[1], heavy[9], heavy[10], heavy[11] = 0.4, 0.2, 0.1, 0.1, 0.16
    scores = _score([torch.stack([base, heavy])])
    assert scores[0].tolist() == pytest.approx([0.75, 0.75], abs=1e-6)
    # sanity: with no sink/local exclusion the heavy head would score much lower (0.03 / 1.0)
    unmasked = _score([torch.stack([heavy])], sink=0, local=0)
    assert unmasked.item() == pytest.approx(0.03, abs=1e-6)


def test_support_tokens_in_sink_or_local_window_do_not_count():
    # support at 1 (sink), 5 (eligible), 10 (local). Mass: 1 -> 0.5, 5 -> 0.1, 6 -> 0.3, 10 -> 0.1
    # numerator only 5 -> 0.1 ; denominator 5 + 6 -> 0.4 ; score 0.25 (not (0.1+0.5+0.1)/...)
    rows = [torch.stack([_row({1: 0.5, 5: 0.1, 6: 0.3, 10: 0.1})])]
    assert _score(rows, support=[1, 5, 10]).item() == pytest.approx(0.25, abs=1e-6)
    # a head attending only to local-window support has no long-range mass at all -> 0
    rows = [torch.stack([_row({10: 1.0})])]
    assert _score(rows, support=[10]).item() == 0.0


def test_zero_denominator_scores_zero():
    # (a) the head puts everything on sink + local positions
    rows = [torch.stack([_row({0: 0.5, 11: 0.5})])]
    assert _score(rows).item() == 0.0
    # (b) the sequence is so short that sink and local window cover every position
    #     total 4, sink 2, local 3 -> eligible range [2, 1) is empty
    rows = [torch.full((1, 4), 0.25)]
    assert _score(rows, support=[2], total=4).item() == 0.0
    # (c) a sliding-window layer holding only the local keys 9..11 (3 keys) sees no eligible key
    rows = [torch.tensor([[0.2, 0.3, 0.5]])]
    assert _score(rows, support=[9]).item() == 0.0
    assert not torch.isnan(_score(rows)).any()


def test_right_aligned_sliding_window_row():
    # a 5-key sliding layer holds positions 7..11 (key j -> position 7 + j).
    # Mark position 7 (key 0) as support: key 0 -> 0.2, key 1 (pos 8) -> 0.6, keys 2..4 (pos 9..11, local) -> 0.2
    # eligible keys: 0, 1 ; score = 0.2 / 0.8 = 0.25
    # A left-aligned bug would read key 0 as position 0 (sink) and key 1 as position 1: score 0 / 0.
    window = torch.tensor([[0.2, 0.6, 0.1, 0.05, 0.05]])
    full = _row({7: 0.2, 8: 0.6, 9: 0.2}).unsqueeze(0)  # the same attention over full-length keys
    scores = _score([window, full], support=[7])
    assert scores.shape == (2, 1)
    assert scores[:, 0].tolist() == pytest.approx([0.25, 0.25], abs=1e-6)
    # support at position 4 lies before the window: that layer cannot see it -> 0 support mass
    # (the window's eligible mass 0.2 + 0.6 is all non-support)
    assert _score([window], support=[4]).item() == 0.0


def test_batched_scores():
    # two sequences with different supports and rows, 2 layers x 2 heads
    sup = torch.zeros(2, TOTAL, dtype=torch.bool)
    sup[0, [4, 5]] = True
    sup[1, [8]] = True
    l0 = torch.stack(
        [
            torch.stack([_row({4: 0.5, 6: 0.5}), _row({8: 1.0})]),  # seq 0: 0.5, 0
            torch.stack([_row({4: 0.5, 6: 0.5}), _row({8: 1.0})]),  # seq 1: 0, 1
        ]
    )
    l1 = torch.stack(
        [
            torch.stack([_row({5: 0.9, 3: 0.1}), _row({0: 1.0})]),  # seq 0: 0.9, 0 (sink only)
            torch.stack([_row({8: 0.2, 2: 0.6, 11: 0.2}), _row({8: 0.3, 7: 0.1})]),  # seq 1: 0.25, 0.75
        ]
    )
    scores = reasoning_scores([l0, l1], TOTAL, sup, sink_tokens=SINK, local_window=LOCAL)
    assert scores.shape == (2, 2, 2)
    expected = torch.tensor([[[0.5, 0.0], [0.9, 0.0]], [[0.0, 1.0], [0.25, 0.75]]])
    assert torch.allclose(scores, expected, atol=1e-6)
    # each batch element equals its single-sequence computation
    for b, support in enumerate([[4, 5], [8]]):
        single = reasoning_scores_for_sequence([l0[b], l1[b]], TOTAL, support, SINK, LOCAL)
        assert torch.equal(single, scores[b])


def test_reasoning_heads_threshold_is_strict():
    scores = torch.tensor([[0.5, 0.51, 0.2], [0.9, 0.0, 0.5000001]])
    assert reasoning_heads(scores) == [(0, 1), (1, 0), (1, 2)]  # 0.5 itself is not a head
    assert reasoning_heads(scores, threshold=0.9) == []
    assert reasoning_heads(scores, threshold=0.0) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)]
    assert reasoning_heads(scores, threshold=1.0) == []


def test_heads_from_scores_end_to_end():
    # head 0 scores exactly 0.5 (0.2 vs 0.2), head 1 0.75, head 2 0.25
    rows = [torch.stack([_row({4: 0.2, 6: 0.2}), _row({5: 0.3, 6: 0.1}), _row({4: 0.1, 7: 0.3})])]
    scores = _score(rows)
    assert scores[0, 0].item() == 0.5
    assert reasoning_heads(scores) == [(0, 1)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sink_tokens": -1}, "sink_tokens"),
        ({"local_window": -2}, "local_window"),
        ({"support_indices": [12]}, "out of range"),
        ({"support_indices": [-1]}, "out of range"),
        ({"total_len": 0}, "total_len"),
    ],
)
def test_invalid_sequence_inputs_raise(kwargs, match):
    args = {"rows": [torch.full((1, TOTAL), 1 / TOTAL)], "total_len": TOTAL, "support_indices": [4]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        reasoning_scores_for_sequence(**args)


def test_invalid_batched_inputs_raise():
    rows = [torch.full((1, 1, TOTAL), 1 / TOTAL)]
    good = torch.zeros(1, TOTAL, dtype=torch.bool)
    with pytest.raises(ValueError, match="bool"):
        reasoning_scores(rows, TOTAL, good.float())
    with pytest.raises(ValueError, match="support_mask"):
        reasoning_scores(rows, TOTAL, torch.zeros(1, TOTAL - 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not fit"):
        reasoning_scores([torch.full((1, 1, TOTAL + 1), 0.1)], TOTAL, good)  # more keys than positions
    with pytest.raises(ValueError, match="does not fit"):
        reasoning_scores(rows, TOTAL, torch.zeros(2, TOTAL, dtype=torch.bool))  # batch mismatch
    with pytest.raises(ValueError, match="at least one layer"):
        reasoning_scores([], TOTAL, good)
    with pytest.raises(ValueError, match="threshold"):
        reasoning_heads(torch.zeros(2, 2), threshold=1.5)
    with pytest.raises(ValueError, match="threshold"):
        reasoning_heads(torch.zeros(2, 2), threshold=-0.1)
    with pytest.raises(ValueError, match="layers, heads"):
        reasoning_heads(torch.zeros(1, 2, 2))


# --------------------------------------------------------------------------- slow reference


def _reference(rows, total_len, support, sink, local):
    """Eq. 2 written out position by position in plain Python (floats, no tensors ops)."""
    support = set(support)
    out = []
    for row in rows:  # [heads, keys]
        keys = len(row[0])
        layer = []
        for head_row in row:
            num = den = 0.0
            for j, a in enumerate(head_row):
                p = total_len - keys + j
                if p < sink or p >= total_len - local:
                    continue
                den += a
                if p in support:
                    num += a
            layer.append(num / den if den > 0 else 0.0)
        out.append(layer)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference_on_random_rows(seed):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    total = rng.randint(40, 70)
    heads = 3
    key_counts = [total, rng.randint(8, 25), total, 5]  # two sliding-window layers (one tiny)
    rows = [torch.softmax(3 * torch.randn(heads, k, generator=gen), dim=-1) for k in key_counts]
    support = sorted(rng.sample(range(total), 12))
    for sink, local in [(DEFAULT_SINK_TOKENS, 10), (0, 0), (3, 1), (DEFAULT_SINK_TOKENS, DEFAULT_LOCAL_WINDOW)]:
        got = reasoning_scores_for_sequence(rows, total, support, sink, local)
        want = _reference([r.tolist() for r in rows], total, support, sink, local)
        assert got.shape == (len(key_counts), heads)
        assert torch.allclose(got, torch.tensor(want), atol=1e-5), (sink, local)
        assert ((got >= 0) & (got <= 1)).all()
    # the batched call on a stacked batch of two different supports agrees with the reference too
    support2 = sorted(rng.sample(range(total), 5))
    mask = torch.zeros(2, total, dtype=torch.bool)
    mask[0, support] = True
    mask[1, support2] = True
    batched_rows = [torch.stack([r, r.flip(0)]) for r in rows]
    got = reasoning_scores(batched_rows, total, mask, sink_tokens=2, local_window=7)
    for b, sup in enumerate([support, support2]):
        want = _reference([r[b].tolist() for r in batched_rows], total, sup, 2, 7)
        assert torch.allclose(got[b], torch.tensor(want), atol=1e-5)
