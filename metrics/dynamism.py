"""Dynamism statistics of retrieval heads (paper Table 1, Table 5, Appendix A.1-A.3).

Why this module exists: the paper's claim is that the set of Eq. 1 retrieval heads changes from one
decode step to the next. Its evidence is a handful of corpus statistics over generation traces
(heads per step, distinct heads, Jaccard overlap with the static top-k heads and between adjacent
steps, activation entropy), plus the bookkeeping of the masking experiments (how many static /
random heads to mask, which heads compensate when the dynamic ones are masked). They are computed
here as pure functions of head sets, so they can be tested on hand-built traces and applied alike
to trace files, lm-eval per-sample results, and ``run_suite`` outputs. The module uses only the
standard library (no torch, no numpy), so importing it is cheap.

Input layout. A *head* is ``(layer, head)``, both 0-based ints; lists ``[layer, head]`` (as in JSON
traces) and tuples are both accepted and handled as tuples. A *step* is an iterable of the heads
active at that decode step (duplicates count once). A *sample* is the list of steps of one
generation; ``samples`` is a list of samples.

Conventions (these define the numbers reported in the README):

* Every decode step of every sample counts, including steps with no active head (e.g. the EOS step).
* ``jaccard(A, B) = |A ∩ B| / |A ∪ B|``; it is undefined (``None``) when both sets are empty.
* Heads per step: mean and *population* standard deviation (``statistics.pstdev``) of ``|H_t|`` over
  all steps; undefined when there is no step.
* Unique heads: the number of distinct heads active at least once.
* Jaccard with the static top-k set ``S`` (non-empty): mean over all steps of ``jaccard(H_t, S)``;
  an empty ``H_t`` scores 0. Top-k is ``static_ranking[:k]`` (all of it when the ranking is shorter).
* Adjacent Jaccard: mean over consecutive step pairs ``(t, t+1)`` *within* a sample (never across
  samples) of ``jaccard(H_t, H_{t+1})``; pairs where both sets are empty are skipped (undefined),
  pairs with exactly one empty set score 0. Undefined when no pair is defined.
* Activation entropy (Eq. 3): ``S = -Σ_h p_h ln p_h`` with ``p_h = c_h / Σ_g c_g``, where ``c_h`` is
  the number of steps in which head ``h`` is active: the normalised activation distribution, natural
  log. Uniform use of 20 heads gives ``ln 20 ≈ 2.9957`` (the baseline of Appendix A.3); a single
  head gives 0. Undefined when there is no activation at all.
* Activation rate of a head: (number of steps in which it is active) / (total number of steps). The
  static ranking sorts every head of the model by this rate, descending, ties by ``(layer, head)``
  ascending; never-active heads score 0.0.
* Matched head count (Appendix A.1): the number ``N`` of static / random heads to mask is the mean
  number of dynamic heads masked per step, over the steps that masked at least one head, rounded
  half up (``floor(mean + 0.5)``); 0 when no step masked anything.
* Compensation (Appendix A.2): ``E_t = H'_t − H_t`` (heads active after masking that were not active
  before); the per-sample peak static compensation is ``m_s = max_t |E_t ∩ S|`` (0 for no step).

Undefined statistics are ``None`` in the plain functions. The lm-eval aggregation helpers
(``agg_*``) must return a float, so they return ``float('nan')`` instead: lm-eval prints ``nan``,
which is visibly absent and never a silent zero.
"""

from __future__ import annotations

import math
import operator
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .heads import Head


__all__ = [
    "Head",
    "jaccard",
    "heads_per_step",
    "unique_heads",
    "jaccard_with_static",
    "adjacent_jaccard",
    "activation_entropy",
    "activation_rates",
    "rank_static_heads",
    "masked_means",
    "matched_head_count",
    "rank_heads_by_mean_score",
    "compensated_heads",
    "peak_static_compensation",
    "summarise",
    "agg_heads_per_step",
    "agg_heads_per_step_std",
    "agg_unique_heads",
    "agg_adjacent_jaccard",
    "agg_entropy",
    "agg_jaccard_static_20",
    "agg_jaccard_static_50",
    "agg_jaccard_static_100",
]

# --------------------------------------------------------------------------- normalisation


def _head(h: Any) -> Head:
    """``[layer, head]`` or ``(layer, head)`` to a tuple of ints; anything else raises ``ValueError``."""
    try:
        layer, head = h
    except (TypeError, ValueError):
        raise ValueError(f"dynheads: a head must be a (layer, head) pair, got {h!r}") from None
    if isinstance(layer, bool) or isinstance(head, bool):
        raise ValueError(f"dynheads: a head must be a pair of ints (layer, head), got {h!r}")
    try:
        return (operator.index(layer), operator.index(head))
    except TypeError:
        raise ValueError(f"dynheads: a head must be a pair of ints (layer, head), got {h!r}") from None


