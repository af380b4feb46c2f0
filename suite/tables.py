"""Rendering shared by every task's suite tables: Markdown and CSV text, result-file rows, the leaderboard.

Why one module: each task folder owns its tables (what the columns are), but a table entry must look
the same everywhere (``—`` for a value that was not computed, three decimals), and the leaderboard
joins the columns of every task into one row per model.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..util import write_atomic


def fmt(value: Any, digits: int = 3) -> str:
    """A table entry: ``—`` marks a value that was not computed (or is undefined)."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def with_interval(key: str, value: Any, record: dict[str, Any] | None) -> dict[str, Any]:
    """Leaderboard columns of one mean: ``key`` and, when its interval is known, ``key_ci_low`` / ``key_ci_high``
    (the 95 % bootstrap bounds; CSV and JSON keep both ends)."""
    return {key: value, f"{key}_ci_low": (record or {}).get("low"), f"{key}_ci_high": (record or {}).get("high")}


def shown(board_row: dict[str, Any], key: str, digits: int = 3) -> str:
    """A leaderboard cell: ``0.410 [0.330, 0.490]`` where the interval is known, else the plain value."""
    low, high = board_row.get(f"{key}_ci_low"), board_row.get(f"{key}_ci_high")
    if board_row.get(key) is None or low is None or high is None:
        return fmt(board_row.get(key), digits)
    return f"{fmt(board_row[key], digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def under_heading(markdown: str) -> str:
    """A Markdown file placed under a heading of another page (the results page's block, the run page's
    "Leaderboard"): its own "# title" line and the blank lines after it dropped (that heading names it) and its
    sections one level down, so the page keeps one h1 and its outline in order."""
    lines = markdown.split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    return "\n".join("#" + line if line.startswith("#") else line for line in lines)


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


def with_intervals(stats: dict[str, Any]) -> dict[str, Any]:
    """A result dict whose ``intervals`` records are flattened to ``key_ci_low`` / ``key_ci_high``, the
    leaderboard's convention, so :func:`shown`, :func:`mean_std` and :func:`unique_of` read both alike."""
    flat = dict(stats)
    for key, record in (stats.get("intervals") or {}).items():
        flat.update({f"{key}_ci_low": record.get("low"), f"{key}_ci_high": record.get("high")})
    return flat


TABLE1_NOTE = ("Each statistic pools every step of the generations, with its 95 % bootstrap interval over "
               "generations in brackets (seeded). Unique heads and entropy can only shrink when generations repeat, so "
               "their intervals sit at or below the estimate.\n\n")
TABLE1_KEYS = ("heads_per_step_mean", "unique_heads", "jaccard_static_20", "adjacent_jaccard", "entropy")


def table1_columns(stats: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaderboard columns of the Table 1 statistics, each with its interval, plus the std of heads per step."""
    intervals = stats.get("intervals") or {}
    out = {k: v for key in TABLE1_KEYS for k, v in with_interval(prefix + key, stats.get(key), intervals.get(key)).items()}
    return {**out, f"{prefix}heads_per_step_std": stats.get("heads_per_step_std")}


def _bounds(d: dict[str, Any], key: str, digits: int) -> str:
    low, high = d.get(f"{key}_ci_low"), d.get(f"{key}_ci_high")
    return "" if low is None or high is None else f" [{low:.{digits}f}, {high:.{digits}f}]"


def mean_std(d: dict[str, Any], prefix: str = "") -> str | None:
    """``mean [95 % CI] ± std`` of heads per step (``—`` when not computed; no interval when none is known)."""
    mean = d.get(f"{prefix}heads_per_step_mean")
    if mean is None:
        return None
    return f"{mean:.2f}{_bounds(d, f'{prefix}heads_per_step_mean', 2)} ± {d[f'{prefix}heads_per_step_std']:.2f}"


def unique_of(d: dict[str, Any], total: int | None, prefix: str = "") -> str | None:
    """``unique [95 % CI] / total`` heads (``—`` when not computed)."""
    unique = d.get(f"{prefix}unique_heads")
    return None if unique is None else f"{unique}{_bounds(d, f'{prefix}unique_heads', 0)} / {total}"


def collect_rows(out: Path, result_files: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """One row per model folder under ``out``, from the stage result files present there.

    ``result_files``: row key -> (file name in the model folder, key inside it or None for the whole
    file), gathered from every task. Tables are rebuilt from files, not from this run's memory, so
    running one stage later keeps the other stages' columns; a stage never run shows as ``—``.
    """
    rows = []
    for folder in sorted(p for p in out.iterdir() if (p / "model.json").is_file() or (p / "calibration.json").is_file()):
        def load(name: str) -> Any:
            path = folder / name
            return json.loads(path.read_text()) if path.is_file() else None

        model = load("model.json") or load("calibration.json")  # results of older versions lack model.json
        row: dict[str, Any] = {"model": model["model"], "total_heads": model["total_heads"]}
        for key, (name, inner) in result_files.items():
            data = load(name)
            row[key] = data[inner] if data is not None and inner is not None else data
        rows.append(row)
    return rows


def write_leaderboard(out: Path, rows: list[dict[str, Any]], columns: Sequence[Callable[[dict[str, Any]], dict[str, Any]]],
                      sections: Sequence[Callable[[list[dict[str, Any]]], str]]) -> str:
    """``leaderboard.{md,csv,json}``: one row per model, each task adding its columns and its Markdown section."""
    board = [{"model": r["model"], **{k: v for column in columns for k, v in column(r).items()}} for r in rows]
    text = "# dynheads leaderboard\n\n" + "\n".join(section(board) for section in sections)
    write_atomic(out / "leaderboard.md", text)
    write_atomic(out / "leaderboard.csv", to_csv(board))
    write_atomic(out / "leaderboard.json", json.dumps(board, indent=2))
    return text
