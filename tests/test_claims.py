"""The claims table on planted result rows: each claim's row takes the right statistic and its verdict follows
the interval in the paper's direction; a stage that did not run is "not run", never a number."""

from __future__ import annotations

import json

from dynheads.suite.claims import claims_rows, write


def _interval(estimate, low, high, n=10):
    return {"estimate": estimate, "low": low, "high": high, "n": n, "level": 0.95}


ROW = {
    "model": "m",
    "dynamism": {"intervals": {"adjacent_jaccard": _interval(0.4, 0.3, 0.5)}},
    "niah": {"intervals": {"rouge_l_dynamic_minus_static": _interval(-0.2, -0.3, -0.1),
                           "rouge_l_dynamic_minus_random": _interval(0.1, 0.05, 0.2)}},
    "probes": {"probe": {"f1": 0.8, "prior": {"f1": 0.75}, "previous_step": {"f1": 0.7},
                         "paired": {"prior": {"f1": _interval(0.3, 0.2, 0.4)},
                                    "previous_step": {"f1": _interval(0.1, -0.01, 0.2)}}}},
    "rag": {"heads": 5, "ks": [5, 10],
            "paired": {"dynamic - static": {"f1": _interval(0.05, 0.01, 0.09, 16)},
                       "dynamic:10 - static:10": {"f1": _interval(0.0, -0.1, 0.1, 16)}}},
}


def test_each_claim_reads_its_statistic_and_the_verdict_follows_the_interval(tmp_path):
    rows = {(c["claim"], c["task"], c["statistic"].split(" with ")[-1]): c for c in claims_rows(ROW)}
    by_claim = [(c["claim"], c["task"], c["verdict"]) for c in claims_rows(ROW)]
    # Claim 1: 1 - adjacent Jaccard = 0.6 [0.5, 0.7] > 0
    claim1 = next(c for c in claims_rows(ROW) if c["claim"] == "1 dynamism" and c["task"] == "NIAH")
    assert claim1["effect"]["estimate"] == 0.6 and claim1["effect"]["low"] == 0.5 and claim1["verdict"] == "reproduced"
    # Claim 2 expects a negative difference: dynamic vs static reproduced, dynamic vs random contradicted
    assert ("2 irreplaceability", "NIAH", "reproduced") in by_claim and ("2 irreplaceability", "NIAH", "contradicted") in by_claim
    # Claim 3 takes the least favourable comparison (previous step: its interval reaches below 0), not the baseline
    # with the best point score (prior)
    claim3 = next(c for c in claims_rows(ROW) if c["task"] == "NIAH" and c["claim"] == "3 predictability")
    assert "previous step" in claim3["statistic"] and claim3["verdict"] == "inconclusive at n = 10"
    assert ("4 dynamic RAG", "HotpotQA, k = 5", "reproduced") in by_claim
    assert ("4 robustness (Appendix C)", "HotpotQA, k = 10", "inconclusive at n = 16") in by_claim
    # HotpotQA never ran here: its rows say so
    assert all(c["verdict"] == "not run" and c["effect"] is None for c in claims_rows(ROW) if c["task"] == "HotpotQA")
    assert len(rows) >= 8
    write(tmp_path, [ROW])
    assert json.loads((tmp_path / "claims.json").read_text())[0]["claim"] == "1 dynamism"
    assert "| m | 1 dynamism | NIAH |" in (tmp_path / "claims.md").read_text()
