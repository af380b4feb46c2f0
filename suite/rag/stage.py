"""``run_suite`` stage ``rag``: paper Section 5, in-context dynamic RAG on ``hotpotqa_sf``; Tables 4 and 6.

Every strategy answers the same dev examples in one lm-eval run per chunk (``rag=`` joins them with ``+``),
so each example's context is prefilled once for all of them (:mod:`dynheads.models.rag.algorithm`). The ``dynamic``
strategy reads the Claim 3 HotpotQA probe of the ``hotpotqa_probes`` stage, a prerequisite the registry runs first.

Reported per strategy: EM / F1 (overall and per type), retrievals per answer and the share of answers that
retrieved, visible context tokens per retrieval, and the precision / recall of the revealed windows against
the supporting-fact tokens (pooled over retrievals). Every retrieval (step, trigger word and the draft's
RIND scores, heads, windows) is in the cells' trace files and, readable, in ``rag_retrievals.md``.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from ...util import write_atomic
from ...spec import RAG_HEAD_STRATEGIES as HEAD_STRATEGIES, RAG_STRATEGIES as STRATEGIES, ConditionSpec
from ...models.harness.rag_requests import settings_record
from ..hotpotqa.stages import chunks
from ..model import ModelSuite
from ..shards import CellsMissing
from ..summaries import samples_of
from ..tables import fmt

SCORES = ("em", "f1", "em_bridge", "f1_bridge", "em_comparison", "f1_comparison")


def labels(ks: list[int], base_k: int) -> list[str]:
    """Strategy labels of one run: all seven at the base k, the four head strategies at every other k."""
    return list(STRATEGIES) + [f"{s}:{k}" for k in ks if k != base_k for s in HEAD_STRATEGIES]


def summarise(results: list[dict[str, Any]], intervals: dict[str, Any]) -> dict[str, Any]:
    """One strategy over its answers: scores and the retrieval measures, each read from its interval record
    (:func:`strategy_intervals`: one code path for a number and its interval; the pooled measures equal the
    lm-eval aggregation's, tested), plus the counts no interval carries."""
    rag = [r["rag"] for r in results]

    def estimate(key: str) -> float | None:
        return (intervals.get(key) or {}).get("estimate")

    out: dict[str, Any] = {"answers": len(results), **{m: estimate(m) for m in SCORES},
                           "retrievals_per_answer": estimate("retrievals_per_answer"), "trigger_rate": estimate("trigger_rate"),
                           "retrievals": sum(g["retrievals"] for g in rag),
                           **{key: estimate(key) for key in ("visible_tokens", "precision", "recall")}}
    out["context_tokens"] = statistics.fmean(g["context_token_span"][1] - g["context_token_span"][0] for g in rag) if rag else None
    return out


def strategy_intervals(results: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Every mean of one strategy's Table 4 row with its 95 % bootstrap interval over examples: EM / F1 (all and
    per question type), retrievals per answer, share that retrieved, and the per-retrieval measures pooled over
    answers (visible tokens, window precision / recall: a ratio of per-answer sums, resampled by answer)."""
    from ...metrics.intervals import mean_interval, ratio_interval

    out: dict[str, Any] = {}
    for metric in SCORES:
        values = [r[metric] for r in results if metric in r]
        if values:
            out[metric] = mean_interval(values, seed).record()
    rag = [r["rag"] for r in results]
    out["retrievals_per_answer"] = mean_interval([g["retrievals"] for g in rag], seed).record()
    out["trigger_rate"] = mean_interval([float(g["retrievals"] > 0) for g in rag], seed).record()
    for key in ("visible_tokens", "precision", "recall"):
        kept = [[v for v in (g[key] if isinstance(g[key], list) else [g[key]]) if v is not None] for g in rag]
        pooled = ratio_interval([sum(v) for v in kept], [len(v) for v in kept], seed)
        if pooled is not None:
            out[key] = pooled.record()
    return out


def comparisons(samples: list[dict[str, Any]], names: list[str], seed: int, base_k: int | None = None) -> dict[str, Any]:
    """Every strategy's means with 95 % bootstrap intervals over examples (``intervals``), and paired EM / F1
    differences on the same examples (``paired``): each strategy minus static at the same k and minus w/o RAG,
    with t interval and sign-flip p, decided as one family (the ``rag`` rule of ``claims.yaml``) in the direction
    of the paper's Table 4 (Claim 4: dynamic > static). ``claim4``: the Dynamic − Static records by k, which the
    claims table reads."""
    from ...metrics.inference import paired_test
    from ..verdicts import decide_table

    results = {name: [s["conditions"][f"rag:{name}"] for s in samples] for name in names}
    values = {name: {m: [r[m] for r in per] for m in ("em", "f1")} for name, per in results.items()}
    intervals = {name: strategy_intervals(per, seed) for name, per in results.items()}
    tests: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
    for name in names:
        spec = ConditionSpec.parse(name, family="rag")
        strategy = spec.strategy
        for other in (ConditionSpec("rag", "static", spec.k).label, "none"):
            if other == name or other not in values or strategy in ("none", "full", "oracle") and other != "none":
                continue
            # the paper's direction: random heads below static ones, every strategy above w/o RAG (its Table 4)
            sign = -1 if strategy in ("dynamic_random", "fixed_random") and other != "none" else 1
            for m in ("em", "f1"):
                tests[(f"{name} - {other}", m)] = (paired_test(values[name][m], values[other][m], seed).record(), sign)
    decided = decide_table("rag", tests)
    paired: dict[str, Any] = {}
    for (pair, m), record in decided.items():
        paired.setdefault(pair, {})[m] = record
    claim4 = {}
    for name in names:
        spec = ConditionSpec.parse(name, family="rag")
        static = f"{name} - {ConditionSpec('rag', 'static', spec.k).label}"
        if spec.strategy == "dynamic" and static in paired:
            claim4[str(spec.k if spec.k is not None else base_k)] = paired[static]
    return {"intervals": intervals, "paired": paired, "claim4": claim4}


def run(suite: ModelSuite) -> dict[str, Any]:
    """Every strategy on the profile's dev examples; ``rag.json`` and ``rag_retrievals.md``."""
    h, r = suite.profile["hotpotqa"], suite.profile["rag"]
    base_k, ks = int(r["heads"]), [int(k) for k in r["ks"]]
    probe = suite.dir / "hotpotqa_probes.pt"
    if not probe.is_file():  # only a sharded run gets here without it: the probe waits for every probe cell
        raise CellsMissing("hotpotqa_probes.pt, the probe rag=dynamic reads")
    suite.lm.use_rag_probe(probe)
    names = labels(ks, base_k)
    setting = {**h, "chunk": r["chunk"]}
    cells = chunks(suite.runner("rag"), setting, int(r["n"]), [f"rag:{n}" for n in names], None, suite.progress,
                   f"{suite.name} in-context RAG ({len(names)} strategies, one context prefill per example)")
    samples = samples_of(cells)
    compared = comparisons(samples, names, suite.seed, base_k)
    per = {name: summarise([s["conditions"][f"rag:{name}"] for s in samples], compared["intervals"][name]) for name in names}
    summary = {"samples": len(samples), "heads": base_k, "ks": ks, "settings": settings_record(suite.lm.settings.rag),
               "strategies": per, "probe": _probe_quality(suite), **compared}
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
    from ...tasks.hotpotqa_sf.utils import docs_from_metadata

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
