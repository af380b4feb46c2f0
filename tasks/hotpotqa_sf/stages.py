"""``run_suite`` stages of paper Section 4 on ``hotpotqa_sf`` (Eq. 2 reasoning retrieval heads), and their tables.

Static heads are calibrated on HotpotQA *train* examples (``calibrate_hotpotqa``); evaluation reads dev.

* ``hotpotqa``             -- dev examples under none, dynamic, static top-N and random N: EM/F1 overall
  and per type, and Figure 6 (context-length bucket x position of the first supporting fact);
* ``hotpotqa_dynamism``    -- Table 1 for reasoning heads (at the masking threshold and others) and
  Figure 5 (Eq. 2 scores of the ten most varying heads over the longest answer);
* ``hotpotqa_progressive`` -- Figure 7: EM/F1 as the k strongest reasoning heads are masked per step;
* ``hotpotqa_probes``      -- Claim 3: unmasked answers with hidden states on train examples (train /
  validation) and dev examples (test), temporal CCA (Figure 8) and the MLP regressor (Table 3).

Examples run in resumable chunks of ``chunk`` examples (:mod:`dynheads.tasks.suite`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from dynheads.models.files import write_atomic
from dynheads.tasks.suite import (CONDITIONS, CellTask, ModelSuite, condition_titles, dynamic_masking, ks_and_names,
                                  matching_note, mean_of, override, progressive_rows, progressive_table, samples_of)
from dynheads.tasks.probing import PROBE_FIT, apply_arguments, cca_columns, cca_table, predictor_rows
from dynheads.tasks.hotpotqa_sf.rag import leaderboard_columns as rag_columns
from dynheads.tasks.hotpotqa_sf.rag import leaderboard_rows as rag_section
from dynheads.tasks.hotpotqa_sf.rag import table4, table6
from dynheads.tasks.tables import markdown, mean_std, unique_of

# Contexts are 1-2K tokens (SmolLM2 tokenizer: quartiles 1305 / 1535 / 1762 on the first 200 dev examples),
# so the Figure 6 length buckets split there; the first supporting fact's relative position is binned in fifths.
BINS = {"length_edges": [1250, 1500, 1750], "position_edges": [0.2, 0.4, 0.6, 0.8]}
PROFILES: dict[str, dict[str, Any]] = {
    # threshold 0.2, not the library default 0.5: SmolLM2 has ~0.2-0.4 heads per step above 0.5 (too few
    # to mask; N would be 0-1) and ~4-6 above 0.2, near its NIAH Eq. 1 count. Table 1 reports both.
    # probes: ~9 steps per answer, so 72 train examples give >= 600 steps; the 16 evaluated dev answers are the test set
    "quick": {"hotpotqa": {"split": "dev", "source": None, "n": 16, "chunk": 8, "calib_examples": 8, "threshold": 0.2,
                           "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 6, "ks": [0, 1, 2, 5, 10]},
                           "probes": {"train_n": 72, "chunk": 24, **PROBE_FIT, "hidden_sizes": [512, 256]},
                           "rag": {"n": 16, "chunk": 8, "heads": 5, "ks": [5, 10, 20]}}},
    "paper": {"hotpotqa": {"split": "dev", "source": None, "n": 1000, "chunk": 50, "calib_examples": 200, "threshold": 0.5,
                           "thresholds": [0.2, 0.5], "length_edges": [1000, 1250, 1500, 1750, 2000],
                           "position_edges": [0.2, 0.4, 0.6, 0.8], "progressive": {"n": 200, "ks": [0, 5, 10, 15, 20]},
                           "probes": {"train_n": 601, "chunk": 50, **PROBE_FIT,
                                      "hidden_sizes": [8192, 4096, 4096]},
                           # 500 dev examples: the paper's Table 4 scores are multiples of 1/500
                           "rag": {"n": 500, "chunk": 50, "heads": 5, "ks": [5, 10, 20]}}},
}
# Gemma-3-270M is ~3x slower per sample on 2 cores: 4 examples, 2 for Figure 7.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {"hotpotqa": {"split": "dev", "source": None, "n": 4, "chunk": 4, "calib_examples": 4, "threshold": 0.2,
                                 "thresholds": [0.2, 0.5], **BINS, "progressive": {"n": 2, "ks": [0, 1, 2, 5]},
                                 "probes": {"train_n": 24, "chunk": 12, **PROBE_FIT, "hidden_sizes": [256]},
                                 "rag": {"n": 4, "chunk": 4, "heads": 5, "ks": [5, 10, 20]}}},
}
# Table 3 of the paper for reference: MSE, MAE, R² (not computed here).
PAPER_TABLE3 = [("llama3.1-8b", "0.0023", "0.0177", "0.8120"), ("llama3.2-3b", "0.0036", "0.0247", "0.8015"),
                ("qwen3-8b", "0.0050", "0.0255", "0.7200"), ("llama2-13b", "0.0009", "0.0121", "0.7669"),
                ("phi4-mini", "0.0014", "0.0109", "0.7333")]


def _score(response: str, doc: dict[str, Any]) -> dict[str, float]:
    from dynheads.tasks.hotpotqa_sf.utils import score

    return score(response, doc)


def _describe(doc: dict[str, Any]) -> dict[str, Any]:
    from dynheads.tasks.hotpotqa_sf.ablation import first_support_position

    return {"id": doc["id"], "type": doc["type"], "n_tokens": doc["n_tokens"], "position": first_support_position(doc)}


def _eq2_settings(lm: Any) -> dict[str, Any]:
    r = lm.reasoning
    return {"reasoning": {"sink_tokens": r.sink_tokens, "local_window": r.local_window, "threshold": r.threshold}}


CELLS = CellTask("hotpotqa_sf", kind="hotpotqa", check_metric="f1", seeded=False, score=_score, describe=_describe,
                 model_settings=_eq2_settings)


# ------------------------------------------------------------------------------------------ profile
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hotpot-source", default=None,
                   help="HotpotQA evaluation data: a file (official or HF layout) or hf:NAME/CONFIG:SPLIT (default: vendored dev)")
    p.add_argument("--hotpot-n", type=int, default=None, help="override the number of HotpotQA evaluation examples")
    p.add_argument("--hotpot-chunk", type=int, default=None, help="override HotpotQA examples per resumable chunk")
    p.add_argument("--hotpot-calib", type=int, default=None, help="override the HotpotQA train examples of the Eq. 2 calibration")
    p.add_argument("--hotpot-threshold", type=float, default=None, help="override the Eq. 2 threshold that defines reasoning heads")
    p.add_argument("--hotpot-prog-n", type=int, default=None, help="override the examples of the HotpotQA progressive ablation")
    p.add_argument("--hotpot-ks", default=None, help="override the HotpotQA progressive ablation's k values, e.g. 0,2,5")
    p.add_argument("--hotpot-probe-train", type=int, default=None, help="override the train examples of the HotpotQA probe")
    p.add_argument("--rag-n", type=int, default=None, help="override the dev examples of the in-context RAG stage")
    p.add_argument("--rag-chunk", type=int, default=None, help="override RAG examples per resumable chunk")
    p.add_argument("--rag-ks", default=None, help="override the RAG head counts k of Table 6, e.g. 5,10,20 (the first is Table 4's)")
    for name, kind, what in RAG_ARGUMENTS:
        p.add_argument(f"--rag-{name.replace('_', '-')}", type=kind, default=None, help=f"RAG: {what}")


RAG_ARGUMENTS = (
    ("threshold", float, "RIND threshold a draft word must exceed to trigger retrieval (default 1.0; DRAGIN: 0.8-1.2)"),
    ("top_positions", int, "context positions taken from the chosen heads' mean attention (default 8)"),
    ("cluster_gap", int, "top positions at most this many tokens apart form one cluster (default 16)"),
    ("window", int, "tokens made visible around each cluster's best position (default 48)"),
    ("max_retrievals", int, "retrievals allowed per answer (default 3)"),
)


def profile(model_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """This task's part of profile ``name`` for ``model_name``, with the command line's overrides.

    A bad value (count below 1, unsorted bin edges, missing source file) fails here, before any model loads.
    """
    from dynheads.tasks.hotpotqa_sf.ablation import check_edges

    prof = json.loads(json.dumps(PROFILES[name]))
    if name == "quick":
        prof.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    hot = prof["hotpotqa"]
    override(hot["progressive"], "ks", args.hotpot_ks, int)
    for key, value in (("n", args.hotpot_n), ("chunk", args.hotpot_chunk), ("calib_examples", args.hotpot_calib),
                       ("threshold", args.hotpot_threshold)):
        override(hot, key, value)
    override(hot["progressive"], "n", args.hotpot_prog_n)
    override(hot["probes"], "train_n", args.hotpot_probe_train)
    override(hot["rag"], "n", args.rag_n)
    override(hot["rag"], "chunk", args.rag_chunk)
    override(hot["rag"], "ks", args.rag_ks, int)
    if args.rag_ks:
        hot["rag"]["heads"] = hot["rag"]["ks"][0]
    for name, _, _ in RAG_ARGUMENTS:
        override(hot["rag"], name, getattr(args, f"rag_{name}"))
    apply_arguments(hot["probes"], args)
    if args.hotpot_source:
        from dynheads.tasks.hotpotqa_sf.utils import parse_metadata

        hot["source"] = parse_metadata({"source": args.hotpot_source}).source  # a missing file fails here, in one line
    if min(int(hot["rag"]["n"]), int(hot["rag"]["chunk"]), *(int(k) for k in hot["rag"]["ks"])) < 1:
        raise ValueError("run_suite: RAG examples, chunk and head counts must be at least 1, e.g. --rag-n 16 --rag-chunk 8 --rag-ks 5,10,20")
    for key in ("n", "chunk", "calib_examples"):
        if int(hot[key]) < 1:
            raise ValueError(f"run_suite: HotpotQA {key} = {hot[key]} must be at least 1, e.g. --hotpot-n 24")
    for key in ("length_edges", "position_edges"):
        hot[key] = check_edges(key, hot[key])
    return prof


def model_args(prof: dict[str, Any]) -> dict[str, Any]:
    """The ``dynheads`` model arguments this task's profile sets (calibration size, Eq. 2 threshold)."""
    hot = prof["hotpotqa"]
    rag = hot["rag"]
    return {"calib_examples": hot["calib_examples"], "reasoning_threshold": hot["threshold"], "rag_heads": rag["heads"],
            **{f"rag_{name}": rag[name] for name, _, _ in RAG_ARGUMENTS if name in rag}}