def _heads(step: Iterable[Any]) -> frozenset[Head]:
    """A step as a frozenset of int pairs; a frozenset is taken as normalised already (as :func:`normalised_samples`
    makes it), so statistics over many pairs of normalised steps do not rebuild each set per pair."""
    return step if isinstance(step, frozenset) else frozenset(_head(h) for h in step)


def normalised_samples(samples: Sequence[Sequence[Iterable[Any]]]) -> list[list[frozenset[Head]]]:
    """Every step as a frozenset of ``(layer, head)`` int pairs. A step that is already a frozenset is taken as
    normalised by this function, so a bootstrap that recomputes the statistics on thousands of redraws of the
    same generations normalises them once."""
    return [[_heads(step) for step in sample] for sample in samples]




def _all_steps(samples: list[list[frozenset[Head]]]) -> list[frozenset[Head]]:
    return [step for sample in samples for step in sample]


# --------------------------------------------------------------------------- per-trace statistics


def jaccard(a: Iterable[Head], b: Iterable[Head]) -> float | None:
    """``|a ∩ b| / |a ∪ b|``; ``None`` when both sets are empty (undefined)."""
    sa, sb = _heads(a), _heads(b)
    union = sa | sb
    if not union:
        return None
    return len(sa & sb) / len(union)


def heads_per_step(samples: Sequence[Sequence[Iterable[Head]]]) -> tuple[float, float] | None:
    """Mean and population std of ``|H_t|`` over every step of every sample; ``None`` without steps."""
    sizes = [len(step) for step in _all_steps(normalised_samples(samples))]
    if not sizes:
        return None
    return float(statistics.fmean(sizes)), float(statistics.pstdev(sizes))


def unique_heads(samples: Sequence[Sequence[Iterable[Head]]]) -> int:
    """Number of distinct heads active at least once in any step of any sample."""
    seen: set[Head] = set()
    for step in _all_steps(normalised_samples(samples)):
        seen |= step
    return len(seen)


def jaccard_with_static(samples: Sequence[Sequence[Iterable[Head]]], static_top_k: Sequence[Head]) -> float | None:
    """Mean over all steps of ``jaccard(H_t, S)`` with ``S`` the static top-k set (Table 1).

    ``S`` must be non-empty (``ValueError`` otherwise), so every step is defined; an empty ``H_t``
    scores 0. ``None`` when there is no step.
    """
    static = _heads(static_top_k)
    if not static:
        raise ValueError("dynheads: jaccard_with_static needs a non-empty static top-k head set")
    steps = _all_steps(normalised_samples(samples))
    if not steps:
        return None
    return statistics.fmean(len(step & static) / len(step | static) for step in steps)


def adjacent_jaccard(samples: Sequence[Sequence[Iterable[Head]]]) -> float | None:
    """Mean ``jaccard(H_t, H_{t+1})`` over consecutive steps within each sample (never across samples).

    Pairs where both steps are empty are skipped; exactly one empty scores 0. ``None`` when no pair
    is defined.
    """
    values: list[float] = []
    for sample in normalised_samples(samples):
        for a, b in zip(sample, sample[1:]):
            value = jaccard(a, b)
            if value is not None:
                values.append(value)
    if not values:
        return None
    return statistics.fmean(values)


def _activation_counts(steps: list[frozenset[Head]]) -> Counter[Head]:
    counts: Counter[Head] = Counter()
    for step in steps:
        counts.update(step)
    return counts


def activation_entropy(samples: Sequence[Sequence[Iterable[Head]]]) -> float | None:
    """Eq. 3: ``-Σ_h p_h ln p_h`` of the normalised activation distribution; ``None`` without activations.

    ``p_h`` = (steps in which ``h`` is active) / (total activations over all heads and steps).
    """
    counts = _activation_counts(_all_steps(normalised_samples(samples)))
    total = sum(counts.values())
    if total == 0:
        return None
    entropy = -sum((c / total) * math.log(c / total) for c in counts.values())
    return entropy + 0.0  # a single head gives -0.0; report 0.0


def activation_rates(samples: Sequence[Sequence[Iterable[Head]]]) -> dict[Head, float]:
    """Per active head, (steps in which it is active) / (total steps). Empty dict without steps."""
    steps = _all_steps(normalised_samples(samples))
    if not steps:
        return {}
    return {head: count / len(steps) for head, count in _activation_counts(steps).items()}


