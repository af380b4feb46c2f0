"""Compare two ``run_suite.py`` result folders: do their tables and traces agree, step by step?

Usage: ``python -m dynheads.suite.compare_runs RESULTS_A RESULTS_B``

Why: results must not depend on how they were computed (batch size, device count, engine version). Run
the suite twice (e.g. ``--batch-size 1`` and ``--batch-size 16``, or before and after an engine change)
and this says which table files differ and, per stage, on how many decode steps the traces agree: the
same token, the same head set (Eq. 1 or Eq. 2), the same gated heads and the same heads after a re-run.
Cells are matched by file name (their key), trace lines by document and condition.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..traces import read_lines

TABLE_SUFFIXES = (".md", ".csv")
STEP_FIELDS = ("token_id", "heads", "gated", "heads_after")


def trace_lines(path: Path) -> dict[tuple[Any, str], dict[str, Any]]:
    """A trace file's lines by (document, condition)."""
    return {(record["doc_id"], record["condition"]): record for record in read_lines(path)}


def compare_traces(a: Path, b: Path) -> dict[str, Counter]:
    """Per stage: steps compared, steps identical in every field, lines whose token sequence differs."""
    stages: dict[str, Counter] = {}
    for file_a in sorted(a.rglob("*.traces/*.jsonl")):
        rel = file_a.relative_to(a)
        file_b = b / rel
        stage = rel.parts[1] if len(rel.parts) > 2 else rel.parts[0]
        count = stages.setdefault(stage, Counter())
        if not file_b.is_file():
            count["cells_missing"] += 1
            continue
        lines_a, lines_b = trace_lines(file_a), trace_lines(file_b)
        for key, rec_a in lines_a.items():
            rec_b = lines_b.get(key)
            count["lines"] += 1
            if rec_b is None:
                count["lines_missing"] += 1
                continue
            tokens_a = [s["token_id"] for s in rec_a["steps"]]
            tokens_b = [s["token_id"] for s in rec_b["steps"]]
            count["lines_same_tokens"] += tokens_a == tokens_b
            for step_a, step_b in zip(rec_a["steps"], rec_b["steps"]):
                count["steps"] += 1
                count["steps_identical"] += all(step_a.get(f) == step_b.get(f) for f in STEP_FIELDS)
            count["steps"] += abs(len(rec_a["steps"]) - len(rec_b["steps"]))  # steps only one side has differ
    return stages


def differing_tables(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """Table files (Markdown, CSV) present in both folders: the identical ones and the differing ones."""
    same, different = [], []
    for file_a in sorted(p for p in a.rglob("*") if p.suffix in TABLE_SUFFIXES and ".traces" not in str(p)):
        file_b = b / file_a.relative_to(a)
        if file_b.is_file():
            (same if file_a.read_bytes() == file_b.read_bytes() else different).append(str(file_a.relative_to(a)))
    return same, different


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="a results folder (run_suite.py --out)")
    parser.add_argument("b", type=Path, help="another results folder")
    args = parser.parse_args(argv)
    for folder in (args.a, args.b):
        if not folder.is_dir():
            print(f"compare_runs: {folder} is not a folder; give two run_suite.py --out folders", file=sys.stderr)
            return 2
    same, different = differing_tables(args.a, args.b)
    print(f"tables: {len(same)} identical, {len(different)} differ" + ("".join(f"\n  differs: {d}" for d in different)))
    print("| stage | trace lines | same tokens | steps | identical steps | share |")
    print("|---|---:|---:|---:|---:|---:|")
    total = Counter()
    for stage, count in compare_traces(args.a, args.b).items():
        total.update(count)
        share = count["steps_identical"] / count["steps"] if count["steps"] else float("nan")
        print(f"| {stage} | {count['lines']} | {count['lines_same_tokens']} | {count['steps']} | {count['steps_identical']} | {share:.4f} |")
    if total["steps"]:
        print(f"| all | {total['lines']} | {total['lines_same_tokens']} | {total['steps']} | {total['steps_identical']} | "
              f"{total['steps_identical'] / total['steps']:.4f} |")
    if total["cells_missing"] or total["lines_missing"]:
        print(f"missing in {args.b}: {total['cells_missing']} cells, {total['lines_missing']} trace lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