# ------------------------------------------------------------------------------------------ stages
def calibrate(suite: ModelSuite) -> dict[str, Any]:
    """Static reasoning heads on HotpotQA train (mean Eq. 2 score) and N, summarised in ``hotpotqa_calibration.json``."""
    setting = {"examples": suite.lm.calib_examples, "split": "train", "threshold": suite.lm.reasoning.threshold}
    return suite.write_calibration("hotpotqa", setting, "hotpotqa_calibration.json")


def chunks(runner: Any, setting: dict[str, Any], n: int, conditions: list[str], heads: int | None,
           progress: Callable, desc: str, hidden: bool = False) -> list[dict[str, Any]]:
    """The first ``n`` examples of ``setting``'s split / source as resumable chunks of ``setting["chunk"]``."""
    size = int(setting["chunk"])
    starts = list(range(0, n, size))
    base = {"split": setting["split"], "source": setting.get("source")}
    label = "custom" if base["source"] else setting["split"]  # the cell's settings record the source itself
    return [runner.run(f"{label}_{start:05d}", CELLS, {**base, "start": start, "n": min(size, n - start)},
                       conditions, heads, {"start": start}, hidden=hidden)
            for start in progress(starts, desc=desc, unit="chunk")]


def evaluated(suite: ModelSuite) -> list[dict[str, Any]]:
    """The evaluation chunks under the four conditions (shared by ``hotpotqa``, ``hotpotqa_dynamism`` and
    ``hotpotqa_probes``, whose test set are their unmasked answers: the cells record hidden states)."""
    def compute() -> list[dict[str, Any]]:
        h = suite.profile["hotpotqa"]
        return chunks(suite.runner("hotpotqa"), h, int(h["n"]), list(CONDITIONS), suite.lm.calibrated_count("hotpotqa"),
                      suite.progress, f"{suite.name} HotpotQA (4 conditions)", hidden=True)

    return suite.shared("hotpotqa_chunks", compute)


