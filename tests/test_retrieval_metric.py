"""Eq. 1 (copy-paste retrieval heads) and needle token spans on hand-built inputs."""

from __future__ import annotations

import pytest
import torch

from dynheads.metrics.retrieval import copy_paste_heads, span_token_indices

#            0   1   2   3   4   5   6   (position)
SEQUENCE = [10, 11, 42, 43, 42, 12, 13]
NEEDLE = [2, 3]  # tokens 42, 43 at positions 2-3; another 42 sits outside the needle at position 4


def _row(argmax_at: int, length: int = 7) -> torch.Tensor:
    row = torch.full((length,), 0.05)
    row[argmax_at] = 0.7
    return row / row.sum()


def test_eq1_requires_needle_position_and_copied_token():
    # layer 0: head 0 -> pos 2 (needle, token 42) ; head 1 -> pos 4 (token 42 but outside the needle)
    # layer 1: head 0 -> pos 3 (needle, token 43)  ; head 1 -> pos 2 (needle, token 42)
    rows = [
        torch.stack([_row(2), _row(4)]),
        torch.stack([_row(3), _row(2)]),
    ]
    assert copy_paste_heads(rows, SEQUENCE, NEEDLE, token_id=42) == [(0, 0), (1, 1)]
    assert copy_paste_heads(rows, SEQUENCE, NEEDLE, token_id=43) == [(1, 0)]
    assert copy_paste_heads(rows, SEQUENCE, NEEDLE, token_id=99) == []


def test_eq1_right_aligned_sliding_window_rows():
    # a sliding layer that only holds the last 4 keys (positions 3..6): its argmax index 0 is position 3
    window_row = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    full_row = _row(5).unsqueeze(0)
    assert copy_paste_heads([window_row, full_row], SEQUENCE, NEEDLE, token_id=43) == [(0, 0)]


def test_span_token_indices_overlap_and_special_tokens():
    # "<s>" special token (0, 0), then "The", " magic", " word", "."
    offsets = [(0, 0), (0, 3), (3, 9), (9, 14), (14, 15)]
    assert span_token_indices(offsets, 4, 14) == [2, 3]   # partial overlap of " magic" counts
    assert span_token_indices(offsets, 0, 3) == [1]       # the special token never counts
    with pytest.raises(ValueError, match="empty character span"):
        span_token_indices(offsets, 5, 5)
