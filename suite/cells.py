"""Resumable cells: one lm-eval run of a task (a NIAH grid cell, a chunk of HotpotQA examples) per cell.

Each cell decodes every mask condition after one shared prefill; its result file is reused only when
nothing that changes its output changed (:meth:`CellRunner.settings`). A task says how its cells are
read and scored through a :class:`LmEvalTask`; the runner knows no task by name. Trace files are read
through :mod:`dynheads.traces`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..util import write_atomic
from ..spec import ConditionSpec
from ..traces import read_task, remove_task
from .shards import CellOwners, Missing, Shard

if TYPE_CHECKING:  # the whole model: the suite drives it
    from ..models.harness.lm import DynHeadsLM

TASKS_DIR = str(Path(__file__).resolve().parent.parent / "tasks")


@dataclass(frozen=True)
class LmEvalTask:
    """What the cell runner needs to know about an lm-eval task ("task" in dynheads always means one; the suite's
    folders are *sections*, their steps *stages*).

    ``kind``: the static-head calibration its documents use (``niah`` / ``hotpotqa``). ``check_metric``:
    the score the harness computed that the trace must reproduce. ``seeded``: the documents depend on
    the suite's seed. ``score(response, doc)``, ``describe(doc)``: per-sample scores and what to keep of
    a document. ``model_settings(lm)``: model settings that change this task's traces (beyond the model,
    dtype and trace format, which every cell records).
    """

    name: str
    kind: str
    check_metric: str
    seeded: bool
    score: Callable[[str, dict[str, Any]], dict[str, float]]
    describe: Callable[[dict[str, Any]], dict[str, Any]]
    model_settings: Callable[[Any], dict[str, Any]] = lambda lm: {}


def lm_eval_cell(lm: DynHeadsLM, task: LmEvalTask, metadata: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
    """Run ``task`` through lm-eval on ``lm`` with ``metadata``; the logged samples, by ``doc_id``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False, metadata=metadata)
    out = lm_eval.simple_evaluate(model=lm, tasks=[task.name], task_manager=manager,
                                  log_samples=True, limit=limit, verbosity="ERROR")
    return sorted(out["samples"][task.name], key=lambda s: s["doc_id"])


