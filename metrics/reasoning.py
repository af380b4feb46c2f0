"""Reasoning retrieval heads (paper Eq. 2, Section 4: multi-hop QA).

Eq. 1 (:mod:`dynheads.metrics.retrieval`) only catches heads that *copy* a needle token verbatim. In
multi-hop QA the answer is usually not a verbatim copy of a supporting fact, so the paper scores a
head by *how much* of its long-range attention lands on the supporting facts:

    S(x^t, h) = sum_{i in I_needle} a_i^{h,t} / sum_{j in I minus (I_sink u I_local)} a_j^{h,t}

with ``I_needle`` the token positions of all supporting-fact sentences, ``I`` all key positions,
``I_sink`` the attention-sink positions (the first tokens / BOS, which absorb attention whatever
their content; Xiao et al. 2023, "StreamingLLM") and ``I_local`` the window of the most recent
tokens. Sink and local attention are removed because nearly every head spends much of its mass
there for reasons unrelated to retrieving anything from the context; dividing by the remaining
("long-range") mass asks: of the attention this head sends into the context, which share goes to
the supporting facts? "Reasoning retrieval heads" are the heads whose score exceeds a threshold.

Like :mod:`dynheads.metrics.retrieval`, these are pure functions over the per-layer last-row
attention probabilities that the trace engine records, so they can be tested on hand-built rows.

Conventions
-----------
* ``rows[layer]`` is a float tensor ``[batch, heads, keys]`` (the engine records float32; other
  float dtypes are computed in float32). Keys are right-aligned to the newest position
  ``total_len - 1``: key ``j`` of a row is absolute position ``total_len - row.shape[-1] + j``.
  A sliding-window layer holds fewer keys; positions it does not hold carry zero attention.
  ``total_len`` is the length of the sequence up to and including the query position; all
  sequences of a batch share it (no padding), as in the trace engine.
* ``sink_tokens`` (default :data:`DEFAULT_SINK_TOKENS` = 4): positions ``0 .. sink_tokens - 1`` are
  sinks. StreamingLLM keeps 4 initial tokens as attention sinks, which is enough to cover a BOS
  token plus the few first tokens that models use as sinks.
* ``local_window`` (default :data:`DEFAULT_LOCAL_WINDOW` = 32): the ``local_window`` most recent
  positions ``total_len - local_window .. total_len - 1`` are local, *including the query position
  itself*. 32 tokens covers the question / generation tail in front of the query without reaching
  far into the context paragraphs.
* The **denominator** is the attention mass on eligible positions ``p`` with
  ``sink_tokens <= p < total_len - local_window``. The **numerator** is the mass on supporting-fact
  positions *inside that same range*: support tokens that fall in the sink or local window are not
  counted either, so the numerator is a part of the denominator and the score lies in ``[0, 1]``.
  (It is computed as ``support / (support + other)``, which stays ``<= 1`` under float rounding.)
* When the denominator is 0 (every position is sink/local, or a sliding-window layer holds no
  eligible key, or the head puts all its mass on sink/local keys) the score is **0**: a head with
  no long-range attention retrieves nothing from the context.
* ``threshold`` (default :data:`DEFAULT_THRESHOLD` = 0.5): a head is a reasoning retrieval head iff
  its score is *strictly* greater. 0.5 means the head gives the supporting facts at least as much
  attention as all the rest of the long-range context combined. Supporting facts are typically
  2-5 sentences out of ~40 in the HotpotQA distractor setting (a share ``f`` of ~5-10 % of the
  context tokens), so uniform attention scores only ~0.05-0.1; a head above 0.5 is 5-10x that
  score, and per token it attends the supporting facts ``(1 - f) / f`` ~ 9-19x (roughly >= 10x) more
  than the other context tokens: a concentration far above chance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .retrieval import Head, mask_to_heads

DEFAULT_SINK_TOKENS = 4
"""Leading attention-sink positions excluded from Eq. 2 (StreamingLLM keeps 4 sink tokens)."""

DEFAULT_LOCAL_WINDOW = 32
"""Most recent positions (query position included) excluded from Eq. 2."""

DEFAULT_THRESHOLD = 0.5
"""Score a head must strictly exceed: more mass on the supporting facts than on the rest of the context."""


def _check_window(sink_tokens: int, local_window: int) -> None:
    if sink_tokens < 0:
        raise ValueError(f"dynheads: sink_tokens must be >= 0, got {sink_tokens}")
    if local_window < 0:
        raise ValueError(f"dynheads: local_window must be >= 0, got {local_window}")


def reasoning_scores(
    rows: Sequence[torch.Tensor],
    total_len: int,
    support_mask: torch.Tensor,
    sink_tokens: int = DEFAULT_SINK_TOKENS,
    local_window: int = DEFAULT_LOCAL_WINDOW,
    first_position: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 2 for every head: ``[batch, layers, heads]`` float32 scores in ``[0, 1]``.

    ``rows[layer]``: ``[batch, heads, keys]`` last-row attention probabilities, keys right-aligned to
    ``total_len - 1``. ``support_mask``: bool ``[batch, total_len]``, True at supporting-fact token
    positions. ``first_position``: for left-padded batches, ``[batch]`` index of each sequence's first
    token (the sinks are counted from there; padding is never eligible). See the module docstring for
    the sink / local-window conventions.
    """
    _check_window(sink_tokens, local_window)
    if total_len <= 0:
        raise ValueError(f"dynheads: total_len must be positive, got {total_len}")
    if len(rows) == 0:
        raise ValueError("dynheads: reasoning_scores needs at least one layer of attention rows")
    if support_mask.dtype != torch.bool:
        raise ValueError(f"dynheads: support_mask must be a bool tensor, got {support_mask.dtype}")
    if support_mask.dim() != 2 or support_mask.shape[1] != total_len:
        raise ValueError(f"dynheads: support_mask must be [batch, {total_len}], got {list(support_mask.shape)}")
    lo, hi = sink_tokens, total_len - local_window  # eligible: lo <= p < hi
    scores = []
    for layer, row in enumerate(rows):
        if not isinstance(row, torch.Tensor) or row.dim() != 3:
            raise ValueError(f"dynheads: rows[{layer}] must be a [batch, heads, keys] tensor")
        keys = row.shape[-1]
        if keys > total_len or row.shape[0] != support_mask.shape[0]:
            raise ValueError(
                f"dynheads: rows[{layer}] {list(row.shape)} does not fit total_len={total_len}, "
                f"batch={support_mask.shape[0]}"
            )
        row = row.float()
        offset = total_len - keys
        pos = torch.arange(offset, total_len, device=row.device)[None, :]
        start = lo if first_position is None else first_position.to(row.device)[:, None] + lo
        eligible = (pos >= start) & (pos < hi)  # [1 or batch, keys]
        support = support_mask[:, offset:].to(row.device) & eligible  # [batch, keys]
        other = eligible & ~support
        num = (row * support[:, None, :]).sum(dim=-1)  # [batch, heads]
        rest = (row * other[:, None, :]).sum(dim=-1)
        den = num + rest
        safe = torch.where(den > 0, den, torch.ones_like(den))
        scores.append(torch.where(den > 0, num / safe, torch.zeros_like(num)))
    return torch.stack(scores, dim=1)


