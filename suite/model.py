"""The model under test in a suite run: the ``dynheads`` lm-eval model, its results folder and shared results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..traces import TRACE_FORMAT
from ..util import write_atomic
from ..models.versions import installed_versions
from .cells import CellRunner
from .shards import CellOwners, Shard


class ModelSuite:
    """One model under test: the ``dynheads`` lm-eval model, its results folder ``OUT/<model>/``, the
    profile of every task, and results that several stages share (computed once per invocation)."""

    def __init__(self, model_name: str, profile: dict[str, Any], out: Path, seed: int, limit: int | None,
                 progress: Callable, model_args: dict[str, Any], shard: Shard = Shard()) -> None:
        from ..models.harness.lm import DynHeadsLM

        self.name, self.profile, self.seed, self.limit, self.progress = model_name, profile, seed, limit, progress
        self.owners, self.missing = CellOwners(shard), []  # which shard computes each cell; cells of others not written yet
        self.dir = out / slug(model_name)
        self.lm = DynHeadsLM(pretrained=model_name, seed=seed, **model_args)
        self.total_heads = self.lm.engine.num_layers * self.lm.engine.num_heads
        self._shared: dict[str, Any] = {}
        self.computed = 0  # cells and calibrations computed (not read from a cache) by this invocation
        engine = self.lm.engine
        write_atomic(self.dir / "model.json", json.dumps({
            "model": model_name, "total_heads": self.total_heads, "versions": installed_versions(),
            "revision": self.lm.revision, "dtype": str(next(engine.model.parameters()).dtype).replace("torch.", ""),
            "device": str(engine.device), "seed": seed, "trace_format": TRACE_FORMAT}))

    def runner(self, stage: str) -> CellRunner:
        return CellRunner(self.lm, self.name, self.dir / stage / "cells", self.seed, self.limit, on_compute=self._count,
                          owners=self.owners, on_missing=self.missing.append)

    def _count(self) -> None:
        self.computed += 1

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per invocation (e.g. the NIAH grid that Figure 2 and Table 1 both read)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def write_calibration(self, kind: str, setting: dict[str, Any], filename: str) -> dict[str, Any]:
        """The static heads of ``kind`` (computed once and cached by the model), summarised into ``filename``."""
        static = self.lm.static(kind)
        if static.computed:
            self._count()
        if not static.informative:
            print(f"run_suite: warning: no head of {self.name} retrieved during the {kind} calibration; static-head "
                  "statistics are reported as absent (use a larger calibration)", file=sys.stderr)
        summary = {"model": self.name, "total_heads": self.total_heads, "file": str(static.path),
                   "informative": static.informative, "samples": static.samples, "steps": static.steps,
                   "masked_per_step": static.masked_per_step,
                   "masked_per_masked_step": static.masked_per_masked_step, "matched_n": static.matched_n,
                   "top20": [list(h) for h in static.heads[:20]], "setting": setting}
        write_atomic(self.dir / filename, json.dumps(summary, indent=1))
        return summary


def slug(name: str) -> str:
    return name.strip("/").replace("/", "__")
