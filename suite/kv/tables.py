"""The KV-compression tables: the stage's report, leaderboard columns and section, the console summary."""

from __future__ import annotations

from typing import Any

from ...models.engine.kv import KV_CONDITIONS, KVPolicy
from ...spec import ConditionSpec
from ..summaries import interval_text
from ..verdicts import p_text
from ..tables import markdown, shown, with_interval

RESULT_FILES = {"kv": ("kv.json", None)}
SECTIONS = (("niah", (("acc", "accuracy"), ("rouge_l", "ROUGE-L")), "NIAH (lengths past the window; cells unseen by the probe)"),
         ("hotpotqa", (("f1", "F1"), ("em", "EM")), "HotpotQA dev"))
BOARD_METRIC = {"niah": "rouge_l", "hotpotqa": "f1"}
BOARD_REFERENCES = ("static", "probe_mean", "frozen")  # the leaderboard's dynamic − X columns


def memory(name: str, kept_kv: float) -> tuple[str, str]:
    """What a real implementation of the condition must keep resident and read per decode step, as shares of the full
    cache: a fixed choice can drop its streaming units' middle keys after the prefill (resident ≈ what each step
    reads); a per-step choice must keep every unit whole (resident 1); ``observed``'s unrestricted pass reads it all."""
    condition = KV_CONDITIONS[ConditionSpec.parse(name).strategy]
    read = kept_kv + (1.0 if condition.unrestricted_pass else 0.0)
    return ("1 (whole)" if condition.resident_whole else f"≈ {kept_kv:.3f}"), f"{read:.3f}"


def section_table(section: dict[str, Any], metrics: tuple[tuple[str, str], ...]) -> str:
    """Per condition: the scores and the measured shares kept, each a mean over documents with its interval, and the
    KV memory a real implementation must keep resident and read per step."""
    rows = [[name, *(interval_text(c[m]) for m, _ in metrics), interval_text(c["kept_kv"]), interval_text(c["kept_heads"]),
             *memory(name, c["kept_kv"]["estimate"]), c["steps"]] for name, c in section["conditions"].items()]
    return markdown(["condition", *(label for _, label in metrics), "attention budget: KV kept (per KV head)",
                     "KV kept (per query head)", "KV resident", "KV read per step", "decode steps"], rows)


def paired_table(section: dict[str, Any], metrics: tuple[tuple[str, str], ...]) -> str:
    """The paired differences, one family (the ``kv`` rule of ``claims.yaml``: `supported` = the first strategy
    scores higher than the second, `not supported` = lower, each at Holm-adjusted p ≤ 0.05)."""
    rows = [[pair, label, interval_text(d[m]), d[m]["n"], p_text(d[m]), d[m]["verdict"]]
            for pair, d in section["paired"].items() for m, label in metrics if m in d]
    return markdown(["paired difference (same documents)", "metric", "mean [95 % t CI]", "n",
                     "sign-flip p / Holm p (family size)", "verdict (kv rule)"], rows)


def probe_note(probe: dict[str, Any]) -> str:
    """The offset-1 probe's validation scores beside its baselines (early-stopping data: not a held-out test)."""
    if not probe:
        return "No offset-1 probe (kv=dynamic not run).\n"
    scores = probe["scores"]
    key = "f1" if "f1" in scores["probe"] else "r2"
    parts = ", ".join(f"{name.replace('_', ' ')} {scores[name][key]:.3f}" for name in ("probe", "prior", "previous_step"))
    return (f"Offset-1 probe (hidden state of step t − 1 → heads of step t): {probe['train']['generations']} training "
            f"generations ({probe['train']['steps']} steps), {probe['epochs']} epochs; validation {key.upper()} on "
            f"{probe['validation']['generations']} generations: {parts} (validation data chose the epoch and threshold: "
            "not a held-out test; the downstream scores above are).\n")


