"""Copy-paste retrieval heads (paper Eq. 1) and the needle token indices they refer to.

Eq. 1: head ``h`` is a retrieval head at step ``t`` iff the key it attends to most, ``i* = argmax a^{h,t}``,
lies inside the needle and carries the token generated at ``t``. These functions take the per-layer
last-row attention probabilities that the trace engine records and return the head set, without
any model in the loop, so they can be tested on hand-built rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .heads import Head


def span_token_indices(offsets: Sequence[Sequence[int]], char_start: int, char_end: int) -> list[int]:
    """Indices of the tokens whose character span overlaps ``[char_start, char_end)``.

    ``offsets`` are the tokenizer's ``offset_mapping`` pairs for the same text. Special tokens map
    to ``(0, 0)`` and never overlap a non-empty span.
    """
    if char_end <= char_start:
        raise ValueError(f"dynheads: empty character span [{char_start}, {char_end}); the needle text was not found")
    return [i for i, (s, e) in enumerate(offsets) if e > s and s < char_end and e > char_start]


def argmax_key_positions(rows: Sequence[torch.Tensor], total_len: int) -> torch.Tensor:
    """Absolute position of each head's most-attended key: ``[batch, layers, heads]`` (int64).

    ``rows[layer]`` is ``[batch, heads, keys]`` with keys right-aligned to the newest position
    ``total_len - 1`` (sliding-window layers hold fewer keys).
    """
    positions = [row.argmax(dim=-1) + (total_len - row.shape[-1]) for row in rows]
    return torch.stack(positions, dim=1)


def copy_paste_mask(
    positions: torch.Tensor, sequence_ids: torch.Tensor, needle_mask: torch.Tensor, token_ids: torch.Tensor
) -> torch.Tensor:
    """Eq. 1 as a boolean ``[batch, layers, heads]`` tensor.

    ``positions``: from :func:`argmax_key_positions`; ``sequence_ids``/``needle_mask``: ``[batch, total]``
    token ids and needle membership of every position; ``token_ids``: ``[batch]`` generated tokens.
    """
    batch, layers, heads = positions.shape
    flat = positions.reshape(batch, layers * heads)
    in_needle = torch.gather(needle_mask, 1, flat)
    copies = torch.gather(sequence_ids, 1, flat) == token_ids[:, None]
    return (in_needle & copies).reshape(batch, layers, heads)


def mask_to_heads(mask: torch.Tensor) -> list[Head]:
    """``[layers, heads]`` boolean tensor to a sorted list of ``(layer, head)`` pairs."""
    return [(int(l), int(h)) for l, h in mask.nonzero().tolist()]


def copy_paste_heads(
    rows: Sequence[torch.Tensor], sequence_ids: Sequence[int], needle_indices: Sequence[int], token_id: int
) -> list[Head]:
    """Eq. 1 for one sequence: the ``(layer, head)`` pairs that copy ``token_id`` from the needle.

    ``rows[layer]`` is ``[heads, keys]`` (or ``[1, heads, keys]``); ``sequence_ids`` the full sequence
    whose last position is the query.
    """
    rows = [r if r.dim() == 3 else r.unsqueeze(0) for r in rows]
    total = len(sequence_ids)
    ids = torch.as_tensor(list(sequence_ids), dtype=torch.long).unsqueeze(0)
    needle = torch.zeros_like(ids, dtype=torch.bool)
    needle[0, list(needle_indices)] = True
    positions = argmax_key_positions(rows, total)
    mask = copy_paste_mask(positions, ids, needle, torch.tensor([token_id]))
    return mask_to_heads(mask[0])
