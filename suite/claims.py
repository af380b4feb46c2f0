"""``results/claims.{md,json}``: one row per claim and task, each decided by its interval, not by reading numbers.

Why a table of its own: the README used to write "reproduced" by hand beside point estimates. Here every
row names the statistic, the effect with its 95 % bootstrap interval over the sampled unit (documents,
examples, generations), n, the paper's value, and the verdict :func:`dynheads.metrics.intervals.verdict`
reads from the interval in the paper's direction (``reproduced`` / ``contradicted`` / ``inconclusive at n``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..metrics.intervals import Interval, verdict
from ..models.files import write_atomic
from .summaries import interval_text
from .tables import markdown

# The paper's values, for the reader (Llama-3.1-8B unless noted).
PAPER = {
    "claim1": "0.49–0.72 across models (Table 1's adjacent Jaccard 0.28–0.51)",
    "claim2": "masking the dynamic heads hurts more than static or random heads (Figures 2, 6)",
    "claim3_niah": "probe F1 0.835 (Table 2; no baselines reported)",
    "claim3_hotpotqa": "probe R² 0.812 (Table 3; no baselines reported)",
    "claim4": "Dynamic − Static F1 +0.049 (0.5586 vs 0.5098, Table 4)",
    "appendix_c": {10: "Dynamic − Static F1 +0.011 (Table 6)", 20: "Dynamic − Static F1 +0.016 (Table 6)"},
    "conjecture": "conjectured in the Conclusion, not tested",
    "kv": "proposed in the Conclusion (per-step head-level KV compression), not tested",
}
CONJECTURE_ROWS = (("niah_answer", "NIAH answers"), ("niah_token", "NIAH answer tokens"), ("hotpotqa_f1", "HotpotQA answers"))


def _row(model: str, claim: str, task: str, statistic: str, effect: Interval | None, paper: str,
         expected_sign: int = 1) -> dict[str, Any]:
    return {"model": model, "claim": claim, "task": task, "statistic": statistic,
            "effect": None if effect is None else effect.record(), "n": None if effect is None else effect.n,
            "paper": paper, "verdict": "not run" if effect is None else verdict(effect, expected_sign)}


def claims_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims of one model's results row (keys as the tasks' ``RESULT_FILES`` name them)."""
    model, out = row["model"], []
    for task, stats in (("NIAH", row.get("dynamism") or {}),
                        ("HotpotQA", next((d for d in row.get("hotpotqa_dynamism") or [] if d.get("traced")), {}))):
        record = (stats.get("intervals") or {}).get("adjacent_jaccard")
        changed = None if not record else Interval(1 - record["estimate"], 1 - record["high"], 1 - record["low"], record["n"],
                                                   record.get("level", 0.95))
        out.append(_row(model, "1 dynamism", task, "1 − adjacent Jaccard: share of heads that change between steps",
                        changed, PAPER["claim1"]))
    for task, key, metric in (("NIAH", "niah", "rouge_l"), ("HotpotQA", "hotpotqa", "f1")):
        intervals = (row.get(key) or {}).get("intervals") or {}
        for other in ("static", "random"):
            record = intervals.get(f"{metric}_dynamic_minus_{other}")
            out.append(_row(model, "2 irreplaceability", task,
                            f"{'ROUGE-L' if metric == 'rouge_l' else 'F1'} with dynamic heads masked − with {other} heads masked (paired, same documents)",
                            Interval.from_record(record) if record else None, PAPER["claim2"], expected_sign=-1))
    for task, key, criterion, paper in (("NIAH", "probes", "f1", PAPER["claim3_niah"]),
                                        ("HotpotQA", "hotpotqa_probes", "r2", PAPER["claim3_hotpotqa"])):
        probe = (row.get(key) or {}).get("probe") or {}
        paired = probe.get("paired") or {}
        # the claim needs the probe to beat every baseline: the row is the least favourable comparison
        hardest = min(paired, key=lambda b: paired[b][criterion]["low"], default=None)
        record = (paired.get(hardest) or {}).get(criterion) if hardest else None
        out.append(_row(model, "3 predictability", task,
                        f"probe − {(hardest or 'baseline').replace('_', ' ')} (the baseline it beats least), "
                        f"{'F1' if criterion == 'f1' else 'R²'} on held-out generations (paired)",
                        Interval.from_record(record) if record else None, paper))
    rag = row.get("rag") or {}
    base = rag.get("heads")
    for k in rag.get("ks") or []:
        name = "dynamic - static" if k == base else f"dynamic:{k} - static:{k}"
        record = ((rag.get("paired") or {}).get(name) or {}).get("f1")
        claim = "4 dynamic RAG" if k == base else "4 robustness (Appendix C)"
        paper = PAPER["claim4"] if k == base else PAPER["appendix_c"].get(k, "")
        out.append(_row(model, claim, f"HotpotQA, k = {k}", "F1 Dynamic − Static (paired, same examples)",
                        Interval.from_record(record) if record else None, paper))
    conjectures = (row.get("hallucination") or {}).get("conjecture") or {}
    for key, task in CONJECTURE_ROWS:
        record = conjectures.get(key)
        out.append(_row(model, "conjecture: absence signals hallucination", task,
                        "AUROC − 0.5 of retrieval-head absence (no training) on held-out documents",
                        Interval.from_record(record) if record else None, PAPER["conjecture"]))
    kv = row.get("kv") or {}
    budgets = (kv.get("settings") or {}).get("budgets") or []
    for task, key, metric in (("NIAH", "niah", "rouge_l"), ("HotpotQA", "hotpotqa", "f1")):
        for budget in sorted(budgets):
            pair = f"kv:dynamic@{budget:g} - kv:static@{budget:g}"
            record = (((kv.get(key) or {}).get("paired") or {}).get(pair) or {}).get(metric)
            out.append(_row(model, "conjecture: per-step heads beat static at a matched KV budget",
                            f"{task}, {budget:g} of KV heads whole",
                            f"{'ROUGE-L' if metric == 'rouge_l' else 'F1'} dynamic (offset-1 probe) − static heads kept whole "
                            "(paired, same documents)", Interval.from_record(record) if record else None, PAPER["kv"]))
    return out


def claims_table(claims: list[dict[str, Any]], paper: bool = True) -> str:
    """The claims as a Markdown table (``paper``: with the paper's values); the README quotes it."""
    body = [[c["model"], c["claim"], c["task"], c["statistic"], interval_text(c["effect"]), c["n"] or "—",
             *([c["paper"]] if paper else []), c["verdict"]] for c in claims]
    return markdown(["model", "claim", "task", "statistic", "effect [95 % CI]", "n", *(["paper"] if paper else []),
                     "verdict"], body)


def write(out: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``claims.json`` and ``claims.md`` under ``out`` for every model row."""
    claims = [c for r in rows for c in claims_rows(r)]
    write_atomic(out / "claims.json", json.dumps(claims, indent=1))
    write_atomic(out / "claims.md", "# Claims, decided by their intervals\n\n"
                 "Effect: the statistic with its 95 % bootstrap interval over the sampled unit (documents, examples or "
                 "generations; seeded). Verdict: `reproduced` when the interval lies wholly on the paper's side of 0, "
                 "`contradicted` when wholly on the other side, else `inconclusive at n`.\n\n" + claims_table(claims))
    return claims
