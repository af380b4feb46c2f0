"""The hallucination tables: the stage's report, leaderboard columns and section, the console summary."""

from __future__ import annotations

from typing import Any

from ...probes.hallucination import CONFOUNDS, CONJECTURE, LABELS, PRE_TOKEN, REFERENCE, REFERENCES
from ..summaries import interval_text
from ..verdicts import decide_table, p_text
from ..tables import markdown, shown, with_interval

RESULT_FILES = {"hallucination": ("hallucination.json", "summary")}
# (section, level, title) of every table; the leaderboard shows the first three
LEVELS = (("niah", "answer", "NIAH transition-zone answers (hallucinated: the UUID is missing)"),
          ("niah", "token", "NIAH answer tokens (hallucinated: not the UUID character it should copy)"),
          ("hotpotqa", "f1", "HotpotQA dev answers (hallucinated: F1 below the threshold)"),
          ("hotpotqa", "em0", "HotpotQA dev answers (hallucinated: exact match 0)"),
          ("hotpotqa_gold", "faithful", "HotpotQA dev answers from the gold paragraphs only (hallucinated: more than a "
           "quarter of the words the answer adds to its question are not in the context given)"))
BOARD = (("niah", "answer", "niah"), ("niah", "token", "niah_token"), ("hotpotqa_gold", "faithful", "hotpotqa"))


def balance_text(level: dict[str, Any]) -> str:
    tr, te = level["train"], level["test"]
    return (f"train {tr['rows']} rows ({tr['positives']} hallucinated) from {tr['documents']} documents; test {te['rows']} "
            f"rows ({te['positives']} hallucinated, prevalence {te['positives'] / max(te['rows'], 1):.2f}: AUPRC's chance "
            f"level) from {te['documents']} documents")


KINDS = ((PRE_TOKEN, "before the judged token"), (CONFOUNDS, "confound only (+ LR)"), (REFERENCES, "reads the judged token"))


def level_table(level: dict[str, Any], decided: dict[tuple, dict[str, Any]], key: tuple[str, str]) -> str:
    """One level's detectors, grouped by kind: AUROC, AUPRC, the AUROC within length strata, and each minus Lookback
    Lens on the same draws (paired), with raw / Holm p and the verdict from ``decided`` (the report's family, keyed
    by (section, level, detector, metric))."""
    left = level.get("left_out")
    left_text = (f" Answers that add no word to the question (yes / no, empty, restated) left out (no label): "
                 f"{left['train']} train, {left['dev']} dev."
                 if left else "")
    if level.get("note"):
        return f"{balance_text(level)}; {level['note']}.{left_text}\n"
    rows = []
    for names, kind in KINDS:
        for name in names:
            d = level["detectors"].get(name)
            if d is None:
                if name in level.get("unfitted", ()):
                    rows.append([LABELS[name], kind, "not fitted: the training rows hold one class", "", "", "", ""])
                continue
            diff = d.get("minus_reference") or {}
            strata = d.get("within_strata") or {}
            rows.append([LABELS[name], kind, interval_text(d["auroc"]), interval_text(d["auprc"]),
                         interval_text(strata) if "estimate" in strata else strata.get("note", "—"),
                         *(_decided_text(decided[(*key, name, m)]) if m in diff else "reference" for m in ("auroc", "auprc"))])
    strengths = ", ".join(f"{n} {c:g}" for n, c in (level.get("strengths") or {}).items())
    return (balance_text(level) + (f". L2 strength C chosen by cross-validation on the training rows: {strengths}" if strengths else "")
            + "." + left_text + "\n\n" + markdown(["detector", "kind", "AUROC", "AUPRC", "AUROC within length strata",
                                  "AUROC − Lookback Lens (p / Holm p): verdict", "AUPRC − Lookback Lens (p / Holm p): verdict"],
                                 rows) + "\n")


