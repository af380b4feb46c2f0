"""Split a suite run over processes, GPUs or machines that share the results folder.

``run_suite.py --shard I/N`` (I = 0..N-1), or the rank and world size that ``torchrun`` / ``accelerate
launch`` (``RANK`` / ``WORLD_SIZE``) or a SLURM array (``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT``,
from ``SLURM_ARRAY_TASK_MIN``) set, makes a process compute only its share of the cells: the i-th cell a
stage enumerates (in the profile's order, the same in every process and on every machine) belongs to
shard ``i mod N``, so every shard gets an equal share of every stage (a hash of the cell's name would
leave small stages lopsided).

A cell of another shard is read when its file is already there; otherwise it stands as :class:`Missing`,
which lets the stage go on enumerating (and computing) its own cells but stops the stage's summary at
its first use (:class:`CellsMissing`). Only the last shard (I = N-1), or a run without sharding, builds
summaries and tables, from the cells present, and says which are missing; the other shards compute
cells only. A stage that needs another stage's result (``rag`` reads the ``hotpotqa_probes`` probe)
waits for a later run once that result exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class CellsMissing(Exception):
    """A stage's summary needs cells (or results) that another shard has not written yet."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``Shard(0, 1)``: the whole run)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"run_suite: shard {self.index}/{self.count} does not exist; give --shard I/N with 0 <= I < N, e.g. --shard 0/2")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def builds_tables(self) -> bool:
        """The last shard (or an unsharded run) summarises stages and writes tables; the others compute cells only."""
        return self.index == self.count - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class CellOwners:
    """Which shard computes each cell: the i-th distinct cell of a stage, in the order the stage asks for
    them, belongs to shard ``i mod N``; a cell asked for again keeps its shard."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self._order: dict[str, dict[str, int]] = {}

    def owns(self, stage: str, key: str) -> bool:
        seen = self._order.setdefault(stage, {})
        index = seen.setdefault(key, len(seen))
        return index % self.shard.count == self.shard.index


def parse_shard(text: str | None, environ: Mapping[str, str] = os.environ) -> Shard:
    """``--shard I/N``; without it, the launcher's rank and world size, else the whole run."""
    if text:
        index, sep, count = str(text).partition("/")
        if not (sep and index.strip().isdigit() and count.strip().isdigit()):
            raise ValueError(f"run_suite: --shard {text!r}: write I/N with 0 <= I < N, e.g. --shard 0/2")
        return Shard(int(index), int(count))
    if environ.get("WORLD_SIZE", "").isdigit() and environ.get("RANK", "").isdigit():  # torchrun, accelerate launch
        return Shard(int(environ["RANK"]), int(environ["WORLD_SIZE"]))
    if environ.get("SLURM_ARRAY_TASK_COUNT", "").isdigit() and environ.get("SLURM_ARRAY_TASK_ID", "").isdigit():
        first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
        return Shard(int(environ["SLURM_ARRAY_TASK_ID"]) - first, int(environ["SLURM_ARRAY_TASK_COUNT"]))
    return Shard()


class Missing(dict):
    """Stands for a cell another shard has not written yet: any read raises :class:`CellsMissing`."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def _missing(self, *_: Any, **__: Any) -> Any:
        raise CellsMissing(self.where)

    __getitem__ = get = keys = items = values = __iter__ = __len__ = __contains__ = _missing
