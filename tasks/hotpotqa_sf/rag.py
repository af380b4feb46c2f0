"""``run_suite`` stage ``rag``: paper Section 5, in-context dynamic RAG on ``hotpotqa_sf``; Tables 4 and 6.

Every strategy answers the same dev examples in one lm-eval run per chunk (``rag=`` joins them with ``+``),
so each example's context is prefilled once for all of them (:mod:`dynheads.models.rag`). The ``dynamic``
strategy reads the Claim 3 HotpotQA probe of the ``hotpotqa_probes`` stage, which runs first if needed.

Reported per strategy: EM / F1 (overall and per type), retrievals per answer and the share of answers that
retrieved, visible context tokens per retrieval, and the precision / recall of the revealed windows against
the supporting-fact tokens (pooled over retrievals). Every retrieval (step, trigger word and the draft's
RIND scores, heads, windows) is in the cells' trace files and, readable, in ``rag_retrievals.md``.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from dynheads.metrics.windows import pooled_mean
from dynheads.models.files import write_atomic
from dynheads.models.rag import HEAD_STRATEGIES, STRATEGIES
from dynheads.models.rag_requests import settings_record
from dynheads.tasks.suite import ModelSuite, samples_of
from dynheads.tasks.tables import fmt, markdown
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
SCORES = ("em", "f1", "em_bridge", "f1_bridge", "em_comparison", "f1_comparison")


def labels(ks: list[int], base_k: int) -> list[str]:
    """Strategy labels of one run: all seven at the base k, the four head strategies at every other k."""
    return list(STRATEGIES) + [f"{s}:{k}" for k in ks if k != base_k for s in HEAD_STRATEGIES]


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One strategy over its answers: scores and the retrieval measures."""
    rag = [r["rag"] for r in results]
    out: dict[str, Any] = {"answers": len(results)}
    for metric in SCORES:
        values = [r[metric] for r in results if metric in r]
        out[metric] = statistics.fmean(values) if values else None
    out["retrievals_per_answer"] = statistics.fmean(g["retrievals"] for g in rag) if rag else None
    out["trigger_rate"] = statistics.fmean(float(g["retrievals"] > 0) for g in rag) if rag else None
    out["retrievals"] = sum(g["retrievals"] for g in rag)
    for key in ("visible_tokens", "precision", "recall"):
        pooled = pooled_mean(g[key] for g in rag)  # the lm-eval aggregation, so both report the same number
        out[key] = None if math.isnan(pooled) else pooled
    out["context_tokens"] = statistics.fmean(g["context_token_span"][1] - g["context_token_span"][0] for g in rag) if rag else None
    return out


def run(suite: ModelSuite) -> dict[str, Any]:
    """Every strategy on the profile's dev examples; ``rag.json`` and ``rag_retrievals.md``."""
    from dynheads.tasks.hotpotqa_sf.stages import chunks, probes

    h = suite.profile["hotpotqa"]
    r = h["rag"]
    base_k, ks = int(r["heads"]), [int(k) for k in r["ks"]]
    probes(suite)  # the Claim 3 probe that the dynamic strategy reads (cached after its first run)
    suite.lm.use_rag_probe(suite.dir / "hotpotqa_probes.pt")
    names = labels(ks, base_k)
    setting = {**h, "chunk": r["chunk"]}
    cells = chunks(suite.runner("rag"), setting, int(r["n"]), [f"rag:{n}" for n in names], None, suite.progress,
                   f"{suite.name} in-context RAG ({len(names)} strategies, one context prefill per example)")
    samples = samples_of(cells)
    per = {name: summarise([s["conditions"][f"rag:{name}"] for s in samples]) for name in names}
    summary = {"samples": len(samples), "heads": base_k, "ks": ks, "settings": settings_record(suite.lm.rag_settings),
               "strategies": per, "probe": _probe_quality(suite)}
    write_atomic(suite.dir / "rag.json", json.dumps({"summary": summary}, indent=1))
    write_atomic(suite.dir / "rag_retrievals.md", retrieval_log(suite, samples, names))
    return summary


def _probe_quality(suite: ModelSuite) -> dict[str, Any] | None:
    """The held-out R² of the probe the dynamic strategy used, beside its best trivial baseline (for the table's note)."""
    path = suite.dir / "hotpotqa_probes.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text()).get("report", {}).get("probe") or {}
    return {name: (report.get(name) or {}).get("r2") for name in ("probe", "prior", "previous_step")}


