"""``run_suite`` stages of paper Section 3 on ``niah_uuid`` (Eq. 1 copy-paste retrieval heads), and their tables.

* ``calibrate``   -- static retrieval heads and the matched head count N (cached per model);
* ``niah``        -- the grid under none, dynamic, static top-N and random N after one shared prefill
  per prompt: Figure 2 heatmaps and the masking table;
* ``dynamism``    -- Table 1 and Table 5 over every decode step of the unmasked grid;
* ``progressive`` -- Figure 3: k dynamic heads masked per step, compensated heads;
* ``probes``      -- Claim 3: unmasked generations with hidden states, temporal CCA (Figure 4) and the
  MLP classifier with its baselines (Table 2).

Every number comes from lm-eval running the ``dynheads`` model on ``niah_uuid`` (the same code path as
``lm_eval --model dynheads``), through resumable cells (:mod:`dynheads.tasks.suite`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dynheads.models.files import write_atomic
from dynheads.tasks.suite import (CONDITIONS, CellRunner, CellTask, ModelSuite, condition_titles, dynamic_masking,
                                  ks_and_names, matching_note, mean_of, override, progressive_rows, progressive_table,
                                  samples_of)
from dynheads.tasks.probing import PROBE_FIT, apply_arguments, cca_columns, cca_table, predictor_rows
from dynheads.tasks.tables import markdown, mean_std, unique_of

# Sized for the embedded 135M model on 2 CPU cores (--all, NIAH and HotpotQA, in about 15 minutes): it
# retrieves up to ~1.5K tokens and fails near 2K, so the length axis spans both regimes.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "grid": {"lengths": [500, 1000, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1},
        "calibration": {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1},
        # the paper's k = 0, 5, ..., 20 plus 1 and 2: this model has ~4 retrieval heads per step
        "progressive": {"length": 1000, "depths": [0.0, 0.5, 1.0], "runs": 1, "ks": [0, 1, 2, 5, 10, 15, 20]},
        # 45 unmasked generations of ~37 steps (>= 1,500 steps) at short contexts (fast prefill); an MLP sized for 2 cores
        "probes": {"lengths": [500, 750, 1000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 3, **PROBE_FIT,
                   "hidden_sizes": [512, 256]},
    },
    # The paper's settings (Appendix A.1: 5 runs per cell; Figure 3: 20 runs at 5000 tokens) for GPUs.
    "paper": {
        "grid": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5},
        "calibration": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 1},
        "progressive": {"length": 5000, "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 4, "ks": [0, 5, 10, 15, 20]},
        "probes": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5,
                   **PROBE_FIT, "hidden_sizes": [8192, 4096, 4096]},
    },
}
# Gemma-3-270M (base model) runs to the token limit on every prompt and is ~3x slower per sample on
# 2 cores (262K-token vocabulary): its quick profile is a 2 x 2 grid and one progressive prompt.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {
        "grid": {"lengths": [500, 1000], "depths": [0.0, 1.0], "runs": 1},
        "calibration": {"lengths": [500, 1000], "depths": [0.0], "runs": 1},
        "progressive": {"length": 1000, "depths": [0.5], "runs": 1, "ks": [0, 1, 2, 5, 10, 20]},
        "probes": {"lengths": [500, 1000], "depths": [0.0, 0.5, 1.0], "runs": 2, **PROBE_FIT, "hidden_sizes": [256]},
    },
}
# Table 2 of the paper for reference: F1, precision, recall, AUPRC (not computed here).
PAPER_TABLE2 = [("llama3.1-8b", "0.8349", "0.8344", "0.8353", "0.9173"), ("llama3.2-3b", "0.8456", "0.8564", "0.8351", "0.9289"),
                ("qwen3-8b", "0.8566", "0.8780", "0.8362", "0.9339"), ("llama2-13b", "0.8336", "0.8455", "0.8220", "0.9183"),
                ("phi4-mini", "0.8038", "0.8219", "0.7865", "0.8862")]
# Table 1 of the paper for reference (Lin et al.; not computed here).
PAPER_TABLE1 = [
    ("llama3.1-8b", "12.97 ± 7.69", "238 / 1024", "0.3512", "0.2793", "3.8154"),
    ("llama3.2-3b", "9.69 ± 6.18", "149 / 672", "0.3126", "0.3188", "3.0083"),
    ("qwen3-8b", "20.18 ± 10.43", "415 / 1152", "0.4611", "0.3668", "4.1038"),
    ("llama2-13b", "6.20 ± 5.49", "172 / 1600", "0.2077", "0.4979", "4.8973"),
    ("phi4-mini", "6.13 ± 7.09", "176 / 768", "0.1845", "0.5056", "3.5532"),
]


def _score(response: str, doc: dict[str, Any]) -> dict[str, float]:
    from dynheads.tasks.niah_uuid.utils import score

    return score(response, doc)


CELLS = CellTask("niah_uuid", kind="niah", check_metric="acc", seeded=True, score=_score,
                 describe=lambda doc: {"run": doc["run"], "uuid": doc["uuid"]})


# ------------------------------------------------------------------------------------------ profile
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lengths", default=None, help="override the grid's lengths, e.g. 500,1000")
    p.add_argument("--depths", default=None, help="override the grid's depths, e.g. 0,0.5,1")
    p.add_argument("--runs", type=int, default=None, help="override runs per cell of the grid")
    p.add_argument("--calib-lengths", default=None, help="override the calibration lengths, e.g. 500,1000")
    p.add_argument("--calib-depths", default=None, help="override the calibration depths, e.g. 0,1")
    p.add_argument("--prog-length", type=int, default=None, help="override the progressive ablation's length")
    p.add_argument("--prog-depths", default=None, help="override the progressive ablation's depths, e.g. 0.5")
    p.add_argument("--ks", default=None, help="override the progressive ablation's k values, e.g. 0,5,10")
    p.add_argument("--probe-lengths", default=None, help="override the probe generations' lengths, e.g. 500,1000")
    p.add_argument("--probe-depths", default=None, help="override the probe generations' depths, e.g. 0,0.5,1")
    p.add_argument("--probe-runs", type=int, default=None, help="override runs per cell of the probe generations")


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """This task's part of profile ``name`` for ``model_name``, with the command line's overrides."""
    prof = json.loads(json.dumps(PROFILES[name]))
    if name == "quick":
        prof.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    grid, cal, prog = prof["grid"], prof["calibration"], prof["progressive"]
    override(grid, "lengths", args.lengths, int)
    override(grid, "depths", args.depths, float)
    override(cal, "lengths", args.calib_lengths, int)
    override(cal, "depths", args.calib_depths, float)
    override(prog, "depths", args.prog_depths, float)
    override(prog, "ks", args.ks, int)
    override(grid, "runs", args.runs)
    override(prog, "length", args.prog_length)
    probe = prof["probes"]
    override(probe, "lengths", args.probe_lengths, int)
    override(probe, "depths", args.probe_depths, float)
    override(probe, "runs", args.probe_runs)
    apply_arguments(probe, args)
    return prof


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The ``dynheads`` model arguments this task's profile sets (the calibration grid)."""
    cal = prof["calibration"]
    return {"calib_lengths": "+".join(map(str, cal["lengths"])), "calib_depths": "+".join(map(str, cal["depths"])),
            "calib_runs": cal["runs"]}


