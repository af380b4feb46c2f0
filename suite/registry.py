"""Stages and their prerequisites: the registry resolves what runs, in which order; no stage calls another.

A stage is a function of a :class:`~dynheads.suite.model.ModelSuite` (or None: a name for its
prerequisites only) plus the stages it needs. ``run_suite.py`` holds the registry; :func:`run_order`
turns a selection into the order to run, prerequisites first, each stage once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Stage:
    """One ``run_suite`` stage: ``run(suite)`` (None: nothing beyond its prerequisites) and the stages ``needs``
    that must have run first (calibrations, or a stage whose result files it reads)."""

    run: Callable[[Any], Any] | None
    needs: tuple[str, ...] = ()


def run_order(stages: Mapping[str, Stage], selected: Sequence[str]) -> list[str]:
    """``selected`` and everything they need, prerequisites first, otherwise in registry order.

    Unknown names and cycles are one clear error each (a cycle is a bug of the registry).
    """
    unknown = [s for s in selected if s not in stages]
    if unknown:
        raise ValueError(f"run_suite: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(stages)}")
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"run_suite: stages {' -> '.join(visiting + [name])} need each other; fix the registry")
        if name not in stages:
            raise ValueError(f"run_suite: stage {visiting[-1]!r} needs unknown stage {name!r}; fix the registry")
        visiting.append(name)
        for need in stages[name].needs:
            visit(need)
        visiting.pop()
        order.append(name)

    for name in sorted(set(selected), key=list(stages).index):
        visit(name)
    return order
