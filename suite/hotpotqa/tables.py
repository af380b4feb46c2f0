"""The HotpotQA tables: leaderboard columns and section, Table 1 (Eq. 2), Table 3 and Figure 7, with the paper's numbers."""

from __future__ import annotations

from typing import Any

from ..probing import cca_columns, cca_table, predictor_rows
from ..summaries import progressive_table
from ..tables import TABLE1_NOTE, markdown, mean_std, shown, table1_columns, unique_of, with_interval, with_intervals

# Table 3 of the paper for reference: MSE, MAE, R² (not computed here).
PAPER_TABLE3 = [("llama3.1-8b", "0.0023", "0.0177", "0.8120"), ("llama3.2-3b", "0.0036", "0.0247", "0.8015"),
                ("qwen3-8b", "0.0050", "0.0255", "0.7200"), ("llama2-13b", "0.0009", "0.0121", "0.7669"),
                ("phi4-mini", "0.0014", "0.0109", "0.7333")]


RESULT_FILES = {"hotpotqa": ("hotpotqa_masking.json", "summary"), "hotpotqa_dynamism": ("hotpotqa_dynamism.json", None),
                "hotpotqa_progressive": ("hotpotqa_progressive.json", None),
                "hotpotqa_probes": ("hotpotqa_probes.json", "report")}


def traced_dynamism(row: dict[str, Any]) -> dict[str, Any]:
    """The HotpotQA dynamism statistics at the threshold the run masked with (``{}`` if not run)."""
    return next((d for d in row.get("hotpotqa_dynamism") or [] if d["traced"]), {})


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    h, hd = r.get("hotpotqa") or {}, traced_dynamism(r)
    ci, probe = h.get("intervals") or {}, ((r.get("hotpotqa_probes") or {}).get("probe") or {}).get("probe", {})
    return {
        "hotpotqa_samples": h.get("samples"), **with_interval("hotpotqa_em", h.get("em_none"), ci.get("em_none")),
        **with_interval("hotpotqa_f1", h.get("f1_none"), ci.get("f1_none")),
        **{k: v for c in ("dynamic", "static", "random")
           for k, v in with_interval(f"hotpotqa_f1_mask_{c}", h.get(f"f1_{c}"), ci.get(f"f1_{c}")).items()},
        "hotpotqa_matched_n": h.get("matched_n"), "hotpotqa_threshold": hd.get("threshold"),
        **table1_columns(hd, "hotpotqa_"),
        **with_interval("hotpotqa_probe_r2", probe.get("r2"), (probe.get("intervals") or {}).get("r2")),
        **with_interval("hotpotqa_probe_mae", probe.get("mae"), (probe.get("intervals") or {}).get("mae")),
        **cca_columns(r.get("hotpotqa_probes"), "hotpotqa_"),
    }


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    p = "hotpotqa_"
    rows = [[b["model"], b[p + "samples"], shown(b, p + "em"), shown(b, p + "f1"), shown(b, p + "f1_mask_dynamic"),
             shown(b, p + "f1_mask_static"), shown(b, p + "f1_mask_random"), b[p + "matched_n"], b[p + "threshold"],
             mean_std(b, p), unique_of(b, b["total_heads"], p), shown(b, p + "jaccard_static_20"), shown(b, p + "adjacent_jaccard"),
             shown(b, p + "entropy"), shown(b, p + "probe_r2"), shown(b, p + "probe_mae"),
             b[p + "cca_heldout_top1_k0"], b[p + "cca_heldout_top1_k1"], b[p + "cca_heldout_top1_k2"], b[p + "cca_shuffled_heldout_top1_k0"]] for b in board]
    return ("## HotpotQA (paper Section 4; Eq. 2 reasoning retrieval heads)\n\n"
            + markdown(["model", "samples", "EM", "F1", "F1, dynamic masked", "F1, static masked", "F1, random masked",
                        "N", "threshold", "heads / step", "unique / total", "Jaccard w/ static", "adj. Jaccard",
                        "entropy", "probe R²", "probe MAE", "held-out CCA k=0", "k=1", "k=2", "shuffled control k=0"], rows)
)


def table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        for d in map(with_intervals, r.get("hotpotqa_dynamism") or []):
            label = f"{d['threshold']:g}" + (" (masked with)" if d["traced"] else "")
            body.append([r["model"], label, d.get("samples"), d.get("steps"), mean_std(d), unique_of(d, d.get("total_heads")),
                         shown(d, "jaccard_static_20"), shown(d, "jaccard_static_50"), shown(d, "adjacent_jaccard"),
                         shown(d, "entropy")])
    return ("# Table 1 on HotpotQA: reasoning retrieval head dynamism (Eq. 2 score > threshold, unmasked decoding)\n\n"
            "Static heads: top-k by mean Eq. 2 score on HotpotQA train examples. Rows at other thresholds are "
            "recomputed from the same traces' recorded scores. " + TABLE1_NOTE
            + markdown(["model", "threshold", "samples", "steps", "Mean ± Std", "Unique / Total", "Jaccard w/ Static (k=20)",
                        "k=50", "Adj. Jaccard", "Entropy"], body))


def table3(rows: list[dict[str, Any]]) -> str:
    """Table 3: the MLP regressor on test answers beside the prior and previous-step baselines; Figure 8's numbers."""
    body, notes = predictor_rows(rows, "hotpotqa_probes", ("mse", "mae", "r2"), ("r2", "mae"))
    return ("# Table 3: MLP probe predicting every head's Eq. 2 score of a step from its final hidden state (HotpotQA)\n\n"
            "Train / validation: answers to HotpotQA train examples; test: answers to dev examples. Scores pooled over "
            "steps x heads (R² against the pooled mean). Every score with its 95 % bootstrap interval over test "
            "answers (seeded). The differences are decided per test answer (the unit): the score pooled over each "
            "answer's steps, probe minus predictor, Student's t interval and sign-flip p over answers, Holm within "
            "this table (the `probes` rule of suite/claims.yaml; for MAE the probe's claim is a negative difference).\n\n"
            + markdown(["model", "predictor", "MSE", "MAE", "R²", "probe − this predictor, R² per answer [95 % CI], p / Holm p: verdict",
                        "probe − this predictor, MAE per answer [95 % CI], p / Holm p: verdict"], body)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\n## Figure 8: temporal CCA (hidden state at n, Eq. 2 scores at n + k)\n\n" + cca_table(rows, "hotpotqa_probes")
            + "\nFor reference, the paper's Table 3 (not computed here; the paper reports no baselines):\n\n"
            + markdown(["model (paper)", "MSE", "MAE", "R²"], [list(row) for row in PAPER_TABLE3]))


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """This task's suite tables, by file name under the results folder."""
    return {"hotpotqa_table1.md": table1(rows), "table3.md": table3(rows),
            "figure7.md": progressive_table(rows, "hotpotqa_progressive",
                                            "Figure 7: HotpotQA progressive ablation (k strongest reasoning heads masked per step)",
                                            [("em", "EM"), ("f1", "F1")])}


def console(rows: list[dict[str, Any]]) -> str:
    """What ``run_suite`` prints at the end for this task."""
    return table1(rows)
