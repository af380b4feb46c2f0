"""Section 5's comparisons with intervals on planted per-example scores: each strategy against static (same k)
and w/o RAG on the same examples, with verdicts decided in one family against the paper's direction."""

from __future__ import annotations

from dynheads.suite.rag.stage import comparisons
from dynheads.suite.rag.tables import paired_section, table6

F1 = {"dynamic": 1.0, "static": 0.5, "dynamic_random": 0.0, "fixed_random": 0.5, "none": 0.5, "full": 0.5, "oracle": 1.0,
      "dynamic:10": 0.5, "static:10": 0.5}


def _samples(n: int = 20):
    # answer i of a retrieving strategy retrieved i % 3 times; window precision 1.0 on even answers, 0.0 on odd
    # ones (None: an empty window set, skipped), so the pooled precision weights answers by their retrievals
    def rag(i: int, retrieves: bool) -> dict:
        count = i % 3 if retrieves else 0
        return {"retrievals": count, "visible_tokens": [50.0] * count, "recall": [0.5] * count,
                "precision": [float(i % 2 == 0)] * count + [None]}

    return [{"conditions": {f"rag:{name}": {"em": v, "f1": v, "rag": rag(i, name not in ("none", "full"))}
                            for name, v in F1.items()}} for i in range(n)]


def test_paired_differences_and_their_verdicts():
    out = comparisons(_samples(), list(F1), seed=0, base_k=5)
    assert out["intervals"]["dynamic"]["f1"]["estimate"] == 1.0 and out["intervals"]["static"]["f1"]["n"] == 20
    from dynheads.models.rag.windows import pooled_mean

    dynamic = [s["conditions"]["rag:dynamic"]["rag"] for s in _samples()]
    ci = out["intervals"]["dynamic"]
    assert ci["precision"]["estimate"] == pooled_mean(g["precision"] for g in dynamic)  # the lm-eval aggregation's number
    assert ci["precision"]["low"] < ci["precision"]["estimate"] < ci["precision"]["high"] and ci["precision"]["n"] == 20
    assert ci["recall"]["low"] == ci["recall"]["high"] == 0.5 and ci["visible_tokens"]["estimate"] == 50.0
    assert ci["retrievals_per_answer"]["estimate"] == sum(i % 3 for i in range(20)) / 20
    assert "precision" not in out["intervals"]["none"]  # never retrieved: no pooled measure, no interval
    paired = out["paired"]
    assert paired["dynamic - static"]["f1"]["estimate"] == 0.5 and paired["dynamic - static"]["f1"]["verdict"] == "reproduced"
    # random heads are expected below static ones: a lower score reproduces that direction; an equal one on all 20
    # examples is not yet equivalent within the rag rule's margin (9.6 % of static's 0.5): 3 / 20 exceeds it
    assert paired["dynamic_random - static"]["f1"]["verdict"] == "reproduced"
    assert paired["fixed_random - static"]["f1"]["verdict"] == "inconclusive at n = 20"
    # one family: every EM and F1 difference of the run
    assert {p[m]["family_size"] for p in paired.values() for m in p} == {2 * len(paired)}
    assert out["claim4"]["5"] is paired["dynamic - static"] and out["claim4"]["10"] is paired["dynamic:10 - static:10"]
    assert paired["dynamic:10 - static:10"]["f1"]["estimate"] == 0.0  # the same k is compared
    assert "dynamic:10 - static" not in paired and "static - static" not in paired and "none - none" not in paired
    assert "oracle - none" in paired and "oracle - static" not in paired
    rows = [{"model": "m", "rag": {**out, "strategies": {n: {"em": 0, "f1": 0, "precision": 0, "recall": 0} for n in F1},
                                   "ks": [5, 10], "heads": 5, "samples": 20}}]
    section = paired_section(rows)
    line = next(l for l in section.splitlines() if l.startswith("| m | Dynamic (probe) − Static |"))
    assert "| 0.500 [0.500, 0.500] | 0.500 [0.500, 0.500] | 20 | > 0 |" in line and line.endswith("| reproduced |")
    assert f"(of {2 * len(paired)})" in line  # the raw / Holm p and the family's size are shown
    assert "Dynamic − Static, paired" in table6(rows)
