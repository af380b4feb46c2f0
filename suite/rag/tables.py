"""Section 5 tables: Table 4 (strategies at k heads), Table 6 (k = 5 / 10 / 20), the leaderboard's RAG columns and
section."""

from __future__ import annotations

from typing import Any

from ...spec import RAG_HEAD_STRATEGIES as HEAD_STRATEGIES, RAG_STRATEGIES as STRATEGIES
from ..summaries import interval_text
from ..verdicts import p_text
from ..tables import fmt, markdown, shown, with_interval, with_intervals

RESULT_FILES = {"rag": ("rag.json", "summary")}
TITLES = {"dynamic": "Dynamic (probe)", "static": "Static", "dynamic_random": "Dynamic Random",
          "fixed_random": "Fixed Random", "none": "w/o RAG (context hidden)", "full": "Full context (reference)",
          "oracle": "Oracle windows (gold supporting facts; upper bound)"}
# Table 4 of the paper (EM / F1: Dynamic, Static, Dynamic Random, Fixed Random, w/o RAG); not computed here.
PAPER_TABLE4 = [("llama3.1-8b", "0.456 / 0.5586", "0.398 / 0.5098", "0.272 / 0.3670", "0.272 / 0.3763", "0.252 / 0.3257"),
                ("llama3.2-3b", "0.384 / 0.4993", "0.428 / 0.5386", "0.224 / 0.3143", "0.226 / 0.3051", "0.184 / 0.2439"),
                ("qwen3-8b", "0.286 / 0.3580", "0.278 / 0.3429", "0.210 / 0.2804", "0.210 / 0.2804", "0.220 / 0.2961"),
                ("llama2-13b", "0.284 / 0.3838", "0.278 / 0.3789", "0.276 / 0.3762", "0.272 / 0.3751", "0.192 / 0.2750"),
                ("phi4-mini", "0.202 / 0.2690", "0.186 / 0.2505", "0.082 / 0.1090", "0.086 / 0.1111", "0.172 / 0.2331")]
# Table 6 of the paper (Llama-3.1-8B; EM / F1 at k = 5, 10, 20).
PAPER_TABLE6 = [("Dynamic", "0.456 / 0.5586", "0.286 / 0.3877", "0.292 / 0.3967"),
                ("Static", "0.398 / 0.5098", "0.280 / 0.3767", "0.282 / 0.3810"),
                ("Dynamic Random", "0.272 / 0.3670", "0.280 / 0.3807", "0.274 / 0.3713"),
                ("Fixed Random", "0.272 / 0.3763", "0.276 / 0.3711", "0.276 / 0.3751")]


def _with_ci(rag: dict[str, Any], name: str) -> dict[str, Any]:
    """One strategy's summary with its intervals flattened (``key_ci_low`` / ``key_ci_high``), for :func:`shown`."""
    summary = (rag.get("strategies") or {}).get(name)
    return {} if summary is None else with_intervals({**summary, "intervals": (rag.get("intervals") or {}).get(name) or {}})


def table4(rows: list[dict[str, Any]]) -> str:
    body = []
    notes = []
    for r in rows:
        rag = r.get("rag")
        if not rag:
            continue
        for name in STRATEGIES:
            s = rag["strategies"].get(name)
            if s is None:
                continue
            c = _with_ci(rag, name)
            body.append([r["model"], TITLES[name], s["answers"],
                         *(shown(c, m) for m in ("em", "f1", "em_bridge", "f1_bridge", "em_comparison", "f1_comparison",
                                                 "retrievals_per_answer", "trigger_rate")),
                         shown(c, "visible_tokens", 1), shown(c, "precision"), shown(c, "recall")])
        probe = rag.get("probe") or {}
        if probe:
            notes.append(f"- {r['model']}: the dynamic strategy's probe has held-out R² {fmt(probe.get('probe'))} "
                         f"(prior baseline {fmt(probe.get('prior'))}, previous step {fmt(probe.get('previous_step'))}; Table 3).")
        cfg = rag.get("settings") or {}
        notes.append(f"- {r['model']}: k = {rag['heads']} heads; RIND threshold {cfg.get('threshold')}; top "
                     f"{cfg.get('top_positions')} positions, cluster gap {cfg.get('cluster_gap')} tokens, window "
                     f"{cfg.get('window')} tokens; at most {cfg.get('max_retrievals')} retrievals per answer; context "
                     f"{fmt(rag['strategies']['full'].get('context_tokens'), 0) if 'full' in rag['strategies'] else '—'} tokens on average.")
    return ("# Table 4: in-context dynamic RAG on HotpotQA by head-selection strategy (paper Section 5)\n\n"
            "Same dev examples for every strategy. Visible tokens, precision and recall are per retrieval, pooled over "
            "answers (— where no answer retrieved); precision / recall are of the revealed context tokens against the "
            "supporting-fact tokens. Full context and oracle are references beyond the paper; the oracle uses gold labels. "
            "Every mean with its 95 % bootstrap interval over examples (examples resampled, seeded; per-retrieval "
            "measures pooled within each draw).\n\n"
            + markdown(["model", "strategy", "answers", "EM", "F1", "EM bridge", "F1 bridge", "EM comparison", "F1 comparison",
                        "retrievals / answer", "answers that retrieved", "visible tokens / retrieval", "window precision",
                        "window recall"], body)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + paired_section(rows)
            + "\nFor reference, the paper's Table 4 (EM / F1; not computed here):\n\n"
            + markdown(["model (paper)", "Dynamic", "Static", "Dynamic Random", "Fixed Random", "w/o RAG"],
                       [list(row) for row in PAPER_TABLE4]))


