"""Retrieval scores: how the engine finds a step's retrieval heads from the attention rows it records.

A score object knows its kind, its settings and how to detect heads, so the engine takes one set of
target token indices plus a score and knows no task:

* :class:`CopyPasteScore` (Eq. 1, kind ``copy_paste``): a head retrieves when its most-attended key lies
  in the target (the needle) and holds the token generated at this step; strength = its peak attention.
* :class:`ReasoningScore` (Eq. 2, kind ``reasoning``): attention mass on the target (the supporting
  facts) over mass on the context minus sinks and a local window; a head retrieves above ``threshold``;
  strength = the score, which is also recorded per step.

The kind names the static-head calibration a document uses, the probe a trace trains (indicators to
classify, or scores to regress) and the metrics a task reports; tasks register calibrations per kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...metrics.reasoning import DEFAULT_LOCAL_WINDOW, DEFAULT_SINK_TOKENS, DEFAULT_THRESHOLD, reasoning_scores
from ...metrics.retrieval import argmax_key_positions, copy_paste_mask
from ...traces import COPY_PASTE, REASONING


@dataclass(frozen=True)
class CopyPasteScore:
    """Eq. 1 copy-paste retrieval (see :mod:`dynheads.metrics.retrieval`); it has no settings."""

    kind: ClassVar[str] = COPY_PASTE
    records_scores: ClassVar[bool] = False  # steps keep the head set only

    def detect(self, rows: list[torch.Tensor], seq: torch.Tensor, target: torch.Tensor, first: torch.Tensor,
               token: torch.Tensor, need_strength: bool = False,
               positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Heads ``[rows, layers, heads]`` whose argmax key is a target position holding ``token``; with
        ``need_strength`` (a top-k selection) each head's peak attention, else None (it runs every step).
        ``positions``: those argmax keys when the caller has them already."""
        total = seq.shape[1]
        if positions is None:
            positions = argmax_key_positions(rows, total)
        hit = copy_paste_mask(positions, seq, target, token)
        peak = torch.stack([row.amax(dim=-1) for row in rows], dim=1) if need_strength else None
        return hit, peak


@dataclass(frozen=True)
class ReasoningScore:
    """Eq. 2 reasoning retrieval (see :mod:`dynheads.metrics.reasoning`) with its three settings."""

    sink_tokens: int = DEFAULT_SINK_TOKENS
    local_window: int = DEFAULT_LOCAL_WINDOW
    threshold: float = DEFAULT_THRESHOLD
    kind: ClassVar[str] = REASONING
    records_scores: ClassVar[bool] = True  # steps keep every head's score

    def detect(self, rows: list[torch.Tensor], seq: torch.Tensor, target: torch.Tensor, first: torch.Tensor,
               token: torch.Tensor, need_strength: bool = False,
               positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Heads scoring above ``threshold``, and every head's score (``first``: each row's position 0 in the
        batch's left-padded coordinates)."""
        scores = reasoning_scores(rows, seq.shape[1], target, self.sink_tokens, self.local_window, first_position=first)
        return scores > self.threshold, scores


RetrievalScore = CopyPasteScore | ReasoningScore


def step_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``logits`` (last dim: the vocabulary), the entropy in nats of the next-token distribution and
    the greedy token's probability, in float32: what the hallucination detectors and RIND's uncertainty read.
    The engine (every traced step) and Section 5's RIND (each draft token) both call it."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1), logp.max(dim=-1).values.exp()
