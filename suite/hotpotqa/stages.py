"""``run_suite`` stages of paper Section 4 on ``hotpotqa_sf`` (Eq. 2 reasoning retrieval heads), and their tables.

Static heads are calibrated on HotpotQA *train* examples (``calibrate_hotpotqa``); evaluation reads dev.

* ``hotpotqa``             -- dev examples under none, dynamic, static top-N and random N: EM/F1 overall
  and per type, and Figure 6 (context-length bucket x position of the first supporting fact);
* ``hotpotqa_dynamism``    -- Table 1 for reasoning heads (at the masking threshold and others) and
  Figure 5 (Eq. 2 scores of the ten most varying heads over the longest answer);
* ``hotpotqa_progressive`` -- Figure 7: EM/F1 as the k strongest reasoning heads are masked per step;
* ``hotpotqa_probes``      -- Claim 3: unmasked answers with hidden states on train examples (train /
  validation) and dev examples (test), temporal CCA (Figure 8) and the MLP regressor (Table 3).

Examples run in resumable chunks of ``chunk`` examples (:mod:`dynheads.suite.cells`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...util import write_atomic
from ...traces import REASONING
from ...tasks.hotpotqa_sf import utils as task  # importing the task registers its static-head calibration
from ..cells import LmEvalTask
from ..model import ModelSuite
from ..summaries import (CONDITIONS, condition_titles, dynamic_masking, interval_text, ks_and_names, masking_intervals,
                         matching_note, paired_table, point_estimates, progressive_rows, samples_of, table1_intervals,
                         claim1_tests)
from ..tables import markdown

if TYPE_CHECKING:  # the whole model: the suite drives it
    from ...models.harness.lm import DynHeadsLM




def _describe(doc: dict[str, Any]) -> dict[str, Any]:
    from .ablation import first_support_position

    return {"id": doc["id"], "type": doc["type"], "n_tokens": doc["n_tokens"], "position": first_support_position(doc)}


def _eq2_settings(lm: DynHeadsLM) -> dict[str, Any]:
    r = lm.settings.reasoning
    return {"reasoning": {"sink_tokens": r.sink_tokens, "local_window": r.local_window, "threshold": r.threshold}}


CELLS = LmEvalTask("hotpotqa_sf", kind=REASONING, check_metric="f1", seeded=False, score=task.score, describe=_describe,
                 model_settings=_eq2_settings)


def calibrate(suite: ModelSuite) -> dict[str, Any]:
    """Static reasoning heads on HotpotQA train (mean Eq. 2 score) and N, summarised in ``hotpotqa_calibration.json``."""
    setting = {"examples": suite.lm.settings.static.calibration["examples"], "split": "train", "threshold": suite.lm.settings.reasoning.threshold}
    return suite.write_calibration(REASONING, setting, "hotpotqa_calibration.json")


def chunks(runner: Any, setting: dict[str, Any], n: int, conditions: list[str], heads: int | None,
           progress: Callable, desc: str, hidden: bool = False) -> list[dict[str, Any]]:
    """The first ``n`` examples of ``setting``'s split / source as resumable chunks of ``setting["chunk"]``."""
    size = int(setting["chunk"])
    starts = list(range(0, n, size))
    base = {"split": setting["split"], "source": setting.get("source"),
            **({"paragraphs": setting["paragraphs"]} if setting.get("paragraphs") else {})}
    label = "custom" if base["source"] else setting["split"]  # the cell's settings record the source itself
    return [runner.run(f"{label}_{start:05d}", CELLS, {**base, "start": start, "n": min(size, n - start)},
                       conditions, heads, {"start": start}, hidden=hidden)
            for start in progress(starts, desc=desc, unit="chunk")]


def evaluated(suite: ModelSuite) -> list[dict[str, Any]]:
    """The evaluation chunks under the four conditions (shared by ``hotpotqa``, ``hotpotqa_dynamism`` and
    ``hotpotqa_probes``, whose test set are their unmasked answers: the cells record hidden states)."""
    def compute() -> list[dict[str, Any]]:
        h = suite.profile["hotpotqa"]
        return chunks(suite.runner("hotpotqa"), h, int(h["n"]), list(CONDITIONS), suite.lm.calibrated_count(REASONING),
                      suite.progress, f"{suite.name} HotpotQA (4 conditions)", hidden=True)

    return suite.shared("hotpotqa_chunks", compute)


def masking(suite: ModelSuite) -> dict[str, Any]:
    """EM/F1 under the four conditions, overall, per question type and per Figure 6 cell."""
    from .ablation import ablation_cells, bin_labels, markdown_grid
    from .figures import ablation_heatmaps

    h = suite.profile["hotpotqa"]
    cells = evaluated(suite)
    n = suite.lm.calibrated_count(REASONING)
    threshold = suite.lm.settings.reasoning.threshold
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
    intervals = masking_intervals(cells, ("em", "f1"), suite.seed, subgroups=metrics[2:])
    summary = {"samples": len(samples), "matched_n": n, "threshold": threshold, **dynamic_masking(cells),
               **point_estimates(intervals, metrics), "intervals": intervals,
               "lead_in_changed": lead_in_changed(samples)}
    text = [f"# {suite.name}: HotpotQA masking ablation (paper Figure 6)\n",
            f"{len(samples)} dev examples; reasoning heads are Eq. 2 scores > {threshold:g}. "
            + matching_note(suite.lm.static(REASONING), summary, n),
            "Means over examples (of that question type) with 95 % bootstrap intervals (examples resampled, seeded). "
            + lead_in_note(summary["lead_in_changed"]) + "\n"]
    text.append(markdown(["condition", "EM", "F1", "EM bridge", "F1 bridge", "EM comparison", "F1 comparison"],
                         [[titles[c], *(interval_text(intervals.get(f"{m}_{c}")) for m in metrics)] for c in CONDITIONS]))
    text.append("\n" + paired_table(intervals, [("em", "EM"), ("f1", "F1")], titles["static"], titles["random"]))
    for c in CONDITIONS:
        for metric, label in (("f1", "F1"), ("em", "EM")):
            text.append(f"\n## {titles[c]}: {label} (samples in brackets; — = no sample)\n\n"
                        + markdown_grid(grids[c], metric, lengths, positions))
    write_atomic(suite.dir / "hotpotqa_masking.md", "\n".join(text))
    write_atomic(suite.dir / "hotpotqa_masking.json", json.dumps({"summary": summary, "cells": grids}, indent=1))
    return summary


