"""Claim 3 in the suite: collect hidden states in unmasked cells, fit and evaluate the probes, cache the result.

Shared by the ``probes`` (NIAH, Eq. 1, classifier) and ``hotpotqa_probes`` (HotpotQA, Eq. 2, regressor)
stages. The generations are the tasks' own unmasked cells run with ``hidden=true`` (resumable and keyed
like every cell); the fitted probe and its report are reused while the cells' settings and the probe
settings are unchanged, like the calibration cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..util import write_atomic
from .model import ModelSuite
from .summaries import interval_text
from .tables import markdown, shown, with_intervals

# Claim 3 fitting settings of every profile (paper A.4 / A.5): k = 0..10, up to 50 CCA components, 100 epochs.
PROBE_FIT = {"seed": 0, "max_offset": 10, "components": 50, "max_epochs": 100}


def add_arguments(p: Any) -> None:
    """Command-line overrides of the probe fitting shared by both tasks' probe stages."""
    p.add_argument("--probe-epochs", type=int, default=None, help="override the probes' maximum training epochs")
    p.add_argument("--probe-hidden-sizes", default=None, help="override the MLP probes' hidden sizes, e.g. 512,256")


def apply_arguments(fit: dict[str, Any], args: Any) -> None:
    if getattr(args, "probe_epochs", None) is not None:
        fit["max_epochs"] = args.probe_epochs
    if getattr(args, "probe_hidden_sizes", None):
        fit["hidden_sizes"] = [int(x) for x in args.probe_hidden_sizes.split(",")]


