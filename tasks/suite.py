"""What every task's ``run_suite`` stages share: the model under test, resumable cells, common summaries.

A *cell* is one lm-eval run of a task (a NIAH grid cell, a chunk of HotpotQA examples) with every
mask condition decoded after one shared prefill; its result file is reused only when nothing that
changes its output changed (:meth:`CellRunner.settings`). A task says how its cells are read and
scored through a :class:`CellTask`; the runner knows no task by name. A stage is a function of a
:class:`ModelSuite`; ``run_suite.py`` holds the registry of stages.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dynheads.models.files import write_atomic
from dynheads.tasks.tables import fmt, markdown

CONDITIONS = ("none", "dynamic", "static", "random")
TASKS_DIR = str(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class CellTask:
    """What the cell runner needs to know about a task.

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


@dataclass(frozen=True)
class Stage:
    """One ``run_suite`` stage: ``run(suite)`` (None: nothing beyond its calibrations) and the
    calibrations (names in run_suite's ``CALIBRATIONS``) that must run first."""

    run: Callable[["ModelSuite"], Any] | None
    calibrations: tuple[str, ...] = ()


def lm_eval_cell(lm: Any, task: CellTask, metadata: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
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

    def __init__(self, lm: Any, model_name: str, folder: Path, seed: int, limit: int | None,
                 evaluate: Callable[..., list[dict[str, Any]]] = lm_eval_cell, on_compute: Callable[[], None] | None = None) -> None:
        self.lm, self.model_name, self.folder, self.seed, self.limit = lm, model_name, folder, seed, limit
        self.evaluate, self.on_compute = evaluate, on_compute

    def settings(self, task: CellTask, metadata: dict[str, Any], conditions: list[str], heads: int | None,
                 hidden: bool = False) -> dict[str, Any]:
        """Everything that changes a cell's output, recorded in the cell and compared on reuse.

        The model (name, revision, dtype) and the engine's trace format change every cell; the seed
        changes seeded documents and random heads; the static heads matter only where the static
        condition gates them, and the Eq. 2 settings only to tasks that score with them.
        """
        masks = {c.partition(":")[0] for c in conditions}
        settings = {"task": task.name, "metadata": metadata, "conditions": conditions, "heads": heads, "limit": self.limit,
                    **self.lm.identity(), **task.model_settings(self.lm)}
        strategies = rag_strategies(conditions)
        if strategies:  # Section 5: what decides the revealed windows
            settings["rag"] = self.lm.rag_identity(strategies)
        if task.seeded or "random" in masks or any("random" in s for s in strategies):
            settings["seed"] = self.seed
        if hidden:  # cells that also wrote the hidden-state sidecar
            settings["hidden"] = self.lm.hidden_dtype
        if "static" in masks:
            settings["static_heads"] = [list(h) for h in self.lm.static(task.kind).heads[: int(heads or 0)]]
        return settings

    def run(self, key: str, task: CellTask, metadata: dict[str, Any], conditions: list[str], heads: int | None,
            extra: dict[str, Any] | None = None, hidden: bool = False) -> dict[str, Any]:
        """The cell's result (cached or computed); ``hidden`` also writes the hidden-state sidecar beside the trace."""
        settings = self.settings(task, metadata, conditions, heads, hidden)
        path = self.folder / f"{key}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("settings") == settings:
                return cached
        trace_dir = self.folder / f"{key}.traces"
        trace_file = trace_dir / f"{task.name}.jsonl"
        for stale in (trace_file, trace_dir / f"{task.name}.vectors.bin"):
            stale.unlink(missing_ok=True)  # a half-finished cell restarts from scratch
        strategies = rag_strategies(conditions)
        self.lm.configure(mask="none" if strategies else "+".join(conditions), heads=heads, trace_dir=trace_dir,
                          hidden=hidden, **({"rag": "+".join(strategies)} if strategies else {}))
        if self.on_compute is not None:
            self.on_compute()
        full = {"pretrained": None if self.model_name == "smollm2" else self.model_name, **metadata}
        if task.seeded and "seed" not in metadata:  # a cell may name its own document seed (in its metadata)
            full["seed"] = self.seed
        samples = self.evaluate(self.lm, task, full, self.limit)
        traces: dict[tuple[int, str], dict[str, Any]] = {}
        for line in trace_file.read_text().splitlines():
            rec = json.loads(line)
            traces[(rec["doc_id"], rec["mask"])] = rec
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


class ModelSuite:
    """One model under test: the ``dynheads`` lm-eval model, its results folder ``OUT/<model>/``, the
    profile of every task, and results that several stages share (computed once per invocation)."""

    def __init__(self, model_name: str, profile: dict[str, Any], out: Path, seed: int, limit: int | None,
                 progress: Callable, model_args: dict[str, Any]) -> None:
        from dynheads.models.lm import DynHeadsLM

        self.name, self.profile, self.seed, self.limit, self.progress = model_name, profile, seed, limit, progress
        self.dir = out / slug(model_name)
        self.lm = DynHeadsLM(pretrained=model_name, seed=seed, **model_args)
        self.total_heads = self.lm.engine.num_layers * self.lm.engine.num_heads
        self._shared: dict[str, Any] = {}
        self.computed = 0  # cells and calibrations computed (not read from a cache) by this invocation
        write_atomic(self.dir / "model.json", json.dumps({"model": model_name, "total_heads": self.total_heads}))

    def runner(self, stage: str) -> CellRunner:
        return CellRunner(self.lm, self.name, self.dir / stage / "cells", self.seed, self.limit, on_compute=self._count)

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


def rag_strategies(conditions: list[str]) -> list[str]:
    """The RAG strategies of a cell's conditions (``rag:dynamic`` -> ``dynamic``); a cell is all RAG or none."""
    strategies = [c[len("rag:"):] for c in conditions if c.startswith("rag:")]
    if strategies and len(strategies) != len(conditions):
        raise ValueError("run_suite: a cell cannot mix RAG strategies (rag:...) with mask conditions")
    return strategies


def slug(name: str) -> str:
    return name.strip("/").replace("/", "__")


def samples_of(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for c in cells for r in c["samples"]]


def mean_of(cells: list[dict[str, Any]], condition: str, metric: str) -> float | None:
    values = [r["conditions"][condition][metric] for r in samples_of(cells) if metric in r["conditions"][condition]]
    return statistics.fmean(values) if values else None


def dynamic_masking(cells: list[dict[str, Any]]) -> dict[str, float | None]:
    """Heads the dynamic condition masked per step, over all steps and over the steps that masked any
    (the latter is what N was matched to)."""
    from dynheads.metrics.dynamism import masked_means

    per_step, per_masked_step = masked_means([k for r in samples_of(cells) for k in r["conditions"]["dynamic"]["gated"]])
    return {"dynamic_masked_per_step": per_step, "dynamic_masked_per_masked_step": per_masked_step}


def ks_and_names(ks: list[int]) -> tuple[list[int], list[str]]:
    ks = [int(k) for k in ks]
    return ks, ["none" if k == 0 else f"dynamic:{k}" for k in ks]


def progressive_rows(cells: list[dict[str, Any]], ks: list[int], names: list[str], top20: list, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """Figures 3 / 7: per k, the task scores, heads masked per step and mean peak static compensation m_s."""
    from dynheads.metrics.dynamism import peak_static_compensation

    rows = []
    for k, name in zip(ks, names):
        results = [r["conditions"][name] for r in samples_of(cells)]
        peaks = [peak_static_compensation(res["heads"], res["heads_after"], top20) for res in results]
        rows.append({"k": k, "samples": len(results), "static_compensation": statistics.fmean(peaks),
                     **{m: statistics.fmean(res[m] for res in results) for m in metrics},
                     "masked_per_step": statistics.fmean(g for res in results for g in res["gated"])})
    return rows


def condition_titles(n: int) -> dict[str, str]:
    return {"none": "no masking", "dynamic": "dynamic heads", "static": f"top-{n} static", "random": f"{n} random"}


def matching_note(static: Any, summary: dict[str, Any], n: int) -> str:
    """How N was matched, and how many heads the dynamic condition actually masked here."""
    return (f"N = {n} static / random heads masked at every step. N is the calibration's mean number of dynamic "
            f"heads masked per step that masked any ({fmt(static.masked_per_masked_step, 2)}; over all steps "
            f"{fmt(static.masked_per_step, 2)}). Here the dynamic condition masked "
            f"{fmt(summary['dynamic_masked_per_masked_step'], 2)} heads per masking step "
            f"({fmt(summary['dynamic_masked_per_step'], 2)} over all steps).\n")


def progressive_table(rows: list[dict[str, Any]], key: str, title: str, metrics: list[tuple[str, str]]) -> str:
    """Figures 3 / 7 as Markdown, one section per model that ran the stage."""
    text = f"# {title}\n"
    for r in rows:
        prog = r.get(key)
        if not prog:
            continue
        text += f"\n## {r['model']}\n\n" + markdown(
            ["k", "samples", "masked / step", "mean m_s (compensated ∩ top-20 static)", *(label for _, label in metrics)],
            [[p["k"], p["samples"], p["masked_per_step"], p["static_compensation"], *(p[m] for m, _ in metrics)] for p in prog])
    return text


def override(target: dict[str, Any], key: str, value: Any, cast: type | None = None) -> None:
    """Apply a CLI override to a profile entry: ``value`` None keeps the profile; a comma list is split and cast."""
    if value is None or value == "":
        return
    target[key] = [cast(x) for x in value.split(",")] if cast is not None else value
