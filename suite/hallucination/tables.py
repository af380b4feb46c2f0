"""The hallucination tables: the stage's report, leaderboard columns and section, the console summary."""

from __future__ import annotations

from typing import Any

from ...probes.hallucination import DETECTORS, LABELS, REFERENCE
from ..summaries import interval_text
from ..verdicts import decide_table, p_text
from ..tables import markdown, shown, with_interval

RESULT_FILES = {"hallucination": ("hallucination.json", "summary")}
# (section, level, title) of every table; the leaderboard shows the first three
LEVELS = (("niah", "answer", "NIAH answers (hallucinated: the UUID is missing)"),
          ("niah", "token", "NIAH answer tokens (hallucinated: not the UUID character it should copy)"),
          ("hotpotqa", "f1", "HotpotQA dev answers (hallucinated: F1 below the threshold)"),
          ("hotpotqa", "em0", "HotpotQA dev answers (hallucinated: exact match 0)"))
BOARD = (("niah", "answer", "niah"), ("niah", "token", "niah_token"), ("hotpotqa", "f1", "hotpotqa"))


def balance_text(level: dict[str, Any]) -> str:
    tr, te = level["train"], level["test"]
    return (f"train {tr['rows']} rows ({tr['positives']} hallucinated) from {tr['documents']} documents; test {te['rows']} "
            f"rows ({te['positives']} hallucinated, prevalence {te['positives'] / max(te['rows'], 1):.2f}: AUPRC's chance "
            f"level) from {te['documents']} documents")


def level_table(level: dict[str, Any], decided: dict[tuple, dict[str, Any]], key: tuple[str, str]) -> str:
    """One level's detectors: AUROC, AUPRC, and each minus Lookback Lens on the same draws (paired), with raw /
    Holm p and the verdict from ``decided`` (the report's family, keyed by (section, level, detector, metric))."""
    if level.get("note"):
        return f"{balance_text(level)}; {level['note']}.\n"
    rows = []
    for name in DETECTORS:
        d = level["detectors"].get(name)
        if d is None:
            rows.append([LABELS[name], "not fitted: the training rows hold one class", "", "", ""])
            continue
        diff = d.get("minus_reference") or {}
        rows.append([LABELS[name], interval_text(d["auroc"]), interval_text(d["auprc"]),
                     *(_decided_text(decided[(*key, name, m)]) if m in diff else "reference" for m in ("auroc", "auprc"))])
    return (balance_text(level) + ".\n\n"
            + markdown(["detector", "AUROC", "AUPRC", "AUROC − Lookback Lens (p / Holm p): verdict",
                        "AUPRC − Lookback Lens (p / Holm p): verdict"], rows) + "\n")


def _decided_text(d: dict[str, Any]) -> str:
    return f"{interval_text(d)} ({p_text(d)}): {d['verdict']}"


def decided_differences(summary: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    """Every detector − Lookback Lens difference of the report, decided as one family (the ``hallucination``
    rule of ``claims.yaml``: level x detector x score; higher than the reference is the conjecture's side)."""
    tests = {}
    for section, level, _ in LEVELS:
        for name, d in ((summary.get(section) or {}).get(level) or {}).get("detectors", {}).items():
            for m, record in (d.get("minus_reference") or {}).items():
                tests[(section, level, name, m)] = (record, 1)
    return decide_table("hallucination", tests)


def report(model: str, summary: dict[str, Any]) -> str:
    """``hallucination.md`` of one model."""
    s = summary["settings"]
    text = [f"# {model}: hallucination detectors (beyond the paper; its Conclusion's conjecture)\n",
            "Scores on held-out documents with 95 % bootstrap intervals over documents (seeded; documents drawn within "
            "class strata, so every draw holds both classes and none is dropped); the differences pair each "
            f"detector with {LABELS[REFERENCE]} on the same draws, p by inverting them, Holm over every difference in "
            "this report (one family: the `hallucination` rule of suite/claims.yaml). Logistic regressions: standardised features, C = {s['c']:g}. "
            f"NIAH split by (depth, length) cell, test cells {summary['niah'].get('test_cells')}; HotpotQA fitted on train "
            "answers, tested on dev answers.\n"]
    decided = decided_differences(summary)
    for section, level, title in LEVELS:
        text.append(f"## {title}\n\n" + level_table(summary[section][level], decided, (section, level)))
    from ..claims import claims_rows

    conjectures = [c for c in claims_rows({"model": model, "hallucination": summary}) if c["family"] == "hallucination"]
    text.append("## The conjecture: retrieval-head absence AUROC − 0.5 (claims H-*, decided as in claims.md)\n\n" + markdown(
        ["claim", "level", "AUROC − 0.5 [95 % CI]", "test", "p / Holm p (family size)", "verdict"],
        [[c["id"], c["setting"], c["effect_text"], f"{c.get('test', '—')}; test documents holding a hallucinated / a "
          f"faithful row: {c.get('positive_units', '—')} / {c.get('negative_units', '—')}", p_text(c), c["verdict"]]
         for c in conjectures]))
    return "\n".join(text) + "\n"


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    h = r.get("hallucination") or {}
    out: dict[str, Any] = {}
    for section, level, prefix in BOARD:
        detectors = ((h.get(section) or {}).get(level) or {}).get("detectors") or {}
        for name in ("absence", REFERENCE):
            record = (detectors.get(name) or {}).get("auroc")
            out.update(with_interval(f"halluc_{prefix}_{name}_auroc", record["estimate"] if record else None, record))
    return out


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], *(shown(b, f"halluc_{prefix}_{name}_auroc") for _, _, prefix in BOARD for name in ("absence", REFERENCE))]
            for b in board]
    return ("## Hallucination detection (beyond the paper; AUROC on held-out documents)\n\n"
            + markdown(["model", "NIAH: absence", "NIAH: Lookback Lens", "NIAH tokens: absence", "NIAH tokens: Lookback Lens",
                        "HotpotQA: absence", "HotpotQA: Lookback Lens"], rows) + "\n")


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """``hallucination.md`` across models (each model's report, one after the other)."""
    parts = [report(r["model"], r["hallucination"]) for r in rows if r.get("hallucination")]
    return {"hallucination.md": "\n".join(parts) or "# hallucination detectors\n\nThe hallucination stage has not run.\n"}


def console(rows: list[dict[str, Any]]) -> str:
    return leaderboard_section([{"model": r["model"], **leaderboard_columns(r)} for r in rows])