# ------------------------------------------------------------------------------------------ stages
def calibrate(suite: ModelSuite) -> dict[str, Any]:
    """Static heads on NIAH (Eq. 1 activation rate) and N, summarised in ``calibration.json``."""
    return suite.write_calibration("niah", suite.profile["calibration"], "calibration.json")


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
        n = suite.lm.calibrated_count("niah")
        runner = suite.runner("niah")
        cells = [(L, d) for L in g["lengths"] for d in g["depths"]]
        return [niah_cell(runner, L, d, g["runs"], list(CONDITIONS), n, hidden=True)
                for L, d in suite.progress(cells, desc=f"{suite.name} NIAH grid (4 conditions)", unit="cell")]

    return suite.shared("niah_grid", compute)


def cell_summaries(cells: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    from dynheads.tasks.niah_uuid.utils import per_cell

    return per_cell({"length": c["length"], "depth": c["depth"], **r["conditions"][condition]}
                    for c in cells for r in c["samples"])


def masking(suite: ModelSuite) -> dict[str, Any]:
    """Figure 2: acc / ROUGE-L per grid cell under each condition, heatmaps and the masking table."""
    from dynheads.tasks.niah_uuid.figures import condition_heatmaps
    from dynheads.tasks.niah_uuid.utils import markdown_table

    cells = grid(suite)
    n = suite.lm.calibrated_count("niah")
    titles = condition_titles(n)
    per = {cond: cell_summaries(cells, cond) for cond in CONDITIONS}
    for metric, label in (("acc", "accuracy"), ("rouge_l", "ROUGE-L")):
        condition_heatmaps([(titles[c], per[c]) for c in CONDITIONS], metric,
                           f"{suite.name}: NIAH {label} by masked heads (N = {n})", suite.dir / f"niah_masking_{metric}.png")
    summary = {"samples": len(samples_of(cells)), "matched_n": n, **dynamic_masking(cells),
               **{f"{m}_{c}": mean_of(cells, c, m) for c in CONDITIONS for m in ("acc", "rouge_l")}}
    text = [f"# {suite.name}: NIAH masking ablation (paper Figure 2)\n", matching_note(suite.lm.static("niah"), summary, n)]
    text.append(markdown(["condition", "acc", "ROUGE-L"],
                         [[titles[c], summary[f"acc_{c}"], summary[f"rouge_l_{c}"]] for c in CONDITIONS]))
    for c in CONDITIONS:
        text.append(f"\n## {titles[c]}: accuracy\n\n" + markdown_table(per[c], "acc")
                    + f"\n\n## {titles[c]}: ROUGE-L\n\n" + markdown_table(per[c], "rouge_l") + "\n")
    write_atomic(suite.dir / "niah_masking.md", "\n".join(text))
    write_atomic(suite.dir / "niah_masking.json", json.dumps({"summary": summary, "cells": per}, indent=1))
    return summary


def dynamism(suite: ModelSuite) -> dict[str, Any]:
    """Table 1 / Table 5 statistics over every decode step of the unmasked grid."""
    from dynheads.metrics.dynamism import summarise

    samples = [r["conditions"]["none"]["heads"] for r in samples_of(grid(suite))]
    static = suite.lm.static("niah")
    # a calibration in which no head ever retrieved ranks heads by index only: no Jaccard then
    stats = summarise(samples, suite.total_heads, static.heads if static.informative else None)
    write_atomic(suite.dir / "dynamism.json", json.dumps(stats, indent=1))
    return stats


def progressive(suite: ModelSuite) -> list[dict[str, Any]]:
    """Figure 3: acc / ROUGE-L and compensating static heads as k dynamic heads are masked per step."""
    from dynheads.tasks.plotting import progressive_plot

    p = suite.profile["progressive"]
    ks, names = ks_and_names(p["ks"])
    runner = suite.runner("progressive")
    cells = [niah_cell(runner, p["length"], d, p["runs"], names, None)
             for d in suite.progress(p["depths"], desc=f"{suite.name} progressive ablation", unit="cell")]
    rows = progressive_rows(cells, ks, names, suite.lm.static("niah").heads[:20], ("acc", "rouge_l"))
    progressive_plot(rows, f"{suite.name}: progressive ablation at {p['length']} tokens", suite.dir / "progressive_ablation.png")
    write_atomic(suite.dir / "progressive.json", json.dumps(rows, indent=1))
    return rows


def probes(suite: ModelSuite) -> dict[str, Any]:
    """Claim 3 on NIAH: temporal CCA (Figure 4) and the MLP classifier with its baselines (Table 2).

    The data are the unmasked passes of the grid (its cells record hidden states) plus the profile's
    further unmasked generations, whose documents use seed + 1 so that no generation occurs twice."""
    from dynheads.tasks.plotting import cca_plot
    from dynheads.tasks.probing import fit_or_reuse

    p = suite.profile["probes"]
    cells = list(grid(suite))
    folders = [suite.dir / "niah" / "cells" / f"{cell_key(c['length'], c['depth'])}.traces" for c in cells]
    runner = suite.runner("probes")
    more = [(L, d) for L in p["lengths"] for d in p["depths"]]
    for L, d in suite.progress(more, desc=f"{suite.name} probes: further unmasked generations with hidden states", unit="cell"):
        cells.append(niah_cell(runner, L, d, p["runs"], ["none"], None, hidden=True, seed=suite.seed + 1))
        folders.append(runner.folder / f"{cell_key(L, d)}.traces")
    settings = {k: p[k] for k in ("seed", "max_offset", "components", "max_epochs", "hidden_sizes")}
    report = fit_or_reuse(suite, "probes", cells, folders, settings)
    cca_plot(report["cca"], f"{suite.name}: NIAH hidden state at n vs Eq. 1 head indicators at n + k (Figure 4)",
             suite.dir / "figure4.png")
    return report


# ------------------------------------------------------------------------------------------ tables
RESULT_FILES = {"calibration": ("calibration.json", None), "niah": ("niah_masking.json", "summary"),
                "dynamism": ("dynamism.json", None), "progressive": ("progressive.json", None),
                "probes": ("probes.json", "report")}


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    n, d = r.get("niah") or {}, r.get("dynamism") or {}
    return {
        "samples": n.get("samples"), "acc": n.get("acc_none"), "rouge_l": n.get("rouge_l_none"),
        "acc_mask_dynamic": n.get("acc_dynamic"), "acc_mask_static": n.get("acc_static"),
        "acc_mask_random": n.get("acc_random"), "matched_n": n.get("matched_n"),
        "heads_per_step_mean": d.get("heads_per_step_mean"), "heads_per_step_std": d.get("heads_per_step_std"),
        "unique_heads": d.get("unique_heads"), "total_heads": r.get("total_heads"),
        "jaccard_static_20": d.get("jaccard_static_20"), "adjacent_jaccard": d.get("adjacent_jaccard"),
        "entropy": d.get("entropy"),
        "probe_f1": ((r.get("probes") or {}).get("probe") or {}).get("probe", {}).get("f1"),
        "probe_auprc": ((r.get("probes") or {}).get("probe") or {}).get("probe", {}).get("auprc"),
        **cca_columns(r.get("probes")),
    }


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], b["samples"], b["acc"], b["rouge_l"], b["acc_mask_dynamic"], b["acc_mask_static"],
             b["acc_mask_random"], b["matched_n"], mean_std(b), unique_of(b, b["total_heads"]), b["jaccard_static_20"],
             b["adjacent_jaccard"], b["entropy"], b["probe_f1"], b["probe_auprc"], b["cca_top1_k0"], b["cca_top1_k1"],
             b["cca_top1_k2"], b["cca_heldout_top1_k0"]] for b in board]
    return ("## NIAH (paper Section 3; Eq. 1 retrieval heads)\n\n"
            + markdown(["model", "samples", "acc", "ROUGE-L", "acc, dynamic masked", "acc, static masked",
                        "acc, random masked", "N", "heads / step", "unique / total", "Jaccard w/ static",
                        "adj. Jaccard", "entropy", "probe F1", "probe AUPRC", "CCA k=0", "CCA k=1", "CCA k=2",
                        "CCA k=0 held-out"], rows))


