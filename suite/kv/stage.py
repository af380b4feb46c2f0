"""The ``kv`` stage: every KV-compression strategy at matched budgets on NIAH and HotpotQA, with intervals.

Data, so that nothing is scored on what fitted it:

* **NIAH**: fresh documents (seed + 2) in (length, depth) cells that none of the Claim 3 probe's cells uses; the
  offset-1 probe trains on all of those cells' unmasked generations (split 80 / 20 by generation for early stopping).
* **HotpotQA**: dev examples; the offset-1 probe trains on the ``hotpotqa_probes`` stage's train answers.

Every document is decoded once per condition, all conditions of a document after one shared prefill (one lm-eval
run per cell, resumable like every cell). Scores are means over documents with 95 % bootstrap intervals; at each
budget the pairs of :data:`PAIRS` are compared on the same documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...metrics.inference import paired_test
from ...metrics.intervals import mean_interval
from ...metrics.kv_shares import mean_kept
from ..verdicts import decide_table
from ...util import write_atomic
from ...models.engine.kv import BUDGETED, KVPolicy
from ...spec import KV_PREDICTED, ConditionSpec
from ...traces import COPY_PASTE, REASONING
from ..hotpotqa import stages as hotpotqa_stages
from ..model import ModelSuite
from ..niah import stages as niah_stages
from ..probing import ProbeCache, probe_identity
from ..summaries import samples_of

PROBE_FORMAT = 2  # the offset probe's cache layout (2: the probe stores its mean training prediction, probe_mean's ranking)
METRICS = {"niah": ("acc", "rouge_l"), "hotpotqa": ("f1", "em")}
# (strategy, reference) pairs compared on the same documents at each budget: the two that isolate a per-step choice
# (dynamic against the same probe's fixed mean ranking, and against its own choice frozen after step 1: they decide the
# conjecture, suite/claims.yaml), dynamic against static (a better ranking or a per-step choice: not separable alone),
# the observed heads against static, and random against static and per step
PAIRS = (("dynamic", "probe_mean"), ("dynamic", "frozen"), ("dynamic", "static"), ("observed", "static"),
         ("random", "static"), ("redrawn", "random"))


def condition_names(kv: dict[str, Any]) -> list[str]:
    """The conditions of every KV cell: unbudgeted strategies once, budgeted ones at every budget."""
    names = []
    for strategy in kv["strategies"]:
        budgets = kv["budgets"] if strategy in BUDGETED else [None]
        names += [KVPolicy(strategy, budget if budget is not None else 0).name for budget in budgets]
    return names


def offset_probe(suite: ModelSuite, section: str, cells: list[dict[str, Any]], folders: list[Path], kind: str) -> Path:
    """The temporal-offset-1 probe of ``section`` (fitted once, reused while its data and settings are unchanged):
    ``OUT/<model>/kv_probe_<section>.pt`` with its validation report beside it."""
    from ...probes.ahead import fit_ahead
    from ...probes.dataset import load_step_vectors

    fit = suite.profile["kv"]["probe"]
    cache = ProbeCache(suite, f"kv_probe_{section}", probe_identity(
        cells, {"folders": sorted(Path(f).name for f in folders), **fit, "format": PROBE_FORMAT}))
    if cache.fitted() is not None:
        return cache.probe
    data = load_step_vectors(folders)
    if data.kind != kind:
        raise ValueError(f"run_suite: the {section} traces give {data.kind} heads, not {kind}")
    params = {"hidden_sizes": tuple(fit["hidden_sizes"]), "max_epochs": fit["max_epochs"], "device": str(suite.lm.engine.device)}
    probe, report = fit_ahead(data, 1, params, fit["seed"],
                              progress=lambda epochs: suite.progress(epochs, desc=f"{suite.name} kv: offset-1 {section} probe",
                                                                     unit="epoch"))
    cache.store(report, probe, kind=data.kind, hidden_dim=int(data.hidden.shape[1]), heads=int(data.scores.shape[1]),
                offset=1, split_seed=fit["seed"], hidden_sizes=list(fit["hidden_sizes"]),
                documents=sorted({d for d in data.documents if d}))
    return cache.probe


def niah_cells(suite: ModelSuite, names: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The NIAH KV cells, and the offset probe's report; refuses a cell the probe trained on."""
    kv = suite.profile["kv"]
    probe_cells, folder_cells = niah_stages.unmasked_cells(suite)
    trained = {(float(d), int(L)) for d, L in folder_cells.values()}
    wanted = [(int(L), float(d)) for L in kv["niah"]["lengths"] for d in kv["niah"]["depths"]]
    clash = [(L, d) for L, d in wanted if (d, L) in trained]
    if clash:
        raise ValueError(f"run_suite: KV cells (length, depth) {clash} are also probe-training cells; choose other "
                         "--kv-lengths / --kv-depths so that the offset-1 probe is tested on unseen cells")
    if set(kv["strategies"]) & set(KV_PREDICTED):
        suite.lm.use_kv_probe(offset_probe(suite, "niah", probe_cells, list(folder_cells), COPY_PASTE))
    runner = suite.runner("kv_niah")
    depths = [float(d) for d in kv["niah"]["depths"]]
    # one lm-eval run per length over every depth: a batch of several documents, whose rows share each step's weights
    cells = [runner.run(f"L{L}", niah_stages.CELLS, {"lengths": [L], "depths": depths, "runs": kv["niah"]["runs"],
                                                      "seed": suite.seed + 2}, names, None, {"length": L})
             for L in suite.progress(sorted({L for L, _ in wanted}), desc=f"{suite.name} kv: NIAH lengths "
                                     f"({len(names)} conditions)", unit="length")]
    return cells, probe_report(suite, "niah")