def masking(suite: ModelSuite) -> dict[str, Any]:
    """EM/F1 under the four conditions, overall, per question type and per Figure 6 cell."""
    from dynheads.tasks.hotpotqa_sf.ablation import ablation_cells, bin_labels, markdown_grid
    from dynheads.tasks.hotpotqa_sf.figures import ablation_heatmaps

    h = suite.profile["hotpotqa"]
    cells = evaluated(suite)
    n = suite.lm.calibrated_count("hotpotqa")
    threshold = suite.lm.reasoning.threshold
    titles = condition_titles(n)
    samples = samples_of(cells)
    lengths, positions = bin_labels(h["length_edges"]), bin_labels(h["position_edges"], percent=True)
    grids = {c: ablation_cells(({"n_tokens": r["n_tokens"], "position": r["position"], **r["conditions"][c]} for r in samples),
                               h["length_edges"], h["position_edges"]) for c in CONDITIONS}
    for metric, label in (("f1", "F1"), ("em", "EM")):
        ablation_heatmaps([(titles[c], grids[c]) for c in CONDITIONS], metric, lengths, positions,
                          f"{suite.name}: HotpotQA {label} by masked heads (N = {n}, Eq. 2 > {threshold:g})",
                          suite.dir / f"hotpotqa_ablation_{metric}.png")
    metrics = ("em", "f1", "em_bridge", "f1_bridge", "em_comparison", "f1_comparison")
    summary = {"samples": len(samples), "matched_n": n, "threshold": threshold, **dynamic_masking(cells),
               **{f"{m}_{c}": mean_of(cells, c, m) for c in CONDITIONS for m in metrics}}
    text = [f"# {suite.name}: HotpotQA masking ablation (paper Figure 6)\n",
            f"{len(samples)} dev examples; reasoning heads are Eq. 2 scores > {threshold:g}. "
            + matching_note(suite.lm.static("hotpotqa"), summary, n)]
    text.append(markdown(["condition", "EM", "F1", "EM bridge", "F1 bridge", "EM comparison", "F1 comparison"],
                         [[titles[c]] + [summary[f"{m}_{c}"] for m in metrics] for c in CONDITIONS]))
    for c in CONDITIONS:
        for metric, label in (("f1", "F1"), ("em", "EM")):
            text.append(f"\n## {titles[c]}: {label} (samples in brackets; — = no sample)\n\n"
                        + markdown_grid(grids[c], metric, lengths, positions))
    write_atomic(suite.dir / "hotpotqa_masking.md", "\n".join(text))
    write_atomic(suite.dir / "hotpotqa_masking.json", json.dumps({"summary": summary, "cells": grids}, indent=1))
    return summary