def rank_static_heads(
    samples: Sequence[Sequence[Iterable[Head]]], num_layers: int, num_heads: int
) -> list[tuple[int, int, float]]:
    """Every head of the model as ``(layer, head, activation rate)``, best first.

    All ``num_layers * num_heads`` heads are listed, never-active ones with 0.0; order is rate
    descending, then ``(layer, head)`` ascending. ``ValueError`` when there is no step or an active
    head lies outside the model's ``num_layers x num_heads`` grid.
    """
    if num_layers <= 0 or num_heads <= 0:
        raise ValueError(f"dynheads: rank_static_heads needs positive num_layers/num_heads, got {num_layers}x{num_heads}")
    steps = _all_steps(normalised_samples(samples))
    if not steps:
        raise ValueError("dynheads: rank_static_heads needs at least one decode step to rank heads")
    counts = _activation_counts(steps)
    for layer, head in counts:
        if not (0 <= layer < num_layers and 0 <= head < num_heads):
            raise ValueError(
                f"dynheads: head ({layer}, {head}) is outside the model's {num_layers} layers x {num_heads} heads"
            )
    rows = [
        (layer, head, counts.get((layer, head), 0) / len(steps))
        for layer in range(num_layers)
        for head in range(num_heads)
    ]
    rows.sort(key=lambda row: (-row[2], row[0], row[1]))
    return rows


# --------------------------------------------------------------------------- masking bookkeeping


def rank_heads_by_mean_score(
    step_scores: Sequence[Sequence[Sequence[float]]], num_layers: int, num_heads: int
) -> list[tuple[int, int, float]]:
    """Every head as ``(layer, head, mean score)`` over all steps, descending, ties by ``(layer, head)``.

    ``step_scores``: one ``[layer][head]`` matrix per step (e.g. the Eq. 2 scores of a trace). This is
    the static ranking for continuous scores, as :func:`rank_static_heads` is for Eq. 1 sets.
    """
    if not step_scores:
        raise ValueError("dynheads: rank_heads_by_mean_score needs at least one step of scores")
    totals = [[0.0] * num_heads for _ in range(num_layers)]
    for matrix in step_scores:
        if len(matrix) != num_layers or any(len(row) != num_heads for row in matrix):
            raise ValueError(f"dynheads: a step's score matrix is not {num_layers} x {num_heads}")
        for layer, row in enumerate(matrix):
            for head, value in enumerate(row):
                totals[layer][head] += float(value)
    n = len(step_scores)
    ranked = [(layer, head, totals[layer][head] / n) for layer in range(num_layers) for head in range(num_heads)]
    return sorted(ranked, key=lambda r: (-r[2], r[0], r[1]))


def masked_means(masked_counts: Sequence[int]) -> tuple[float | None, float | None]:
    """Mean heads masked per step over all steps, and over the steps that masked any (``None`` when
    there is no such step): the two means reported beside the matched count N."""
    positive = [c for c in masked_counts if c > 0]
    return (statistics.fmean(masked_counts) if len(masked_counts) else None,
            statistics.fmean(positive) if positive else None)


def matched_head_count(masked_counts: Sequence[int]) -> int:
    """``N`` = mean size of the masked dynamic sets, over the steps that masked any head, rounded half up.

    The paper masks as many static / random heads as dynamic heads were masked on average
    (Appendix A.1). Steps with nothing to mask are left out of that average: once the copying heads
    are masked, a model often stops copying and later steps have no retrieval head at all (the
    deflation Appendix A.2 describes), so an all-steps mean would measure how early generation
    derailed rather than how many heads a masking removes. 0 when no step masked anything;
    ``ValueError`` for an empty sequence.
    """
    if len(masked_counts) == 0:
        raise ValueError("dynheads: matched_head_count needs at least one per-step masked-head count")
    positive_mean = masked_means(masked_counts)[1]
    return 0 if positive_mean is None else int(math.floor(positive_mean + 0.5))


def compensated_heads(before: Iterable[Head], after: Iterable[Head]) -> set[Head]:
    """``E = H' − H``: heads active after masking (``after``) that were not active before (Appendix A.2)."""
    return set(_heads(after) - _heads(before))


def peak_static_compensation(
    steps_before: Sequence[Iterable[Head]], steps_after: Sequence[Iterable[Head]], static_top20: Iterable[Head]
) -> int:
    """``m_s = max_t |(H'_t − H_t) ∩ S|`` for one sample (Appendix A.2); 0 for a sample with no step.

    ``steps_before[t]`` = ``H_t`` (unmasked), ``steps_after[t]`` = ``H'_t`` (masked); their lengths
    must match (``ValueError`` otherwise).
    """
    if len(steps_before) != len(steps_after):
        raise ValueError(
            f"dynheads: peak_static_compensation needs equal-length step lists, "
            f"got {len(steps_before)} before and {len(steps_after)} after masking"
        )
    static = _heads(static_top20)
    return max((len(compensated_heads(b, a) & static) for b, a in zip(steps_before, steps_after)), default=0)


