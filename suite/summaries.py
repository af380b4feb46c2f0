"""Summaries that both tasks' stages share: means over a cell's samples, the matched-N note, the progressive ablation."""

from __future__ import annotations

import statistics
from typing import Any

from .tables import fmt, markdown, shown, with_intervals

CONDITIONS = ("none", "dynamic", "static", "random")


def samples_of(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for c in cells for r in c["samples"]]


def point_estimates(intervals: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, float | None]:
    """``<metric>_<condition>``: each condition's mean over documents, read from its interval record (one code path
    for the number a table shows and the interval beside it; None where no document carries the metric)."""
    return {f"{m}_{c}": (intervals.get(f"{m}_{c}") or {}).get("estimate") for c in CONDITIONS for m in metrics}


def masking_intervals(cells: list[dict[str, Any]], metrics: tuple[str, ...], seed: int,
                      subgroups: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Claim 2 with its uncertainty: per metric and condition the mean over documents with a 95 % bootstrap
    interval (``<metric>_<condition>``), and the paired difference of dynamic masking against static and
    random masking on the same documents (``<metric>_dynamic_minus_<other>``: t interval and sign-flip p, decided
    as one family by the ``masking`` rule of ``claims.yaml``; the paper predicts a negative difference: masking
    the dynamic heads hurts more). ``subgroups``: metrics only some documents carry (e.g. ``f1_bridge``), given
    their mean's interval over those documents."""
    from ..metrics.inference import paired_test
    from ..metrics.intervals import mean_interval
    from .verdicts import decide_table

    samples = samples_of(cells)
    out: dict[str, dict[str, Any]] = {}
    tests: dict[str, tuple[dict[str, Any], int]] = {}
    for m in (*metrics, *subgroups):
        values = {c: [r["conditions"][c][m] for r in samples if m in r["conditions"][c]] for c in CONDITIONS}
        for c in CONDITIONS:
            if values[c]:
                out[f"{m}_{c}"] = mean_interval(values[c], seed).record()
        if m in metrics:
            for other in ("static", "random"):
                tests[f"{m}_dynamic_minus_{other}"] = (paired_test(values["dynamic"], values[other], seed).record(), -1)
    return {**out, **decide_table("masking", tests)}


def claim1_tests(samples: list[Any], static_ranking: list | None, seed: int, top_n: int = 20) -> dict[str, Any]:
    """Claim 1's two per-generation statistics (:func:`dynheads.metrics.table1_sums.claim1_units`) with the t
    interval of their mean over generations and the sign-flip p against the null ``claims.yaml`` declares for
    them (0.10 for ``outside_static``, 0 for ``temporal``), so the claims table can decide them."""
    from ..metrics.inference import one_sample_test
    from ..metrics.table1_sums import claim1_units
    from .verdicts import load

    nulls = {source[-1]: null for c in load()[1] for _, source, null in c.parts}
    out = {}
    for name, values in claim1_units(samples, static_ranking, top_n).items():
        if len(values):
            out[name] = one_sample_test(values, nulls.get(name, 0.0), seed).record()
    return out


def table1_intervals(samples: list[Any], static_ranking: list | None, seed: int) -> dict[str, Any]:
    """Every Table 1 statistic with its 95 % bootstrap interval over generations (each statistic pools the
    steps of the drawn generations, as the table does); ``adjacent_jaccard`` is Claim 1's statistic. Unique
    heads and entropy can only shrink when generations repeat, so their intervals sit at or below the
    estimate: read them as how much the count depends on which generations were drawn."""
    import numpy as np

    from ..metrics.table1_sums import table1_statistics, table1_sums
    from ..metrics.intervals import draw_weights, percentile_interval

    if not samples:
        return {}
    sums = table1_sums(samples, static_ranking)
    whole = table1_statistics(sums, np.ones(len(samples)))
    drawn = table1_statistics(sums, draw_weights(len(samples), seed))
    return {k: percentile_interval(drawn[k], float(whole[k][0]), len(samples)).record()
            for k in whole if not np.isnan(whole[k][0])}


def interval_text(record: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.410 [0.330, 0.490]`` from an interval record (— when absent)."""
    from ..metrics.intervals import Interval

    return Interval.from_record(record).text(digits) if record else "—"


def paired_table(intervals: dict[str, dict[str, Any]], metrics: list[tuple[str, str]], static_title: str,
                 random_title: str) -> str:
    """Markdown rows of the paired differences (dynamic minus static / random) with their verdicts (one family:
    the ``masking`` rule of ``claims.yaml``)."""
    from .verdicts import p_text

    rows = []
    for other, title in (("static", static_title), ("random", random_title)):
        for m, label in metrics:
            r = intervals[f"{m}_dynamic_minus_{other}"]
            rows.append([f"dynamic − {title}", label, interval_text(r), r["n"], p_text(r), r["verdict"]])
    return markdown(["paired difference (same documents)", "metric", "mean [95 % t CI]", "n",
                     "sign-flip p / Holm p (family size)", "Claim 2 verdict"], rows)


def dynamic_masking(cells: list[dict[str, Any]]) -> dict[str, float | None]:
    """Heads the dynamic condition masked per step, over all steps and over the steps that masked any
    (the latter is what N was matched to)."""
    from ..metrics.dynamism import masked_means

    per_step, per_masked_step = masked_means([k for r in samples_of(cells) for k in r["conditions"]["dynamic"]["gated"]])
    return {"dynamic_masked_per_step": per_step, "dynamic_masked_per_masked_step": per_masked_step}


def ks_and_names(ks: list[int]) -> tuple[list[int], list[str]]:
    ks = [int(k) for k in ks]
    return ks, ["none" if k == 0 else f"dynamic:{k}" for k in ks]


def progressive_rows(cells: list[dict[str, Any]], ks: list[int], names: list[str], top20: list, metrics: tuple[str, ...],
                     seed: int) -> list[dict[str, Any]]:
    """Figures 3 / 7: per k, the task scores, heads masked per step and mean peak static compensation m_s, each
    with its 95 % bootstrap interval over documents (``intervals``; heads per step pooled over each draw's steps)."""
    from ..metrics.dynamism import peak_static_compensation
    from ..metrics.intervals import mean_interval, ratio_interval

    rows = []
    for k, name in zip(ks, names):
        results = [r["conditions"][name] for r in samples_of(cells)]
        peaks = [peak_static_compensation(res["heads"], res["heads_after"], top20) for res in results]
        masked = ratio_interval([sum(res["gated"]) for res in results], [len(res["gated"]) for res in results], seed)
        intervals = {"static_compensation": mean_interval(peaks, seed).record(),
                     **{m: mean_interval([res[m] for res in results], seed).record() for m in metrics},
                     **({"masked_per_step": masked.record()} if masked else {})}
        rows.append({"k": k, "samples": len(results), "static_compensation": statistics.fmean(peaks),
                     **{m: statistics.fmean(res[m] for res in results) for m in metrics},
                     "masked_per_step": statistics.fmean(g for res in results for g in res["gated"]),
                     "intervals": intervals})
    return rows


def condition_titles(n: int) -> dict[str, str]:
    return {"none": "no masking", "dynamic": "dynamic heads", "static": f"top-{n} static", "random": f"{n} random"}


def matching_note(static: Any, summary: dict[str, Any], n: int) -> str:
    """How N was matched, and how many heads the dynamic condition actually masked here."""
    return (f"N = {n} static / random heads masked at every step. N is the calibration's mean number of dynamic "
            f"heads masked per step that masked any ({fmt(static.masked_per_masked_step, 2)}; over all steps "
            f"{fmt(static.masked_per_step, 2)}). Here the dynamic condition masked "
            f"{fmt(summary['dynamic_masked_per_masked_step'], 2)} heads per masking step "
            f"({fmt(summary['dynamic_masked_per_step'], 2)} over all steps).\n")


def progressive_table(rows: list[dict[str, Any]], key: str, title: str, metrics: list[tuple[str, str]]) -> str:
    """Figures 3 / 7 as Markdown, one section per model that ran the stage."""
    text = f"# {title}\n\nMeans over documents with 95 % bootstrap intervals (documents resampled, seeded).\n"
    for r in rows:
        prog = r.get(key)
        if not prog:
            continue
        text += f"\n## {r['model']}\n\n" + markdown(
            ["k", "samples", "masked / step", "mean m_s (compensated ∩ top-20 static)", *(label for _, label in metrics)],
            [[p["k"], p["samples"], *(shown(with_intervals(p), m) for m in ("masked_per_step", "static_compensation")),
              *(shown(with_intervals(p), m) for m, _ in metrics)] for p in prog])
    return text