def hotpotqa_cells(suite: ModelSuite, names: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The HotpotQA KV chunks (dev examples), and the offset probe's report (trained on train answers)."""
    kv, h = suite.profile["kv"], suite.profile["hotpotqa"]
    if set(kv["strategies"]) & set(KV_PREDICTED):
        answers, train_folders, _ = hotpotqa_stages.probe_answers(suite)
        suite.lm.use_kv_probe(offset_probe(suite, "hotpotqa", answers, train_folders, REASONING))
    setting = {"split": h["split"], "source": h.get("source"), "chunk": kv["hotpotqa"]["chunk"]}
    cells = hotpotqa_stages.chunks(suite.runner("kv_hotpotqa"), setting, int(kv["hotpotqa"]["n"]), names, None,
                                   suite.progress, f"{suite.name} kv: HotpotQA ({len(names)} conditions)")
    return cells, probe_report(suite, "hotpotqa")


def probe_report(suite: ModelSuite, section: str) -> dict[str, Any]:
    path = suite.dir / f"kv_probe_{section}.json"
    return json.loads(path.read_text())["report"] if path.is_file() else {}


def kept_per_document(result: dict[str, Any], which: int) -> float:
    """One document's measured share kept (0: per query head, 1: per KV head), averaged over its decode steps."""
    return mean_kept(result["kv_kept"])[which]


def summarise(cells: list[dict[str, Any]], names: list[str], metrics: tuple[str, ...], seed: int) -> dict[str, Any]:
    """Per condition: each metric and the measured shares kept, means over documents with intervals; per budget, the
    pairs of :data:`PAIRS` on the same documents: t interval, sign-flip p, one family per section (the ``kv`` rule of
    ``claims.yaml``; higher is the first strategy's claim)."""
    samples = samples_of(cells)
    out: dict[str, Any] = {"documents": len(samples), "conditions": {}, "paired": {}}
    for name in names:
        results = [r["conditions"][name] for r in samples]
        out["conditions"][name] = {
            **{m: mean_interval([res[m] for res in results], seed).record() for m in metrics},
            "kept_heads": mean_interval([kept_per_document(res, 0) for res in results], seed).record(),
            "kept_kv": mean_interval([kept_per_document(res, 1) for res in results], seed).record(),
            "steps": sum(len(res["kv_kept"]) for res in results)}
    budgets = sorted({spec.budget for spec in map(ConditionSpec.parse, names) if spec.budget is not None})
    tests: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
    for budget in budgets:
        for strategy, reference in PAIRS:
            a, b = (ConditionSpec("kv", s, budget=budget).name for s in (strategy, reference))
            if a in out["conditions"] and b in out["conditions"]:
                for m in metrics:
                    tests[(f"{a} - {b}", m)] = (paired_test([r["conditions"][a][m] for r in samples],
                                                            [r["conditions"][b][m] for r in samples], seed).record(), 1)
    for (pair, m), record in decide_table("kv", tests).items():
        out["paired"].setdefault(pair, {})[m] = record
    return out


def run(suite: ModelSuite) -> dict[str, Any]:
    """Both sections' KV cells, ``kv.json``, ``kv.md`` and the score-against-budget figure."""
    from .figures import budget_figure
    from .tables import report

    kv = suite.profile["kv"]
    names = condition_names(kv)
    summary: dict[str, Any] = {"settings": {k: kv[k] for k in ("sink", "window", "granularity", "budgets", "strategies")},
                               "conditions": names, "units": unit_counts(suite, kv["granularity"])}
    for section, collect in (("niah", niah_cells), ("hotpotqa", hotpotqa_cells)):
        if section == "hotpotqa" and not kv["hotpotqa"]["n"]:
            summary[section] = None  # the quick profile leaves HotpotQA to the power profile (its prefills dominate)
            continue
        cells, probe = collect(suite, names)
        summary[section] = {**summarise(cells, names, METRICS[section], suite.seed), "offset_probe": probe}
    summary["niah"]["cells"] = [[int(L), float(d)] for L in kv["niah"]["lengths"] for d in kv["niah"]["depths"]]
    budget_figure(summary, f"{suite.name}: score against the KV cache kept (sink {kv['sink']} + window {kv['window']})",
                  suite.dir / "kv_budget.png")
    write_atomic(suite.dir / "kv.json", json.dumps(summary, indent=1))
    write_atomic(suite.dir / "kv.md", report(suite.name, summary))
    return summary


def unit_counts(suite: ModelSuite, granularity: str) -> dict[str, int]:
    e = suite.lm.engine
    return {"layers": e.num_layers, "query_heads": e.num_heads, "kv_heads": e.num_kv_heads,
            "units": e.num_layers * (e.num_kv_heads if granularity == "kv" else e.num_heads)}