def paired_section(rows: list[dict[str, Any]]) -> str:
    """Paired differences on the same examples at the base k: every strategy minus static and minus w/o RAG."""
    body = []
    for r in rows:
        rag = r.get("rag") or {}
        for name in STRATEGIES:
            for other in ("static", "none"):
                pair = (rag.get("paired") or {}).get(f"{name} - {other}")
                if pair:
                    body.append([r["model"], f"{TITLES[name]} − {TITLES[other]}", interval_text(pair["em"]),
                                 interval_text(pair["f1"]), pair["f1"]["n"], "> 0" if pair["f1"]["expected_sign"] > 0 else "< 0",
                                 p_text(pair["f1"]), pair["f1"]["verdict"]])
    if not body:
        return ""
    return ("\n## Paired differences (same examples; positive: the first strategy scores higher)\n\n"
            "Student's t intervals and sign-flip p over examples. One family (the `rag` rule of suite/claims.yaml): every "
            "paired EM and F1 difference of this run, these rows and Table 6's other k, Holm-adjusted together. Claim 4 "
            "is the Dynamic − Static row: the paper finds it positive; the claims table decides it within its own "
            "family (k = 5 / 10 / 20).\n\n"
            + markdown(["model", "comparison", "EM difference [95 % CI]", "F1 difference [95 % CI]", "n",
                        "paper's direction", "F1 p / Holm p (family size)", "F1 verdict"], body))


def table6(rows: list[dict[str, Any]]) -> str:
    text = ("# Table 6: in-context RAG by number of heads k (EM / F1; window precision / recall)\n\n"
            "F1, precision and recall with their 95 % bootstrap intervals over examples (seeded).\n")
    for r in rows:
        rag = r.get("rag")
        if not rag:
            continue
        ks, base = rag["ks"], rag["heads"]
        body = []
        for name in HEAD_STRATEGIES:
            cells = []
            for k in ks:
                c = _with_ci(rag, name if k == base else f"{name}:{k}")
                cells += ["—", "—"] if not c else [f"{fmt(c['em'])} / {shown(c, 'f1')}",
                                                   f"{shown(c, 'precision')} / {shown(c, 'recall')}"]
            body.append([TITLES[name], *cells])
        pairs = [(rag.get("paired") or {}).get("dynamic - static" if k == base else f"dynamic:{k} - static:{k}") for k in ks]
        if any(pairs):
            body.append(["Dynamic − Static, paired (F1 verdict, rag family)",
                         *[c for p in pairs for c in ((f"{interval_text(p['em'])} / {interval_text(p['f1'])}", p["f1"]["verdict"])
                                                       if p else ("—", "—"))]])
        text += f"\n## {r['model']} ({rag['samples']} dev examples)\n\n" + markdown(
            ["strategy", *[c for k in ks for c in (f"k = {k} (EM / F1)", f"k = {k} (precision / recall)")]], body)
    return (text + "\nFor reference, the paper's Table 6 (Llama-3.1-8B, EM / F1; not computed here):\n\n"
            + markdown(["strategy (paper)", "k = 5", "k = 10", "k = 20"], [list(row) for row in PAPER_TABLE6]))


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    per = (r.get("rag") or {}).get("strategies") or {}
    ci = (r.get("rag") or {}).get("intervals") or {}
    out: dict[str, Any] = {}
    for name in STRATEGIES:
        s, c = per.get(name) or {}, ci.get(name) or {}
        out.update(with_interval(f"rag_f1_{name}", s.get("f1"), c.get("f1")))
        if name in HEAD_STRATEGIES:
            out.update(with_interval(f"rag_recall_{name}", s.get("recall"), c.get("recall")))
    return out


def leaderboard_section(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], *[shown(b, f"rag_f1_{n}") for n in STRATEGIES], *[shown(b, f"rag_recall_{n}") for n in HEAD_STRATEGIES]] for b in board]
    return ("## In-context RAG (paper Section 5; F1 by strategy, window recall of the supporting facts)\n\n"
            + markdown(["model", *[f"F1 {n}" for n in STRATEGIES], *[f"recall {n}" for n in HEAD_STRATEGIES]], rows))


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    """This section's suite tables, by file name under the results folder."""
    return {"table4.md": table4(rows), "table6.md": table6(rows)}


def console(rows: list[dict[str, Any]]) -> str:
    """What ``run_suite`` prints at the end for this section: nothing beyond the leaderboard's RAG section."""
    return ""
