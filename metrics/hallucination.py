"""Hallucination labels and the raw signals of the answer span (the paper's concluding conjecture, issue 21).

The paper conjectures that "the absence of retrieval head activation during the generation of factual
claims could serve as an intrinsic, interpretable indicator of potential hallucination". Testing it needs
three pure pieces, kept here so that the suite's stage and lm-eval's ``process_results`` share them:

* which decode steps wrote the answer (:func:`token_ends`, :func:`answer_steps`): the steps whose token's
  characters overlap the answer's character span in the response (each task says where its answer is);
* labels: per answer (the task's score) and, for NIAH, per token (:func:`copy_labels`);
* the signals: retrieval-head absence (:func:`absence_share`) and Lookback Lens's lookback ratio
  (:func:`lookback_ratios`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def token_ends(decode: Callable[[list[int]], str], token_ids: Sequence[int]) -> list[int]:
    """The character offset in ``decode(token_ids)`` where each step's token ends.

    Why decode prefixes rather than sum token lengths: detokenisers merge and strip (leading spaces, byte
    pieces), so only the decoded prefix says where a step's characters end in the text that was scored.
    Offsets are made non-decreasing (a prefix ending inside a multi-byte character decodes shorter).
    """
    ends, last = [], 0
    for t in range(len(token_ids)):
        last = max(last, len(decode(list(token_ids[: t + 1]))))
        ends.append(last)
    return ends


def answer_steps(ends: Sequence[int], span: tuple[int, int]) -> list[int]:
    """Steps whose characters ``[ends[t-1], ends[t])`` overlap the answer's ``[start, end)``; every step with
    characters when the span is empty (a blank answer still gets a score: that of its whole response)."""
    start, end = span
    bounds = list(zip([0, *ends[:-1]], ends))
    if end > start:
        return [t for t, (a, b) in enumerate(bounds) if a < end and b > start]
    return [t for t, (a, b) in enumerate(bounds) if b > a]


def scored_steps(ends: Sequence[int], span: tuple[int, int]) -> list[int]:
    """The steps an answer-level score reads: :func:`answer_steps`, or every step when none overlaps the answer (so
    every answer gets a score, that of its whole response). One definition for the lm-eval metric and the suite."""
    return answer_steps(ends, span) or list(range(len(ends)))


def copy_labels(response: str, ends: Sequence[int], span: tuple[int, int], reference: str) -> dict[int, bool]:
    """Per answer step, True when its token is *not* the reference token it should copy (a hallucinated token).

    Alignment by character offset: a step's characters inside the answer span, at offset ``o`` from the span's
    start, are correct when they equal ``reference[o : o + len]``. Why characters, not token positions: a
    faithful copy may be tokenised differently from the needle (a leading space, a merged piece), and it is
    the characters that are copied; why offsets, not an edit alignment: a reader copying a UUID needs each
    character at its place, so after a dropped or inserted character every later one is wrong.
    """
    start, end = span
    labels = {}
    for t in answer_steps(ends, span) if end > start else []:
        a, b = max(start, ends[t - 1] if t else 0), min(end, ends[t])
        piece = response[a:b]
        labels[t] = piece != reference[a - start : b - start]
    return labels


def absence_share(heads: Sequence[Sequence], steps: Sequence[int]) -> float:
    """Share of ``steps`` at which no head retrieved (``heads[t]`` empty): the paper's conjectured signal. NaN
    without steps."""
    if not steps:
        return float("nan")
    return float(np.mean([len(heads[t]) == 0 for t in steps]))


def lookback_ratios(context_mass: np.ndarray, prompt_tokens: int, response_header: int = 0) -> np.ndarray:
    """Lookback Lens's ratio per step and head: mean attention on a context token over that plus the mean on a new
    token (Chuang et al., 2024, Eq. 1), the new tokens counted as its authors count them.

    ``context_mass``: ``[steps, heads]`` attention mass on the context, the ``prompt_tokens - response_header`` prompt
    positions before the response header. The new tokens at step ``t`` (0-based) are the ``response_header`` header
    tokens (the authors' ``\\n#Answer#:``; here the chat template's assistant header) and the ``t`` generated ones;
    they hold the rest of the row (rows sum to 1). Without a header, step 0 sees no new token and its ratio is 1.
    """
    mass = np.clip(np.asarray(context_mass, dtype=float), 0.0, 1.0)
    new = response_header + np.arange(len(mass), dtype=float)[:, None]
    on_context = mass / float(max(prompt_tokens - response_header, 1))
    on_new = np.divide(1.0 - mass, new, out=np.zeros_like(mass), where=new > 0)
    total = on_context + on_new
    return np.divide(on_context, total, out=np.ones_like(mass), where=total > 0)


def agg_auroc(items: Sequence[tuple[float, bool]]) -> float:
    """lm-eval aggregation of ``(score, hallucinated)`` pairs: the AUROC of the score (NaN without both classes)."""
    from sklearn.metrics import roc_auc_score

    labels = [bool(label) for _, label in items]
    if len(set(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, [float(score) for score, _ in items]))