def lead_in_changed(samples: list[dict[str, Any]]) -> dict[str, int]:
    """How many answers the lead-in rule (``The answer is:`` and the like, issue 23) changed, per condition: the
    extraction with and without it differs."""
    return {c: sum(task.extract_answer(r["conditions"][c]["response"]) != task.extract_answer(r["conditions"][c]["response"], False)
                   for r in samples) for c in CONDITIONS}


def lead_in_note(changed: dict[str, int]) -> str:
    return ("Answers taken after a lead-in line or prefix (\"The answer is:\" and the like) that the earlier rule scored "
            "on the lead-in: " + ", ".join(f"{c} {n}" for c, n in changed.items()) + ".")


def dynamism(suite: ModelSuite) -> list[dict[str, Any]]:
    """Table 1 for reasoning heads at each reported threshold, and Figure 5 for the longest answer."""
    from ...metrics.dynamism import summarise
    from .figures import score_heatmap

    h = suite.profile["hotpotqa"]
    traced = suite.lm.settings.reasoning.threshold
    runs = [r["conditions"]["none"] for r in samples_of(evaluated(suite))]
    static = suite.lm.static(REASONING)
    ranking = static.heads if static.informative else None
    rows = []
    for threshold in sorted({float(t) for t in h["thresholds"]} | {traced}):
        if threshold == traced:  # the traced sets, exactly
            samples = [run["heads"] for run in runs]
        else:  # recomputed from the recorded (5-decimal) scores
            samples = [[[(l, k) for l, row in enumerate(step) for k, v in enumerate(row) if v > threshold]
                        for step in run["scores"]] for run in runs]
        rows.append({"threshold": threshold, "traced": threshold == traced,
                     **summarise(samples, suite.total_heads, ranking),
                     "intervals": table1_intervals(samples, ranking, suite.seed),
                     "claim1": claim1_tests(samples, ranking, suite.seed)})
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
    from ..plotting import progressive_plot

    h = suite.profile["hotpotqa"]
    p = h["progressive"]
    ks, names = ks_and_names(p["ks"])
    cells = chunks(suite.runner("hotpotqa_progressive"), h, int(p["n"]), names, None, suite.progress,
                   f"{suite.name} HotpotQA progressive ablation")
    rows = progressive_rows(cells, ks, names, suite.lm.static(REASONING).heads[:20], ("em", "f1"), suite.seed)
    progressive_plot(rows, f"{suite.name}: HotpotQA progressive ablation (Eq. 2 > {suite.lm.settings.reasoning.threshold:g})",
                     suite.dir / "hotpotqa_progressive_ablation.png", metrics=(("em", "EM"), ("f1", "F1")),
                     xlabel="reasoning retrieval heads masked per step (k; strongest Eq. 2 scores)")
    write_atomic(suite.dir / "hotpotqa_progressive.json", json.dumps(rows, indent=1))
    return rows


def probe_answers(suite: ModelSuite) -> tuple[list[dict[str, Any]], list[Path], list[Path]]:
    """The unmasked answers with hidden states: ``train_n`` train examples' chunks and the ``hotpotqa`` stage's
    evaluation chunks (dev by default, reused), with the trace folders of each. Read by ``hotpotqa_probes`` and
    ``hallucination``."""
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

    return train + test, folders(runner.folder, train_setting, train), folders(suite.dir / "hotpotqa" / "cells", h, test)


def probes(suite: ModelSuite) -> dict[str, Any]:
    """Claim 3 on HotpotQA: temporal CCA (Figure 8) and the MLP regressor with its baselines (Table 3).

    Train / validation: unmasked answers to ``train_n`` train examples (80 / 20 by example); test: the
    unmasked answers of the ``hotpotqa`` stage's evaluation examples (dev by default), reused."""
    from ..plotting import cca_plot
    from ..probing import fit_or_reuse

    p = suite.profile["hotpotqa"]["probes"]
    cells, train_folders, test_folders = probe_answers(suite)
    settings = {k: p[k] for k in ("seed", "max_offset", "components", "max_epochs", "hidden_sizes")}
    report = fit_or_reuse(suite, "hotpotqa_probes", cells, train_folders, settings, test_folders=test_folders)
    cca_plot(report["cca"], f"{suite.name}: HotpotQA hidden state at n vs Eq. 2 scores at n + k (Figure 8)",
             suite.dir / "figure8.png")
    return report
