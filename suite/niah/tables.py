"""The NIAH tables: leaderboard columns and section, Tables 1 / 2 / 5 and Figure 3 as Markdown, with the paper's numbers."""

from __future__ import annotations

from typing import Any

from ..probing import cca_columns, cca_table, predictor_rows
from ..summaries import progressive_table
from ..tables import TABLE1_NOTE, markdown, mean_std, shown, table1_columns, unique_of, with_interval, with_intervals

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


RESULT_FILES = {"calibration": ("calibration.json", None), "niah": ("niah_masking.json", "summary"),
                "dynamism": ("dynamism.json", None), "progressive": ("progressive.json", None),
                "probes": ("probes.json", "report")}


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    n, d = r.get("niah") or {}, r.get("dynamism") or {}
    ci, probe = n.get("intervals") or {}, ((r.get("probes") or {}).get("probe") or {}).get("probe", {})
    return {
        "samples": n.get("samples"), **with_interval("acc", n.get("acc_none"), ci.get("acc_none")),
        **with_interval("rouge_l", n.get("rouge_l_none"), ci.get("rouge_l_none")),
        **{k: v for c in ("dynamic", "static", "random")
           for k, v in with_interval(f"acc_mask_{c}", n.get(f"acc_{c}"), ci.get(f"acc_{c}")).items()},
        "matched_n": n.get("matched_n"),
        **table1_columns(d), "total_heads": r.get("total_heads"),
        **with_interval("probe_f1", probe.get("f1"), (probe.get("intervals") or {}).get("f1")),
        **with_interval("probe_auprc", probe.get("auprc"), (probe.get("intervals") or {}).get("auprc")),
        **cca_columns(r.get("probes")),
    }


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], b["samples"], shown(b, "acc"), shown(b, "rouge_l"), shown(b, "acc_mask_dynamic"),
             shown(b, "acc_mask_static"), shown(b, "acc_mask_random"), b["matched_n"], mean_std(b),
             unique_of(b, b["total_heads"]), shown(b, "jaccard_static_20"), shown(b, "adjacent_jaccard"), shown(b, "entropy"),
             shown(b, "probe_f1"), shown(b, "probe_auprc"), b["cca_heldout_top1_k0"], b["cca_heldout_top1_k1"],
             b["cca_heldout_top1_k2"], b["cca_shuffled_heldout_top1_k0"]] for b in board]
    return ("## NIAH (paper Section 3; Eq. 1 retrieval heads)\n\n"
            + markdown(["model", "samples", "acc", "ROUGE-L", "acc, dynamic masked", "acc, static masked",
                        "acc, random masked", "N", "heads / step", "unique / total", "Jaccard w/ static",
                        "adj. Jaccard", "entropy", "probe F1", "probe AUPRC", "held-out CCA k=0", "k=1", "k=2",
                        "shuffled control k=0"], rows))


def table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        d = with_intervals(r.get("dynamism") or {})
        body.append([r["model"], d.get("samples"), d.get("steps"), mean_std(d), unique_of(d, d.get("total_heads")),
                     shown(d, "jaccard_static_20"), shown(d, "adjacent_jaccard"), shown(d, "entropy")])
    text = "# Table 1: retrieval head dynamism on NIAH (Eq. 1, unmasked decoding)\n\n" + TABLE1_NOTE
    text += markdown(["model", "samples", "steps", "Mean ± Std", "Unique / Total", "Jaccard w/ Static (k=20)",
                      "Adj. Jaccard", "Entropy"], body)
    text += "\nFor reference, the paper's Table 1 (Llama/Qwen/Phi models, not computed here):\n\n"
    text += markdown(["model (paper)", "Mean ± Std", "Unique / Total", "Jaccard w/ Static", "Adj. Jaccard", "Entropy"],
                     [list(row) for row in PAPER_TABLE1])
    return text


def table5(rows: list[dict[str, Any]]) -> str:
    body = [[r["model"]] + [shown(with_intervals(r.get("dynamism") or {}), f"jaccard_static_{k}") for k in (20, 50, 100)]
            for r in rows]
    return ("# Table 5: Jaccard similarity of dynamic heads with the top-k static heads\n\n"
            + markdown(["model", "k = 20", "k = 50", "k = 100"], body))


def table2(rows: list[dict[str, Any]]) -> str:
    """Table 2: the MLP classifier on test generations beside the prior, previous-step and same-cell-and-step
    baselines; Figure 4's numbers."""
    body, notes = predictor_rows(rows, "probes", ("f1", "precision", "recall", "auprc", "threshold"), ("f1", "auprc"))
    return ("# Table 2: MLP probe predicting the Eq. 1 retrieval heads of a step from its final hidden state (NIAH)\n\n"
            "Test generations from (length, depth) cells no training document comes from (split by cell); micro scores "
            "over steps x heads; threshold = best F1 on the validation precision-recall curve, for the probe and each "
            "baseline. Same cell and step: the training generations' mean indicator at the same step index in the same "
            "cell, else the nearest training cell (same depth, nearest length); no hidden state.\n\n"
            + "Every score with its 95 % bootstrap interval over test generations (seeded). The differences are decided "
              "per unseen cell (the unit drawn independently; the generations of one cell share its length and depth): "
              "the score pooled over each cell's steps, probe minus predictor, Student's t interval and sign-flip p over "
              "cells, Holm within this table (the `probes` rule of suite/claims.yaml: at least 10 cells).\n\n"
            + markdown(["model", "predictor", "F1", "precision", "recall", "AUPRC", "threshold",
                        "probe − this predictor, F1 per cell [95 % CI], p / Holm p: verdict",
                        "probe − this predictor, AUPRC per cell [95 % CI], p / Holm p: verdict"], body)
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
