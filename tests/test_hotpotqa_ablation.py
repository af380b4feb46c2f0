"""Figure 6 binning: context-length buckets, first-supporting-fact position, per-cell means and counts."""

from __future__ import annotations

import pytest

from dynheads.suite.hotpotqa.ablation import (
    ablation_cells,
    bin_index,
    bin_labels,
    check_edges,
    first_support_position,
    markdown_grid,
)
from dynheads.tasks.hotpotqa_sf.utils import docs_from_metadata


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1249, 0), (1250, 1), (1499.9, 1), (1500, 2), (9999, 3)])
def test_bins_are_left_closed(value, expected):
    assert bin_index(value, [1250, 1500, 1750]) == expected


def test_labels():
    assert bin_labels([1250, 1500]) == ["<1250", "1250-1500", ">=1500"]
    assert bin_labels([0.2, 0.6], percent=True) == ["<20%", "20%-60%", ">=60%"]
    assert bin_labels([]) == ["all"]


def test_edges_must_ascend():
    assert check_edges("length_edges", [1, 2.5]) == [1.0, 2.5]
    with pytest.raises(ValueError, match="strictly ascending"):
        check_edges("length_edges", [1500, 1250])


def test_first_support_position_on_vendored_examples():
    for doc in docs_from_metadata(n=5, tokenizer=None):
        start, end = doc["context_char_span"]
        first = min(s for s, _ in doc["support_char_spans"])
        position = first_support_position(doc)
        assert 0.0 <= position < 1.0
        assert position == pytest.approx((first - start) / (end - start))
        # the earliest supporting sentence sits inside its titled paragraph, after a "Title: " line
        assert doc["input"].rfind("Title: ", start, first) >= start
    doc = {"id": "x", "context_char_span": [10, 110], "support_char_spans": [[60, 70], [35, 40]]}
    assert first_support_position(doc) == 0.25
    with pytest.raises(ValueError, match="'x'"):
        first_support_position({**doc, "support_char_spans": []})


def test_cells_average_and_count_and_leave_empty_cells_out():
    samples = [
        {"n_tokens": 1000, "position": 0.1, "em": 1.0, "f1": 1.0},
        {"n_tokens": 1100, "position": 0.15, "em": 0.0, "f1": 0.5},
        {"n_tokens": 1600, "position": 0.9, "em": 0.0, "f1": 0.25},
    ]
    cells = ablation_cells(samples, [1250, 1500], [0.5])
    assert cells == [
        {"length_bin": 0, "position_bin": 0, "n": 2, "em": 0.5, "f1": 0.75},
        {"length_bin": 2, "position_bin": 1, "n": 1, "em": 0.0, "f1": 0.25},
    ]
    table = markdown_grid(cells, "f1", bin_labels([1250, 1500]), bin_labels([0.5], percent=True))
    assert "| <50% | 0.75 (2) | — | — |" in table
    assert "| >=50% | — | — | 0.25 (1) |" in table
    assert ablation_cells([], [1], [0.5]) == []