def table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        d = r.get("dynamism") or {}
        body.append([r["model"], d.get("samples"), d.get("steps"), mean_std(d), unique_of(d, d.get("total_heads")),
                     d.get("jaccard_static_20"), d.get("adjacent_jaccard"), d.get("entropy")])
    text = "# Table 1: retrieval head dynamism on NIAH (Eq. 1, unmasked decoding)\n\n"
    text += markdown(["model", "samples", "steps", "Mean ± Std", "Unique / Total", "Jaccard w/ Static (k=20)",
                      "Adj. Jaccard", "Entropy"], body)
    text += "\nFor reference, the paper's Table 1 (Llama/Qwen/Phi models, not computed here):\n\n"
    text += markdown(["model (paper)", "Mean ± Std", "Unique / Total", "Jaccard w/ Static", "Adj. Jaccard", "Entropy"],
                     [list(row) for row in PAPER_TABLE1])
    return text


def table5(rows: list[dict[str, Any]]) -> str:
    body = [[r["model"]] + [(r.get("dynamism") or {}).get(f"jaccard_static_{k}") for k in (20, 50, 100)] for r in rows]
    return ("# Table 5: Jaccard similarity of dynamic heads with the top-k static heads\n\n"
            + markdown(["model", "k = 20", "k = 50", "k = 100"], body))