def dynamism(suite: ModelSuite) -> list[dict[str, Any]]:
    """Table 1 for reasoning heads at each reported threshold, and Figure 5 for the longest answer."""
    from dynheads.metrics.dynamism import summarise
    from dynheads.tasks.hotpotqa_sf.figures import score_heatmap

    h = suite.profile["hotpotqa"]
    traced = suite.lm.reasoning.threshold
    runs = [r["conditions"]["none"] for r in samples_of(evaluated(suite))]
    static = suite.lm.static("hotpotqa")
    ranking = static.heads if static.informative else None
    rows = []
    for threshold in sorted({float(t) for t in h["thresholds"]} | {traced}):
        if threshold == traced:  # the traced sets, exactly
            samples = [run["heads"] for run in runs]
        else:  # recomputed from the recorded (5-decimal) scores
            samples = [[[(l, k) for l, row in enumerate(step) for k, v in enumerate(row) if v > threshold]
                        for step in run["scores"]] for run in runs]
        rows.append({"threshold": threshold, "traced": threshold == traced,
                     **summarise(samples, suite.total_heads, ranking)})
    longest = max(range(len(runs)), key=lambda i: (len(runs[i]["scores"]), -i), default=None)
    if longest is not None and runs[longest]["scores"]:
        labels = [suite.lm.tokenizer.decode([t]) for t in runs[longest]["tokens"]]
        sample = samples_of(evaluated(suite))[longest]
        score_heatmap({"steps": [{"scores": s} for s in runs[longest]["scores"]]}, labels, suite.dir / "figure5.png",
                      title=f"{suite.name}, HotpotQA {sample['id']}: Eq. 2 scores of the 10 most varying heads",
                      threshold=traced)
    write_atomic(suite.dir / "hotpotqa_dynamism.json", json.dumps(rows, indent=1))
    return rows