class CellRunner:
    """One lm-eval run of a task per cell, every condition after one shared prefill.

    Returns, per sample, the task's description of the document and, per condition, the response, its
    scores and the per-step heads read back from the trace file (plus the Eq. 2 scores and tokens of
    the unmasked condition where the task traces them). A half-finished cell restarts from scratch.
    ``evaluate`` runs the harness (tests substitute it).
    """

    def __init__(self, lm: DynHeadsLM, model_name: str, folder: Path, seed: int, limit: int | None,
                 evaluate: Callable[..., list[dict[str, Any]]] = lm_eval_cell, on_compute: Callable[[], None] | None = None,
                 owners: CellOwners | None = None, on_missing: Callable[[str], None] | None = None) -> None:
        self.lm, self.model_name, self.folder, self.seed, self.limit = lm, model_name, folder, seed, limit
        self.evaluate, self.on_compute, self.on_missing = evaluate, on_compute, on_missing
        self.owners = owners or CellOwners(Shard())

    def settings(self, task: LmEvalTask, metadata: dict[str, Any], conditions: list[str], heads: int | None,
                 hidden: bool = False) -> dict[str, Any]:
        """Everything that changes a cell's output, recorded in the cell and compared on reuse.

        The model (name, revision, dtype) and the engine's trace format change every cell; the seed
        changes seeded documents and random heads; the static heads matter only where the static
        condition gates them, and the Eq. 2 settings only to tasks that score with them.
        """
        masks = {spec.strategy for spec in map(ConditionSpec.parse, conditions) if spec.family == "mask"}
        settings = {"task": task.name, "metadata": metadata, "conditions": conditions, "heads": heads, "limit": self.limit,
                    **self.lm.identity(), **task.model_settings(self.lm)}
        strategies = rag_strategies(conditions)
        if strategies:  # Section 5: what decides the revealed windows
            settings["rag"] = self.lm.rag_identity(strategies)
        compressions = kv_strategies(conditions)
        if compressions:  # head-level KV compression: what decides each step's heads
            settings["kv"] = self.lm.kv_identity(task.kind, compressions)
        if task.seeded or "random" in masks or any("random" in s for s in strategies + compressions):
            settings["seed"] = self.seed
        if hidden:  # cells that also wrote the hidden-state sidecar
            settings["hidden"] = self.lm.settings.hidden.dtype
        if "static" in masks:
            settings["static_heads"] = [list(h) for h in self.lm.static(task.kind).heads[: int(heads or 0)]]
        return settings

    def run(self, key: str, task: LmEvalTask, metadata: dict[str, Any], conditions: list[str], heads: int | None,
            extra: dict[str, Any] | None = None, hidden: bool = False) -> dict[str, Any]:
        """The cell's result (cached or computed); ``hidden`` also writes the hidden-state sidecar beside the trace."""
        settings = self.settings(task, metadata, conditions, heads, hidden)
        path = self.folder / f"{key}.json"
        mine = self.owners.owns(self.folder.parent.name, key)
        if path.is_file() and (mine or self.owners.shard.builds_tables):
            cached = json.loads(path.read_text())
            if cached.get("settings") == settings:
                return cached
        if not mine:  # another shard's cell: its summary waits for it (shards.py)
            where = f"{self.folder.parent.name}/{key}"
            if self.on_missing is not None:
                self.on_missing(where)
            return Missing(where)
        trace_dir = self.folder / f"{key}.traces"
        remove_task(trace_dir, task.name)  # a half-finished cell restarts from scratch
        strategies, compressions = rag_strategies(conditions), kv_strategies(conditions)
        self.lm.configure(mask="none" if strategies or compressions else "+".join(conditions), heads=heads,
                          trace_dir=trace_dir, hidden=hidden, **({"rag": "+".join(strategies)} if strategies else {}),
                          **({"kv": "+".join(compressions)} if compressions else {}))
        if self.on_compute is not None:
            self.on_compute()
        full = {"pretrained": None if self.model_name == "smollm2" else self.model_name, **metadata}
        if task.seeded and "seed" not in metadata:  # a cell may name its own document seed (in its metadata)
            full["seed"] = self.seed
        samples = self.evaluate(self.lm, task, full, self.limit)
        traces = {(rec["doc_id"], rec["condition"]): rec for rec in read_task(trace_dir, task.name)}
        rows = []
        for s in samples:
            doc = s["doc"]
            per_condition = {}
            for name in conditions:
                rec = traces[(s["doc_id"], name)]
                result = {"response": rec["response"], **task.score(rec["response"], doc),
                          "heads": [step.get("heads", []) for step in rec["steps"]],
                          "gated": [len(step.get("gated", [])) for step in rec["steps"]],
                          "heads_after": [step.get("heads_after", []) for step in rec["steps"]]}
                if "rag" in rec:
                    result["rag"] = rec["rag"]
                if rec["steps"] and "kv_kept" in rec["steps"][0]:  # measured (query-head, KV-head) shares kept per step
                    result["kv_kept"] = [step["kv_kept"] for step in rec["steps"]]
                if name == "none" and rec["steps"] and "scores" in rec["steps"][0]:
                    result["scores"] = [step["scores"] for step in rec["steps"]]
                    result["tokens"] = [step["token_id"] for step in rec["steps"]]
                per_condition[name] = result
            check = task.check_metric
            if per_condition[conditions[0]][check] != float(s[check]):  # the harness scored the first condition
                raise RuntimeError(f"run_suite: trace and lm-eval disagree on doc {s['doc_id']} of {path.name}; delete the cell and rerun")
            rows.append({"doc_id": s["doc_id"], **task.describe(doc), "conditions": per_condition})
        result = {"settings": settings, **(extra or {}), "samples": rows}
        write_atomic(path, json.dumps(result))
        return result


def prefixed(conditions: list[str], family: str, what: str) -> list[str]:
    """The labels of a cell's conditions of ``family`` (``rag:dynamic`` -> ``dynamic``, :class:`ConditionSpec`); a
    cell is all of them or none."""
    specs = [ConditionSpec.parse(c) for c in conditions]
    strategies = [spec.label for spec in specs if spec.family == family]
    if strategies and len(strategies) != len(conditions):
        raise ValueError(f"run_suite: a cell cannot mix {what} ({family}:...) with other conditions")
    return strategies


def kv_strategies(conditions: list[str]) -> list[str]:
    """The KV-compression strategies of a cell's conditions (``kv:static@0.25`` -> ``static@0.25``)."""
    return prefixed(conditions, "kv", "KV strategies")


def rag_strategies(conditions: list[str]) -> list[str]:
    """The RAG strategies of a cell's conditions (``rag:dynamic`` -> ``dynamic``)."""
    return prefixed(conditions, "rag", "RAG strategies")