def reasoning_heads(scores: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> list[Head]:
    """Sorted ``(layer, head)`` pairs of one sequence whose score is strictly above ``threshold``.

    ``scores``: ``[layers, heads]`` (one sequence of :func:`reasoning_scores`).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"dynheads: threshold must lie in [0, 1], got {threshold}")
    if scores.dim() != 2:
        raise ValueError(f"dynheads: scores must be [layers, heads], got {list(scores.shape)}")
    return mask_to_heads(scores > threshold)


def reasoning_scores_for_sequence(
    rows: Sequence[torch.Tensor],
    total_len: int,
    support_indices: Sequence[int],
    sink_tokens: int = DEFAULT_SINK_TOKENS,
    local_window: int = DEFAULT_LOCAL_WINDOW,
) -> torch.Tensor:
    """Eq. 2 for one sequence: ``[layers, heads]`` scores.

    ``rows[layer]`` is ``[heads, keys]`` (or ``[1, heads, keys]``); ``support_indices`` the absolute
    token positions of the supporting facts (each in ``[0, total_len)``).
    """
    if total_len <= 0:
        raise ValueError(f"dynheads: total_len must be positive, got {total_len}")
    indices = [int(i) for i in support_indices]
    bad = [i for i in indices if not 0 <= i < total_len]
    if bad:
        raise ValueError(f"dynheads: support indices {bad[:5]} out of range [0, {total_len})")
    rows = [r if r.dim() == 3 else r.unsqueeze(0) for r in rows]
    mask = torch.zeros((1, total_len), dtype=torch.bool)
    mask[0, indices] = True
    return reasoning_scores(rows, total_len, mask, sink_tokens, local_window)[0]
