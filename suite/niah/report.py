"""Length × depth tables of ``acc`` and ``rouge_l`` from lm-eval ``--log_samples`` output.

Usage: ``python -m dynheads.suite.niah.report samples_niah_uuid_<time>.jsonl [more.jsonl ...]``
(rows of several files are pooled). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any, Iterator

from ...tasks.niah_uuid.utils import METRICS, score


def _response_of(row: Mapping[str, Any]) -> str | None:
    for key in ("response", "filtered_resps", "resps"):
        value = row.get(key)
        while isinstance(value, (list, tuple)) and value:
            value = value[0]
        if isinstance(value, str):
            return value
    return None


def per_cell(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean ``acc`` / ``rouge_l`` per (length, depth) cell, sorted by length then depth.

    ``rows`` are either lm-eval ``--log_samples`` records (``{"doc": {...}, "acc": ..., ...}``) or flat
    dicts holding ``length``, ``depth`` and the metrics. Missing metrics are computed from a response
    (``response``, ``filtered_resps`` or ``resps``) and the document's ``uuid`` / ``needle``.
    """
    sums: dict[tuple[int, float], dict[str, float]] = {}
    for row in rows:
        doc = row.get("doc") if isinstance(row.get("doc"), Mapping) else row
        try:
            key = (int(doc["length"]), float(doc["depth"]))
        except KeyError as exc:
            raise ValueError(f"niah_uuid.per_cell: row has no {exc.args[0]!r}; pass niah_uuid samples or docs") from None
        values = {m: row.get(m) for m in METRICS}
        if any(v is None for v in values.values()):
            response = _response_of(row)
            if response is None:
                raise ValueError("niah_uuid.per_cell: row has neither acc/rouge_l nor a response to score")
            values = score(response, doc)
        cell = sums.setdefault(key, {"n": 0, "acc": 0.0, "rouge_l": 0.0})
        cell["n"] += 1
        for m in METRICS:
            cell[m] += float(values[m])
    return [
        {"length": length, "depth": depth, "n": int(c["n"]), "acc": c["acc"] / c["n"], "rouge_l": c["rouge_l"] / c["n"]}
        for (length, depth), c in sorted(sums.items())
    ]


def markdown_table(cells: Iterable[Mapping[str, Any]], metric: str = "acc", digits: int = 2) -> str:
    """Length (rows) × depth (columns) Markdown table of ``metric`` from :func:`per_cell` output."""
    cells = list(cells)
    lengths = sorted({int(c["length"]) for c in cells})
    depths = sorted({float(c["depth"]) for c in cells})
    value = {(int(c["length"]), float(c["depth"])): float(c[metric]) for c in cells}
    weight = {(int(c["length"]), float(c["depth"])): int(c.get("n", 1)) for c in cells}
    lines = [
        "| length \\ depth | " + " | ".join(f"{d:g}" for d in depths) + " | mean |",
        "|---:|" + "---:|" * (len(depths) + 1),
    ]
    for length in lengths:
        row, total, count = [], 0.0, 0
        for depth in depths:
            if (length, depth) in value:
                v, n = value[(length, depth)], weight[(length, depth)]
                row.append(f"{v:.{digits}f}")
                total, count = total + v * n, count + n
            else:
                row.append("–")
        mean = f"{total / count:.{digits}f}" if count else "–"
        lines.append(f"| {length} | " + " | ".join(row) + f" | {mean} |")
    return "\n".join(lines)


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