# --------------------------------------------------------------------------- corpus summary


def summarise(
    samples: Sequence[Sequence[Iterable[Head]]],
    total_heads: int,
    static_ranking: Sequence[Head] | None,
    ks: Sequence[int] = (20, 50, 100),
) -> dict[str, Any]:
    """All Table 1 statistics of a corpus in one dict (``None`` where undefined).

    Keys: ``steps``, ``samples``, ``heads_per_step_mean``, ``heads_per_step_std``, ``unique_heads``,
    ``total_heads``, ``adjacent_jaccard``, ``entropy`` and, only when ``static_ranking`` is given,
    ``jaccard_static_{k}`` for each ``k`` in ``ks`` (top-k = ``static_ranking[:k]``).
    """
    norm = normalised_samples(samples)
    hps = heads_per_step(norm)
    out: dict[str, Any] = {
        "steps": sum(len(sample) for sample in norm),
        "samples": len(norm),
        "heads_per_step_mean": None if hps is None else hps[0],
        "heads_per_step_std": None if hps is None else hps[1],
        "unique_heads": unique_heads(norm),
        "total_heads": total_heads,
        "adjacent_jaccard": adjacent_jaccard(norm),
        "entropy": activation_entropy(norm),
    }
    if static_ranking is not None:
        for k in ks:
            out[f"jaccard_static_{k}"] = jaccard_with_static(norm, list(static_ranking)[:k])
    return out


# --------------------------------------------------------------------------- lm-eval aggregations
#
# ``process_results`` returns, for every head metric, the same per-sample dict
# ``{"steps": [[[l, h], ...], ...], "total_heads": int, "static": [[l, h], ...] | None}``; lm-eval
# hands the list of those dicts to the aggregation named in the task YAML.


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _item_samples(items: Sequence[Mapping[str, Any]]) -> list[list[frozenset[Head]]]:
    samples = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "steps" not in item:
            raise ValueError(f"dynheads: aggregation item {i} is not a per-sample head dict with 'steps': {item!r:.80}")
        samples.append([_heads(step) for step in item["steps"]])
    return samples


def _item_static(items: Sequence[Mapping[str, Any]]) -> list[Head]:
    static = items[0].get("static") if items else None
    if not static:
        raise ValueError(
            "dynheads: jaccard_static aggregation needs a static head ranking in the per-sample results "
            "('static' is missing or empty); pass a ranked static head list to the model/task"
        )
    return [_head(h) for h in static]


def agg_heads_per_step(items: list[dict]) -> float:
    """Mean heads per step over all steps of all samples (``nan`` without steps)."""
    hps = heads_per_step(_item_samples(items))
    return _nan(None if hps is None else hps[0])


def agg_heads_per_step_std(items: list[dict]) -> float:
    """Population std of heads per step over all steps of all samples (``nan`` without steps)."""
    hps = heads_per_step(_item_samples(items))
    return _nan(None if hps is None else hps[1])


def agg_unique_heads(items: list[dict]) -> float:
    """Number of distinct heads ever active, as a float."""
    return float(unique_heads(_item_samples(items)))


def agg_adjacent_jaccard(items: list[dict]) -> float:
    """Mean adjacent-step Jaccard within samples (``nan`` when no pair is defined)."""
    return _nan(adjacent_jaccard(_item_samples(items)))


def agg_entropy(items: list[dict]) -> float:
    """Activation entropy, Eq. 3, natural log (``nan`` without activations)."""
    return _nan(activation_entropy(_item_samples(items)))


def _agg_jaccard_static(items: list[dict], k: int) -> float:
    static = _item_static(items)
    return _nan(jaccard_with_static(_item_samples(items), static[:k]))


def agg_jaccard_static_20(items: list[dict]) -> float:
    """Mean per-step Jaccard with the static top-20 (``items[0]["static"][:20]``; ``nan`` without steps)."""
    return _agg_jaccard_static(items, 20)


def agg_jaccard_static_50(items: list[dict]) -> float:
    """Mean per-step Jaccard with the static top-50 (``items[0]["static"][:50]``; ``nan`` without steps)."""
    return _agg_jaccard_static(items, 50)


def agg_jaccard_static_100(items: list[dict]) -> float:
    """Mean per-step Jaccard with the static top-100 (``items[0]["static"][:100]``; ``nan`` without steps)."""
    return _agg_jaccard_static(items, 100)