def table2(rows: list[dict[str, Any]]) -> str:
    """Table 2: the MLP classifier on test generations beside the prior and previous-step baselines; Figure 4's numbers."""
    body, notes = predictor_rows(rows, "probes", ("f1", "precision", "recall", "auprc", "threshold"))
    return ("# Table 2: MLP probe predicting the Eq. 1 retrieval heads of a step from its final hidden state (NIAH)\n\n"
            "Test generations (split by generation); micro scores over steps x heads; threshold = best F1 on the "
            "validation precision-recall curve, for the probe and each baseline.\n\n"
            + markdown(["model", "predictor", "F1", "precision", "recall", "AUPRC", "threshold"], body)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\n## Figure 4: temporal CCA (hidden state at n, Eq. 1 indicators at n + k)\n\n" + cca_table(rows, "probes")
            + "\nFor reference, the paper's Table 2 (not computed here; the paper reports no baselines) and Figure 4 "
              "(llama3.1-8b in-sample top-1: 0.966 at k = 0, 0.931 at k = 1, 0.915 at k = 2):\n\n"
            + markdown(["model (paper)", "F1", "precision", "recall", "AUPRC"], [list(row) for row in PAPER_TABLE2]))


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """This task's suite tables, by file name under the results folder."""
    return {"table1.md": table1(rows), "table5.md": table5(rows), "table2.md": table2(rows),
            "figure3.md": progressive_table(rows, "progressive", "Figure 3: NIAH progressive ablation (k dynamic heads masked per step)",
                                            [("acc", "acc"), ("rouge_l", "ROUGE-L")])}


def console(rows: list[dict[str, Any]]) -> str:
    """What ``run_suite`` prints at the end for this task."""
    return table1(rows).split("\nFor reference")[0]
