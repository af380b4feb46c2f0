"""Command-line overrides of a task's profile entries (``run_suite.py --lengths 500,1000`` and the like)."""

from __future__ import annotations

from typing import Any


def override(target: dict[str, Any], key: str, value: Any, cast: type | None = None) -> None:
    """Apply a CLI override to a profile entry: ``value`` None keeps the profile; a comma list is split and cast."""
    if value is None or value == "":
        return
    target[key] = [cast(x) for x in value.split(",")] if cast is not None else value