def report(model: str, summary: dict[str, Any]) -> str:
    """``kv.md`` of one model."""
    s, units = summary["settings"], summary["units"]
    unit = "KV heads" if s["granularity"] == "kv" else "query heads"
    total = units["units"]
    kept = {b: KVPolicy("static", b, granularity=s["granularity"]).units(units["layers"], units["query_heads"], units["kv_heads"])
            for b in s["budgets"]}
    budgets = ", ".join(f"{b:g} ({kept[b]} of {total} {unit})" for b in s["budgets"])
    text = [f"# {model}: head-level KV compression at a matched attention budget (beyond the paper)\n",
            f"Decode steps only: a streaming head attends to the first {s['sink']} positions and the last {s['window']}; "
            f"the heads kept whole attend to everything. Selection by {unit} ({units['layers']} layers × "
            f"{units['kv_heads']} KV heads, {units['query_heads']} query heads each layer); budgets: {budgets}. "
            "The budget matches what each step *attends to*, not the memory held: `KV kept` is measured from the "
            "attention masks at every decode step (the share of (head, key) pairs attended, out of the unrestricted "
            "count); `KV resident` is what a real implementation must keep (a per-step choice keeps the whole cache, "
            "since any unit may be chosen next) and `KV read per step` what it must fetch (observed adds an "
            "unrestricted pass). What fills the budget: static, the calibrated ranking; dynamic, the probe's scores "
            "for the step (all units ranked, not only its predicted retrieval heads); probe_mean, the same probe's mean "
            "score, fixed; frozen, dynamic's step-1 choice, fixed; observed, the step's own retrieval heads, then the "
            "static ranking (not an upper bound). Means over documents with 95 % bootstrap intervals (seeded); paired "
            "differences on the same documents, `higher` when the interval lies above 0.\n"]
    for key, metrics, title in SECTIONS:
        section = summary.get(key)
        if not section:
            text.append(f"## {title}\n\nNot run in this profile (`--kv-hotpot-n N` runs N dev examples; the power profile "
                        "runs 24).\n")
            continue
        text.append(f"## {title}: {section['documents']} documents\n")
        if key == "niah":
            text.append(f"Cells (length, depth): {section.get('cells')}.\n")
        text.append(section_table(section, metrics))
        text.append("\n" + paired_table(section, metrics))
        text.append("\n" + probe_note(section.get("offset_probe") or {}))
    return "\n".join(text)


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    """Per section: the score of full, static and dynamic at the largest budget (the one closest to keeping the model
    intact), and dynamic minus static and minus its two controls there; ``kv.md`` has every budget."""
    kv = r.get("kv") or {}
    out: dict[str, Any] = {}
    budgets = (kv.get("settings") or {}).get("budgets") or []
    low = f"{max(budgets):g}" if budgets else None
    for section, metric in BOARD_METRIC.items():
        conditions = (kv.get(section) or {}).get("conditions") or {}
        for label, name in (("full", "kv:full"), ("static", f"kv:static@{low}"), ("dynamic", f"kv:dynamic@{low}")):
            record = (conditions.get(name) or {}).get(metric)
            out.update(with_interval(f"kv_{section}_{label}_{metric}", record["estimate"] if record else None, record))
        for reference in BOARD_REFERENCES:
            pair = ((kv.get(section) or {}).get("paired") or {}).get(f"kv:dynamic@{low} - kv:{reference}@{low}") or {}
            record = pair.get(metric)
            out.update(with_interval(f"kv_{section}_dynamic_minus_{reference}_{metric}", record["estimate"] if record else None,
                                     record))
        kept = (conditions.get(f"kv:static@{low}") or {}).get("kept_kv")
        out[f"kv_{section}_kept_at_budget"] = kept["estimate"] if kept else None
    out["kv_budget"] = float(low) if low else None
    return out


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], b.get("kv_budget"),
             *(shown(b, f"kv_{section}_{label}_{metric}") for section, metric in BOARD_METRIC.items()
               for label in ("full", "static", "dynamic", *(f"dynamic_minus_{r}" for r in BOARD_REFERENCES)))]
            for b in board]
    differences = [f"dynamic − {r}" for r in BOARD_REFERENCES]
    return ("## Head-level KV compression (beyond the paper; largest budget: share of KV heads kept whole, a matched "
            "attention budget)\n\n"
            + markdown(["model", "budget", "NIAH ROUGE-L: full", "static", "dynamic", *differences,
                        "HotpotQA F1: full", "static", "dynamic", *differences], rows) + "\n")


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """``kv.md`` across models."""
    parts = [report(r["model"], r["kv"]) for r in rows if r.get("kv")]
    return {"kv.md": "\n".join(parts) or "# head-level KV compression\n\nThe kv stage has not run.\n"}


def console(rows: list[dict[str, Any]]) -> str:
    return leaderboard_section([{"model": r["model"], **leaderboard_columns(r)} for r in rows])