def retrieval_log(suite: ModelSuite, samples: list[dict[str, Any]], names: list[str], limit: int = 4) -> str:
    """What each strategy revealed and why, for the first ``limit`` examples: trigger word, heads, windows as text."""
    from dynheads.tasks.hotpotqa_sf.utils import docs_from_metadata

    h = suite.profile["hotpotqa"]
    docs = {d["id"]: d for d in docs_from_metadata(split=h["split"], source=h.get("source"), n=min(limit, len(samples)),
                                                   tokenizer=suite.lm.tokenizer)}
    tok = suite.lm.tokenizer
    text = [f"# {suite.name}: what in-context RAG revealed, and why (first {min(limit, len(samples))} examples)\n",
            "Per retrieval: the RIND trigger (the flagged draft word and its score), the heads chosen, and each "
            "visible window's text. Full logs with the draft's RIND scores: `rag/cells/*.traces/hotpotqa_sf.jsonl`.\n"]
    for sample in samples[:limit]:
        doc = docs.get(sample["id"])
        if doc is None:
            continue
        ids = tok(doc["input"], add_special_tokens=False)["input_ids"]
        text.append(f"\n## {sample['id']} ({sample['type']}): {doc['question']}\n\ngold answer: {doc['answer']!r}\n")
        for name in names:
            res = sample["conditions"][f"rag:{name}"]
            text.append(f"- **{name}**: answer {res['response'].strip()!r} (F1 {fmt(res['f1'])}), "
                        f"{res['rag']['retrievals']} retrieval(s)")
            for log in res["rag"]["retrieval_log"]:
                trig = log["trigger"]
                shown = " … ".join(" ".join(tok.decode(ids[s:e]).split())[:160] for s, e in log["windows"])
                text.append(f"  - after {log['step']} tokens, trigger {trig['word']!r} (RIND {trig['score']}); heads "
                            f"{', '.join(f'{l}:{h}' for l, h in log['heads']) or '— (gold)'}; {log['visible_tokens']} tokens "
                            f"visible, precision {fmt(log['precision'])}, recall {fmt(log['recall'])}: \"{shown}\"")
    return "\n".join(text) + "\n"


# ------------------------------------------------------------------------------------------ tables
def _cell(s: dict[str, Any] | None) -> str:
    return "—" if not s else f"{fmt(s['em'])} / {fmt(s['f1'])}"


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
            body.append([r["model"], TITLES[name], s["answers"], s["em"], s["f1"], s["em_bridge"], s["f1_bridge"],
                         s["em_comparison"], s["f1_comparison"], s["retrievals_per_answer"], s["trigger_rate"],
                         s["visible_tokens"], s["precision"], s["recall"]])
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
            "supporting-fact tokens. Full context and oracle are references beyond the paper; the oracle uses gold labels.\n\n"
            + markdown(["model", "strategy", "answers", "EM", "F1", "EM bridge", "F1 bridge", "EM comparison", "F1 comparison",
                        "retrievals / answer", "answers that retrieved", "visible tokens / retrieval", "window precision",
                        "window recall"], body)
            + ("\n" + "\n".join(notes) + "\n" if notes else "")
            + "\nFor reference, the paper's Table 4 (EM / F1; not computed here):\n\n"
            + markdown(["model (paper)", "Dynamic", "Static", "Dynamic Random", "Fixed Random", "w/o RAG"],
                       [list(row) for row in PAPER_TABLE4]))


def table6(rows: list[dict[str, Any]]) -> str:
    text = "# Table 6: in-context RAG by number of heads k (EM / F1; window precision / recall)\n"
    for r in rows:
        rag = r.get("rag")
        if not rag:
            continue
        ks, base = rag["ks"], rag["heads"]
        body = []
        for name in HEAD_STRATEGIES:
            cells = []
            for k in ks:
                s = rag["strategies"].get(name if k == base else f"{name}:{k}")
                cells += [_cell(s), "—" if not s else f"{fmt(s['precision'])} / {fmt(s['recall'])}"]
            body.append([TITLES[name], *cells])
        text += f"\n## {r['model']} ({rag['samples']} dev examples)\n\n" + markdown(
            ["strategy", *[c for k in ks for c in (f"k = {k} (EM / F1)", f"k = {k} (precision / recall)")]], body)
    return (text + "\nFor reference, the paper's Table 6 (Llama-3.1-8B, EM / F1; not computed here):\n\n"
            + markdown(["strategy (paper)", "k = 5", "k = 10", "k = 20"], [list(row) for row in PAPER_TABLE6]))


def leaderboard_columns(r: dict[str, Any]) -> dict[str, Any]:
    per = (r.get("rag") or {}).get("strategies") or {}
    out: dict[str, Any] = {}
    for name in STRATEGIES:
        s = per.get(name) or {}
        out[f"rag_f1_{name}"] = s.get("f1")
        if name in HEAD_STRATEGIES:
            out[f"rag_recall_{name}"] = s.get("recall")
    return out


def leaderboard_rows(board: list[dict[str, Any]]) -> str:
    rows = [[b["model"], *[b[f"rag_f1_{n}"] for n in STRATEGIES], *[b[f"rag_recall_{n}"] for n in HEAD_STRATEGIES]] for b in board]
    return ("## In-context RAG (paper Section 5; F1 by strategy, window recall of the supporting facts)\n\n"
            + markdown(["model", *[f"F1 {n}" for n in STRATEGIES], *[f"recall {n}" for n in HEAD_STRATEGIES]], rows))