def transfer_table(transfer: dict[str, Any]) -> str:
    """Lookback Lens trained on one section and tested on the other (its authors' test of generality)."""
    rows = []
    for key, label in (("niah_to_hotpotqa", "NIAH → HotpotQA gold paragraphs (faithfulness label)"),
                       ("hotpotqa_to_niah", "HotpotQA gold paragraphs → NIAH (UUID label)")):
        t = transfer.get(key) or {}
        a = t.get("auroc")
        rows.append([label, balance_text(t) if "train" in t else "—",
                     interval_text(a) if a else t.get("note", "not run"), f"{a['p']:.3g}" if a else "—"])
    return markdown(["trained → tested", "rows", "AUROC [95 % CI]", "p (vs 0.5, label permutation)"], rows)


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
    c = "chosen per detector by cross-validated AUROC on the training rows" if s.get("c") is None else f"fixed at {s['c']:g}"
    niah = s.get("niah") or {}
    text = [f"# {model}: hallucination detectors (beyond the paper; its Conclusion's conjecture)\n",
            "Every detector of the kind *before the judged token* reads only decode steps computed before the token it is "
            "judged on (answer level: the prefill's row and the lead-in up to the answer's first token; token level: step "
            "t − 1 for the token of step t). *Confound only* detectors read the document's shape (context length, needle "
            "depth, position in the answer); *reads the judged token* are references true by construction on NIAH (an "
            "Eq. 1 head exists only where the token copies the needle). Scores on held-out documents with 95 % "
            "bootstrap intervals over documents (seeded; documents drawn within class strata, so every draw holds both "
            "classes and none is dropped); *within length strata* counts only pairs of one length (NIAH) or one "
            "context-length quartile (HotpotQA), so a detector that reads length alone scores 0.5 there. The differences "
            f"pair each detector with {LABELS[REFERENCE]} on the same draws, p by inverting them, Holm over every "
            "difference in this report (one family: the `hallucination` rule of suite/claims.yaml). Logistic "
            f"regressions: standardised features, L2 strength {c}. NIAH: this study's transition-zone documents (lengths "
            f"{niah.get('lengths')}, depths {niah.get('depths')}, {niah.get('runs')} per cell), split by (depth, length) "
            f"cell, test cells {summary['niah'].get('test_cells')}; HotpotQA fitted on train answers, tested on dev "
            "answers.\n"]
    decided = decided_differences(summary)
    for section, level, title in LEVELS:
        text.append(f"## {title}\n\n" + level_table(summary[section][level], decided, (section, level)))
    text.append("## Lookback Lens across sections (trained on one, tested on the other)\n\n"
                + transfer_table(summary.get("transfer") or {}) + "\n")
    from ..claims import claims_rows

    conjectures = [c for c in claims_rows({"model": model, "hallucination": summary}) if c["family"] == "hallucination"]
    text.append(f"## The conjecture: {LABELS[CONJECTURE]}, AUROC − 0.5 (claims H-*, decided as in claims.md)\n\n" + markdown(
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
        for name in (CONJECTURE, REFERENCE):
            record = (detectors.get(name) or {}).get("auroc")
            out.update(with_interval(f"halluc_{prefix}_{name}_auroc", record["estimate"] if record else None, record))
    return out


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], *(shown(b, f"halluc_{prefix}_{name}_auroc") for _, _, prefix in BOARD for name in (CONJECTURE, REFERENCE))]
            for b in board]
    return ("## Hallucination detection (beyond the paper; AUROC on held-out documents, before the judged token)\n\n"
            + markdown(["model", "NIAH: target absence", "NIAH: Lookback Lens", "NIAH tokens: target absence",
                        "NIAH tokens: Lookback Lens", "HotpotQA (faithfulness): target absence",
                        "HotpotQA (faithfulness): Lookback Lens"], rows) + "\n")


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """``hallucination.md`` across models (each model's report, one after the other)."""
    parts = [report(r["model"], r["hallucination"]) for r in rows if r.get("hallucination")]
    return {"hallucination.md": "\n".join(parts) or "# hallucination detectors\n\nThe hallucination stage has not run.\n"}


def console(rows: list[dict[str, Any]]) -> str:
    return leaderboard_section([{"model": r["model"], **leaderboard_columns(r)} for r in rows])
