"""``run_suite`` stages of paper Section 3 on ``niah_uuid`` (Eq. 1 copy-paste retrieval heads), and their tables.

* ``calibrate``   -- static retrieval heads and the matched head count N (cached per model);
* ``niah``        -- the grid under none, dynamic, static top-N and random N after one shared prefill
  per prompt: Figure 2 heatmaps and the masking table;
* ``dynamism``    -- Table 1 and Table 5 over every decode step of the unmasked grid;
* ``progressive`` -- Figure 3: k dynamic heads masked per step, compensated heads;
* ``probes``      -- Claim 3: unmasked generations with hidden states, temporal CCA (Figure 4) and the
  MLP classifier with its baselines (Table 2).

Every number comes from lm-eval running the ``dynheads`` model on ``niah_uuid`` (the same code path as
``lm_eval --model dynheads``), through resumable cells (:mod:`dynheads.suite.cells`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...util import write_atomic
from ...traces import COPY_PASTE
from ...tasks.niah_uuid import utils as task  # importing the task registers its static-head calibration
from .report import markdown_table, per_cell
from ..cells import CellRunner, LmEvalTask
from ..model import ModelSuite
from ..summaries import (CONDITIONS, condition_titles, dynamic_masking, interval_text, ks_and_names, masking_intervals,
                         matching_note, paired_table, point_estimates, progressive_rows, samples_of, table1_intervals,
                         claim1_tests)
from ..tables import markdown

CELLS = LmEvalTask("niah_uuid", kind=COPY_PASTE, check_metric="acc", seeded=True, score=task.score,
                 describe=lambda doc: {"run": doc["run"], "uuid": doc["uuid"]})


# ------------------------------------------------------------------------------------------ stages
def calibrate(suite: ModelSuite) -> dict[str, Any]:
    """Static heads on NIAH (Eq. 1 activation rate) and N, summarised in ``calibration.json``."""
    return suite.write_calibration(COPY_PASTE, suite.profile["calibration"], "calibration.json")


def niah_cell(runner: CellRunner, length: int, depth: float, runs: int, conditions: list[str], heads: int | None,
              hidden: bool = False, seed: int | None = None) -> dict[str, Any]:
    metadata = {"lengths": [length], "depths": [depth], "runs": runs, **({"seed": seed} if seed is not None else {})}
    return runner.run(cell_key(length, depth), CELLS, metadata, conditions, heads, {"length": length, "depth": depth}, hidden)


def cell_key(length: int, depth: float) -> str:
    return f"L{length}_D{depth:g}"


def grid(suite: ModelSuite) -> list[dict[str, Any]]:
    """The grid's cells under the four conditions (shared by ``niah``, ``dynamism`` and ``probes``, which reuses
    their unmasked passes: the cells record hidden states)."""
    def compute() -> list[dict[str, Any]]:
        g = suite.profile["grid"]
        n = suite.lm.calibrated_count(COPY_PASTE)
        runner = suite.runner("niah")
        cells = [(L, d) for L in g["lengths"] for d in g["depths"]]
        return [niah_cell(runner, L, d, g["runs"], list(CONDITIONS), n, hidden=True)
                for L, d in suite.progress(cells, desc=f"{suite.name} NIAH grid (4 conditions)", unit="cell")]

    return suite.shared("niah_grid", compute)


def cell_summaries(cells: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    return per_cell({"length": c["length"], "depth": c["depth"], **r["conditions"][condition]}
                    for c in cells for r in c["samples"])


def masking(suite: ModelSuite) -> dict[str, Any]:
    """Figure 2: acc / ROUGE-L per grid cell under each condition, heatmaps and the masking table."""
    from .figures import condition_heatmaps

    cells = grid(suite)
    n = suite.lm.calibrated_count(COPY_PASTE)
    titles = condition_titles(n)
    per = {cond: cell_summaries(cells, cond) for cond in CONDITIONS}
    for metric, label in (("acc", "accuracy"), ("rouge_l", "ROUGE-L")):
        condition_heatmaps([(titles[c], per[c]) for c in CONDITIONS], metric,
                           f"{suite.name}: NIAH {label} by masked heads (N = {n})", suite.dir / f"niah_masking_{metric}.png")
    intervals = masking_intervals(cells, ("acc", "rouge_l"), suite.seed)
    summary = {"samples": len(samples_of(cells)), "matched_n": n, **dynamic_masking(cells),
               **point_estimates(intervals, ("acc", "rouge_l")), "intervals": intervals}
    text = [f"# {suite.name}: NIAH masking ablation (paper Figure 2)\n", matching_note(suite.lm.static(COPY_PASTE), summary, n),
            "Means over documents with 95 % bootstrap intervals (documents resampled, seeded).\n"]
    text.append(markdown(["condition", "acc", "ROUGE-L"],
                         [[titles[c], interval_text(intervals[f"acc_{c}"]), interval_text(intervals[f"rouge_l_{c}"])]
                          for c in CONDITIONS]))
    text.append("\n" + paired_table(intervals, [("acc", "acc"), ("rouge_l", "ROUGE-L")], titles["static"], titles["random"]))
    for c in CONDITIONS:
        text.append(f"\n## {titles[c]}: accuracy\n\n" + markdown_table(per[c], "acc")
                    + f"\n\n## {titles[c]}: ROUGE-L\n\n" + markdown_table(per[c], "rouge_l") + "\n")
    write_atomic(suite.dir / "niah_masking.md", "\n".join(text))
    write_atomic(suite.dir / "niah_masking.json", json.dumps({"summary": summary, "cells": per}, indent=1))
    return summary


def dynamism(suite: ModelSuite) -> dict[str, Any]:
    """Table 1 / Table 5 statistics over every decode step of the unmasked grid."""
    from ...metrics.dynamism import summarise

    samples = [r["conditions"]["none"]["heads"] for r in samples_of(grid(suite))]
    static = suite.lm.static(COPY_PASTE)
    # a calibration in which no head ever retrieved ranks heads by index only: no Jaccard then
    ranking = static.heads if static.informative else None
    stats = summarise(samples, suite.total_heads, ranking)
    stats["intervals"] = table1_intervals(samples, ranking, suite.seed)
    stats["claim1"] = claim1_tests(samples, ranking, suite.seed)
    write_atomic(suite.dir / "dynamism.json", json.dumps(stats, indent=1))
    return stats


def progressive(suite: ModelSuite) -> list[dict[str, Any]]:
    """Figure 3: acc / ROUGE-L and compensating static heads as k dynamic heads are masked per step."""
    from ..plotting import progressive_plot

    p = suite.profile["progressive"]
    ks, names = ks_and_names(p["ks"])
    runner = suite.runner("progressive")
    cells = [niah_cell(runner, p["length"], d, p["runs"], names, None)
             for d in suite.progress(p["depths"], desc=f"{suite.name} progressive ablation", unit="cell")]
    rows = progressive_rows(cells, ks, names, suite.lm.static(COPY_PASTE).heads[:20], ("acc", "rouge_l"), suite.seed)
    progressive_plot(rows, f"{suite.name}: progressive ablation at {p['length']} tokens", suite.dir / "progressive_ablation.png")
    write_atomic(suite.dir / "progressive.json", json.dumps(rows, indent=1))
    return rows


def unmasked_cells(suite: ModelSuite) -> tuple[list[dict[str, Any]], dict[Path, tuple[float, int]]]:
    """The unmasked generations with hidden states, and each cell's trace folder with its (depth, length) cell:
    the grid's cells (their unmasked passes) plus the probe profile's further unmasked generations, whose
    documents use seed + 1 so that no generation occurs twice. Read by ``probes`` and ``hallucination``."""
    p = suite.profile["probes"]
    cells = list(grid(suite))
    g = suite.profile["grid"]  # folder names from the grid's parameters: another shard's cell may not exist yet
    folder_cells = {suite.dir / "niah" / "cells" / f"{cell_key(L, d)}.traces": (d, L) for L in g["lengths"] for d in g["depths"]}
    runner = suite.runner("probes")
    more = [(L, d) for L in p["lengths"] for d in p["depths"]]
    for L, d in suite.progress(more, desc=f"{suite.name} probes: further unmasked generations with hidden states", unit="cell"):
        cells.append(niah_cell(runner, L, d, p["runs"], ["none"], None, hidden=True, seed=suite.seed + 1))
        folder_cells[runner.folder / f"{cell_key(L, d)}.traces"] = (d, L)
    return cells, folder_cells


def probes(suite: ModelSuite) -> dict[str, Any]:
    """Claim 3 on NIAH: temporal CCA (Figure 4) and the MLP classifier with its baselines (Table 2).

    The data are :func:`unmasked_cells`. Every document reads its own haystack window; the split is by (length,
    depth) cell, so no test document shares a cell, a needle position or a context with a training one."""
    from ..plotting import cca_plot
    from ..probing import fit_or_reuse

    p = suite.profile["probes"]
    cells, folder_cells = unmasked_cells(suite)
    settings = {k: p[k] for k in ("seed", "max_offset", "components", "max_epochs", "hidden_sizes")}
    report = fit_or_reuse(suite, "probes", cells, list(folder_cells), settings, folder_cells=folder_cells)
    cca_plot(report["cca"], f"{suite.name}: NIAH hidden state at n vs Eq. 1 head indicators at n + k (Figure 4)",
             suite.dir / "figure4.png")
    return report