def probe_identity(cells: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """What a cached probe was fitted under: the settings of the cells whose generations it read, then ``settings``.

    Why the cells' settings: they key the cells' generations, so a probe fitted on other cells (other documents,
    lengths, depths) is not reused.
    """
    return {"cells": [c["settings"] for c in cells], **settings}


@dataclass(frozen=True)
class ProbeCache:
    """A fitted probe of the suite, ``OUT/<model>/<name>.pt``, with ``<name>.json`` beside it recording the
    ``settings`` it was fitted under (``identity``, then ``layout``) and its ``report``.

    Why one class: the Claim 3 probe stages and the kv stage's offset probes reuse a probe on a rerun while what it
    was fitted on is unchanged; they must agree on the file names and on what a match is. ``layout`` names fields that
    shape only the report (a changed one rescores the saved probe, it does not refit it); ``needs`` names report
    fields without which a saved probe is refitted (an older version did not record them).
    """

    suite: ModelSuite
    name: str
    identity: dict[str, Any]
    layout: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()

    @property
    def probe(self) -> Path:
        return self.suite.dir / f"{self.name}.pt"

    @property
    def record(self) -> Path:
        return self.suite.dir / f"{self.name}.json"

    def fitted(self) -> dict[str, Any] | None:
        """The saved record when its probe was fitted under ``identity`` and its report has every field of ``needs``;
        None when either file is missing or the probe must be fitted again."""
        if not (self.record.is_file() and self.probe.is_file()):
            return None
        cached = json.loads(self.record.read_text())
        settings = {k: v for k, v in cached.get("settings", {}).items() if k not in self.layout}
        if settings != self.identity or any(k not in cached["report"] for k in self.needs):
            return None
        return cached

    def current(self, cached: dict[str, Any]) -> bool:
        """Whether a fitted record's report is of this ``layout`` too, so it is reused as it stands."""
        return all(cached["settings"].get(k) == v for k, v in self.layout.items())

    def store(self, report: dict[str, Any], probe: Any | None = None, **meta: Any) -> None:
        """Count a computation, save ``probe`` (None: the saved one was only rescored, its file stays as it is, since
        the RAG cells record its digest) with ``meta``, and write the report under ``identity`` and ``layout``."""
        self.suite.computed += 1
        if probe is not None:
            probe.save(self.probe, model=self.suite.name, **meta)
        write_atomic(self.record, json.dumps({"settings": {**self.identity, **self.layout}, "report": report}, indent=1))


def fit_or_reuse(suite: ModelSuite, name: str, cells: list[dict[str, Any]], trace_folders: list[Path],
                 settings: dict[str, Any], test_folders: list[Path] | None = None,
                 folder_cells: dict[Path, tuple[float, ...]] | None = None) -> dict[str, Any]:
    """The report of ``name`` (``probes`` / ``hotpotqa_probes``), fitted on the step vectors under ``trace_folders``.

    With ``test_folders`` the probe trains / validates on ``trace_folders`` (80 / 20 by generation) and
    is tested on those; with ``folder_cells`` (each trace folder's document cell) the split is by cell and
    the same-cell-and-step baseline joins; else everything is split 70 / 20 / 10 by generation. The probe is
    saved as ``OUT/<model>/<name>.pt`` with its settings and the documents it was fitted on, the report as
    ``<name>.json`` (a :class:`ProbeCache`).
    """
    from ..probes.dataset import load_step_vectors
    from ..probes.train import REPORT_FORMAT, evaluate, with_test_set

    # a probe saved before it recorded its documents is refitted, not reused
    cache = ProbeCache(suite, name, probe_identity(cells, settings), layout={"report_format": REPORT_FORMAT},
                       needs=("fitted_documents",))
    cached, fitted = cache.fitted(), None
    if cached is not None:
        if cache.current(cached):
            return cached["report"]
        # only the report's layout changed: score the saved probe again, so the file (whose digest the RAG cells
        # record) stays as it is
        from ..probes.mlp import load_probe

        fitted = load_probe(cache.probe)[0]
    data = load_step_vectors(trace_folders)
    split, per_step_cells = None, None
    if test_folders:
        data, split = with_test_set(data, load_step_vectors(test_folders), settings["seed"])
    elif folder_cells:
        by_folder = {Path(folder).resolve(): cell for folder, cell in folder_cells.items()}
        per_generation = np.array([by_folder[Path(source).resolve().parent] for source in data.sources], dtype=float)
        per_step_cells = per_generation[data.groups]
    # trained on the model's device: the paper-size probe (88M parameters) would take hours on a CPU beside an idle GPU
    probe_params = {"hidden_sizes": tuple(settings["hidden_sizes"]), "max_epochs": settings["max_epochs"],
                    "device": str(suite.lm.engine.device)}
    probe, report = evaluate(data, settings["seed"], settings["max_offset"], settings["components"], probe_params,
                             progress=lambda epochs: suite.progress(epochs, desc=f"{suite.name} {name}: training the probe",
                                                                    unit="epoch"), split=split, cells=per_step_cells,
                             fitted=fitted)
    cache.store(report, probe if fitted is None else None, kind=data.kind, hidden_dim=report["hidden_dim"],
                heads=report["heads"], split_seed=settings["seed"], hidden_sizes=list(settings["hidden_sizes"]),
                documents=report["fitted_documents"])
    return report


def cca_columns(report: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Leaderboard columns: held-out top-1 canonical correlation at k = 0, 1, 2 (the test generations, training
    weights) and the held-out shuffled control at k = 0; in-sample values (the paper's kind) stay in the tables."""
    rows = {r["k"]: r for r in (report or {}).get("cca", [])}

    def top1(k: int, source: str) -> float | None:
        return ((rows.get(k) or {}).get(source) or {}).get("top1")

    return {**{f"{prefix}cca_heldout_top1_k{k}": top1(k, "held_out") for k in (0, 1, 2)},
            f"{prefix}cca_shuffled_heldout_top1_k0": top1(0, "shuffled")}


def cca_table(rows: list[dict[str, Any]], key: str) -> str:
    """Top-1 canonical correlation per k: held-out (the number to quote), its held-out shuffled control, and the
    in-sample values the paper reports; one line per model and k."""
    body = []
    for r in rows:
        report = r.get(key)
        for c in (report or {}).get("cca", []):
            cells = [(c.get(s) or {}).get("top1") for s in ("held_out", "shuffled", "in_sample", "shuffled_in_sample")]
            body.append([r["model"], c["k"], c["pairs"], *cells, (c.get("held_out") or {}).get("top10_mean"),
                         (c.get("in_sample") or {}).get("top10_mean")])
    return markdown(["model", "k", "pairs", "top-1 held-out", "top-1 shuffled control (held-out)", "top-1 in-sample",
                     "top-1 shuffled control (in-sample)", "top-10 mean held-out", "top-10 mean in-sample"], body)


BASELINE_NAMES = {"prior": "prior", "previous_step": "previous step", "same_cell_step": "same cell and step"}


def predictor_rows(rows: list[dict[str, Any]], key: str, metrics: tuple[str, ...],
                   paired: tuple[str, ...]) -> tuple[list[list[Any]], list[str]]:
    """Table 2 / 3 body: per model the probe and each baseline's row of ``metrics``, each with its 95 % interval
    over test generations, then for each of ``paired`` the difference probe minus that predictor per independent
    unit (unseen cell, or test generation when there are no cells), with its t interval, raw / Holm p and the
    verdict of the ``probes`` rule in ``claims.yaml`` (the table's rows are one family); and one note per model."""
    from .verdicts import decide_table, p_text

    body, notes = [], []
    for r in rows:
        report = r.get(key)
        if not report:
            continue
        baselines = report["probe"].get("baselines", ("prior", "previous_step"))
        clustered = report["probe"].get("cluster_paired") or {}
        decided = decide_table("probes", {(b, m): ((clustered.get(b) or {}).get(m), -1 if m in ("mse", "mae") else 1)
                                          for b in baselines for m in paired})
        for name in ("probe", *baselines):
            own = with_intervals(report["probe"][name])
            cells = []
            for m in paired:
                d = decided.get((name, m))
                cells.append("—" if not d or d.get("estimate") is None
                             else f"{interval_text(d)}, p {p_text(d)}: {d['verdict']}")
            body.append([r["model"], BASELINE_NAMES.get(name, name), *(shown(own, m) for m in metrics), *cells])
        notes.append(f"* {r['model']}: {split_note(report)}")
    return body, notes


def split_note(report: dict[str, Any]) -> str:
    s, probe = report["split"], report["probe"]
    baselines = [BASELINE_NAMES.get(b, b) for b in probe.get("baselines", ("prior", "previous_step"))]
    held = ""
    if s.get("by") == "cell":
        held = f"; split by cell, test cells (depth, length) {[tuple(c) for c in s['test']['cells']]} unseen in training"
    return (f"train {s['train']['generations']} generations / {s['train']['steps']} steps, validation "
            f"{s['validation']['generations']} / {s['validation']['steps']}, test {s['test']['generations']} / "
            f"{s['test']['steps']}{held}; probe {'beats' if probe['predicts'] else 'does NOT beat'} every baseline "
            f"({', '.join(baselines)}) on {', '.join(probe['criteria'])}; {probe['epochs']} epochs, hidden sizes "
            f"{report['probe_params']['hidden_sizes']}")
