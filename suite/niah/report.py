"""Length × depth tables of ``acc`` and ``rouge_l`` from lm-eval ``--log_samples`` output.

Usage: ``python -m dynheads.suite.niah.report samples_niah_uuid_<time>.jsonl [more.jsonl ...]``
(rows of several files are pooled). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from ...tasks.niah_uuid.utils import markdown_table, per_cell


def read_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from None


def render(cells: list[dict[str, Any]]) -> str:
    n = sum(c["n"] for c in cells)
    acc = sum(c["acc"] * c["n"] for c in cells) / n
    rouge = sum(c["rouge_l"] * c["n"] for c in cells) / n
    return "\n".join(
        [
            f"niah_uuid: {n} samples, {len(cells)} cells; overall acc {acc:.3f}, rouge_l {rouge:.3f}",
            "",
            "### acc (UUID contained exactly)",
            "",
            markdown_table(cells, "acc"),
            "",
            "### rouge_l (F-measure vs the needle sentence)",
            "",
            markdown_table(cells, "rouge_l"),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynheads.suite.niah.report", description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="+", help="lm-eval samples_niah_uuid_*.jsonl file(s)")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    try:
        for path in args.samples:
            rows.extend(read_samples(path))
        if not rows:
            raise ValueError("no samples in " + ", ".join(args.samples))
        cells = per_cell(rows)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