def progressive(suite: ModelSuite) -> list[dict[str, Any]]:
    """Figure 7: EM/F1 as the k strongest reasoning heads are masked per step, with compensated heads."""
    from dynheads.tasks.plotting import progressive_plot

    h = suite.profile["hotpotqa"]
    p = h["progressive"]
    ks, names = ks_and_names(p["ks"])
    cells = chunks(suite.runner("hotpotqa_progressive"), h, int(p["n"]), names, None, suite.progress,
                   f"{suite.name} HotpotQA progressive ablation")
    rows = progressive_rows(cells, ks, names, suite.lm.static("hotpotqa").heads[:20], ("em", "f1"))
    progressive_plot(rows, f"{suite.name}: HotpotQA progressive ablation (Eq. 2 > {suite.lm.reasoning.threshold:g})",
                     suite.dir / "hotpotqa_progressive_ablation.png", metrics=(("em", "EM"), ("f1", "F1")),
                     xlabel="reasoning retrieval heads masked per step (k; strongest Eq. 2 scores)")
    write_atomic(suite.dir / "hotpotqa_progressive.json", json.dumps(rows, indent=1))
    return rows


def probes(suite: ModelSuite) -> dict[str, Any]:
    """Claim 3 on HotpotQA: temporal CCA (Figure 8) and the MLP regressor with its baselines (Table 3).

    Train / validation: unmasked answers to ``train_n`` train examples (80 / 20 by example); test: the
    unmasked answers of the ``hotpotqa`` stage's evaluation examples (dev by default), reused."""
    from dynheads.tasks.plotting import cca_plot
    from dynheads.tasks.probing import fit_or_reuse

    h = suite.profile["hotpotqa"]
    p = h["probes"]
    runner = suite.runner("hotpotqa_probes")
    train_setting = {"split": "train", "source": None, "chunk": p["chunk"]}
    train = chunks(runner, train_setting, int(p["train_n"]), ["none"], None, suite.progress,
                   f"{suite.name} HotpotQA probes: train answers with hidden states", hidden=True)
    test = evaluated(suite)

    def folders(folder: Path, setting: dict[str, Any], cells: list[dict[str, Any]]) -> list[Path]:
        label = "custom" if setting.get("source") else setting["split"]
        return [folder / f"{label}_{c['start']:05d}.traces" for c in cells]

    settings = {k: p[k] for k in ("seed", "max_offset", "components", "max_epochs", "hidden_sizes")}
    report = fit_or_reuse(suite, "hotpotqa_probes", train + test, folders(runner.folder, train_setting, train), settings,
                          test_folders=folders(suite.dir / "hotpotqa" / "cells", h, test))
    cca_plot(report["cca"], f"{suite.name}: HotpotQA hidden state at n vs Eq. 2 scores at n + k (Figure 8)",
             suite.dir / "figure8.png")
    return report


# ------------------------------------------------------------------------------------------ tables
RESULT_FILES = {"hotpotqa": ("hotpotqa_masking.json", "summary"), "hotpotqa_dynamism": ("hotpotqa_dynamism.json", None),
                "hotpotqa_progressive": ("hotpotqa_progressive.json", None),
                "hotpotqa_probes": ("hotpotqa_probes.json", "report"), "rag": ("rag.json", "summary")}


