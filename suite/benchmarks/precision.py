"""What a low-precision run changes: the NIAH grid decoded unmasked in float32 and in another dtype, compared.

    python -m dynheads.suite.benchmarks.precision [--dtype bfloat16] [--lengths 500,1000,2000] [--depths 0,0.5,1] [--json F]

Why: GPU users run 8B models in bfloat16, and nothing else says how far its traces are from float32's. Both runs go
through the ``dynheads`` lm-eval model exactly as the suite does (same prompts, chat template, stopping); the
comparison reads their trace files. Free-running generations diverge after their first different token, so the head
sets are compared on the steps before it (the same context in both dtypes), and the answers are compared whole.
Reported: the share of generations with identical tokens, the share of steps before the first divergence, the
per-step Jaccard of the Eq. 1 head sets there (mean and the share of steps with equal sets), accuracy in each dtype,
and the wall-clock ratio of the two decodes (best of ``--repeats``, same machine, same run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ...metrics.text import contains_exact
from ...util import write_atomic

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"


def _jaccard(a: list, b: list) -> float:
    x, y = {tuple(h) for h in a}, {tuple(h) for h in b}
    return 1.0 if not x and not y else len(x & y) / len(x | y)


def compare_traces(reference: list[dict], other: list[dict]) -> dict[str, Any]:
    """Agreement of two trace files of the same documents (``doc_id`` order), ``other`` against ``reference``."""
    by_doc = {r["doc_id"]: r for r in other}
    same, agreeing, compared, jaccards, equal_sets = 0, 0, 0, [], 0
    for ref in reference:
        alt = by_doc[ref["doc_id"]]
        a, b = [s["token_id"] for s in ref["steps"]], [s["token_id"] for s in alt["steps"]]
        same += a == b
        prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        agreeing += prefix
        compared += max(len(a), len(b))
        for s, t in zip(ref["steps"][:prefix], alt["steps"][:prefix]):
            jaccards.append(_jaccard(s["heads"], t["heads"]))
            equal_sets += jaccards[-1] == 1.0
    return {"generations": len(reference), "identical_generations": same / len(reference),
            "steps_before_divergence": agreeing / compared if compared else None,
            "head_jaccard_mean": sum(jaccards) / len(jaccards) if jaccards else None,
            "equal_head_sets": equal_sets / len(jaccards) if jaccards else None, "compared_steps": len(jaccards)}


def _decode(dtype: str, metadata: dict[str, Any], trace_dir: Path, repeats: int) -> tuple[list[dict], float, float]:
    """(trace lines, best wall seconds, accuracy) of the unmasked grid under ``dtype``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from ...models.harness.lm import DynHeadsLM

    lm = DynHeadsLM(device="cpu", dtype=dtype, static_heads="off", trace_dir=str(trace_dir))
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    best = float("inf")
    for _ in range(repeats):
        for old in trace_dir.glob("*.jsonl"):
            old.unlink()
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=["niah_uuid"], task_manager=manager, log_samples=True)
        best = min(best, time.perf_counter() - start)
    lines = [json.loads(line) for line in (trace_dir / "niah_uuid.jsonl").read_text().splitlines()]
    uuids = {s["doc_id"]: s["doc"]["uuid"] for s in out["samples"]["niah_uuid"]}
    accuracy = sum(contains_exact(r["response"], uuids[r["doc_id"]]) for r in lines) / len(lines)
    return lines, best, accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynheads.suite.benchmarks.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--lengths", default="500,1000,2000", help="context tokens (default: the quick profile's)")
    parser.add_argument("--depths", default="0,0.5,1", help="needle depths (default: the quick profile's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="timed repetitions per dtype; the best counts")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    try:
        metadata = {"lengths": [int(x) for x in args.lengths.split(",")], "depths": [float(x) for x in args.depths.split(",")],
                    "runs": 1, "seed": args.seed}
    except ValueError:
        print(f"precision: cannot read --lengths {args.lengths!r} / --depths {args.depths!r}; give e.g. --lengths 500,1000 "
              "--depths 0,0.5", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        runs = {dtype: _decode(dtype, metadata, Path(tmp) / dtype, args.repeats) for dtype in ("float32", args.dtype)}
    result = {**compare_traces(runs["float32"][0], runs[args.dtype][0]), "dtype": args.dtype, **metadata,
              "accuracy_float32": runs["float32"][2], f"accuracy_{args.dtype}": runs[args.dtype][2],
              "seconds_float32": runs["float32"][1], f"seconds_{args.dtype}": runs[args.dtype][1],
              "time_ratio": runs[args.dtype][1] / runs["float32"][1]}
    print(json.dumps(result, indent=1))
    if args.json:
        write_atomic(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