def traced_dynamism(row: dict[str, Any]) -> dict[str, Any]:
    """The HotpotQA dynamism statistics at the threshold the run masked with (``{}`` if not run)."""
    return next((d for d in row.get("hotpotqa_dynamism") or [] if d["traced"]), {})


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    h, hd = r.get("hotpotqa") or {}, traced_dynamism(r)
    return {
        "hotpotqa_samples": h.get("samples"), "hotpotqa_em": h.get("em_none"), "hotpotqa_f1": h.get("f1_none"),
        "hotpotqa_f1_mask_dynamic": h.get("f1_dynamic"), "hotpotqa_f1_mask_static": h.get("f1_static"),
        "hotpotqa_f1_mask_random": h.get("f1_random"), "hotpotqa_matched_n": h.get("matched_n"),
        "hotpotqa_threshold": hd.get("threshold"),
        "hotpotqa_heads_per_step_mean": hd.get("heads_per_step_mean"), "hotpotqa_heads_per_step_std": hd.get("heads_per_step_std"),
        "hotpotqa_unique_heads": hd.get("unique_heads"), "hotpotqa_jaccard_static_20": hd.get("jaccard_static_20"),
        "hotpotqa_adjacent_jaccard": hd.get("adjacent_jaccard"), "hotpotqa_entropy": hd.get("entropy"),
        "hotpotqa_probe_r2": ((r.get("hotpotqa_probes") or {}).get("probe") or {}).get("probe", {}).get("r2"),
        "hotpotqa_probe_mae": ((r.get("hotpotqa_probes") or {}).get("probe") or {}).get("probe", {}).get("mae"),
        **cca_columns(r.get("hotpotqa_probes"), "hotpotqa_"),
        **rag_columns(r),
    }


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    p = "hotpotqa_"
    rows = [[b["model"], b[p + "samples"], b[p + "em"], b[p + "f1"], b[p + "f1_mask_dynamic"], b[p + "f1_mask_static"],
             b[p + "f1_mask_random"], b[p + "matched_n"], b[p + "threshold"], mean_std(b, p), unique_of(b, b["total_heads"], p),
             b[p + "jaccard_static_20"], b[p + "adjacent_jaccard"], b[p + "entropy"], b[p + "probe_r2"], b[p + "probe_mae"],
             b[p + "cca_top1_k0"], b[p + "cca_top1_k1"], b[p + "cca_top1_k2"], b[p + "cca_heldout_top1_k0"]] for b in board]
    return ("## HotpotQA (paper Section 4; Eq. 2 reasoning retrieval heads)\n\n"
            + markdown(["model", "samples", "EM", "F1", "F1, dynamic masked", "F1, static masked", "F1, random masked",
                        "N", "threshold", "heads / step", "unique / total", "Jaccard w/ static", "adj. Jaccard",
                        "entropy", "probe R²", "probe MAE", "CCA k=0", "CCA k=1", "CCA k=2", "CCA k=0 held-out"], rows)
            + "\n" + rag_section(board))


def table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        for d in r.get("hotpotqa_dynamism") or []:
            label = f"{d['threshold']:g}" + (" (masked with)" if d["traced"] else "")
            body.append([r["model"], label, d.get("samples"), d.get("steps"), mean_std(d), unique_of(d, d.get("total_heads")),
                         d.get("jaccard_static_20"), d.get("jaccard_static_50"), d.get("adjacent_jaccard"), d.get("entropy")])
    return ("# Table 1 on HotpotQA: reasoning retrieval head dynamism (Eq. 2 score > threshold, unmasked decoding)\n\n"
            "Static heads: top-k by mean Eq. 2 score on HotpotQA train examples. Rows at other thresholds are "
            "recomputed from the same traces' recorded scores.\n\n"
            + markdown(["model", "threshold", "samples", "steps", "Mean ± Std", "Unique / Total", "Jaccard w/ Static (k=20)",
                        "k=50", "Adj. Jaccard", "Entropy"], body))


def table3(rows: list[dict[str, Any]]) -> str:
    """Table 3: the MLP regressor on test answers beside the prior and previous-step baselines; Figure 8's numbers."""
    body, notes = predictor_rows(rows, "hotpotqa_probes", ("mse", "mae", "r2"))
    return ("# Table 3: MLP probe predicting every head's Eq. 2 score of a step from its final hidden state (HotpotQA)\n\n"
            "Train / validation: answers to HotpotQA train examples; test: answers to dev examples. Scores pooled over "
            "steps x heads (R² against the pooled mean).\n\n"
            + markdown(["model", "predictor", "MSE", "MAE", "R²"], body)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\n## Figure 8: temporal CCA (hidden state at n, Eq. 2 scores at n + k)\n\n" + cca_table(rows, "hotpotqa_probes")
            + "\nFor reference, the paper's Table 3 (not computed here; the paper reports no baselines):\n\n"
            + markdown(["model (paper)", "MSE", "MAE", "R²"], [list(row) for row in PAPER_TABLE3]))


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """This task's suite tables, by file name under the results folder."""
    return {"hotpotqa_table1.md": table1(rows), "table3.md": table3(rows), "table4.md": table4(rows), "table6.md": table6(rows),
            "figure7.md": progressive_table(rows, "hotpotqa_progressive",
                                            "Figure 7: HotpotQA progressive ablation (k strongest reasoning heads masked per step)",
                                            [("em", "EM"), ("f1", "F1")])}


def console(rows: list[dict[str, Any]]) -> str:
    """What ``run_suite`` prints at the end for this task."""
    return table1(rows)
