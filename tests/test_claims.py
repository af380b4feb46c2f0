"""The claims table on planted result rows: every declared claim (suite/claims.yaml) finds its test record, is
decided within its family by the one rule, and a stage that did not run is "not run", never a number."""

from __future__ import annotations

import json

import pytest

from dynheads.suite.claims import claims_rows, write
from dynheads.suite.verdicts import load


def _test(estimate, p, n=12, sd=0.1, reference=0.5, half=0.05):
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "n": n, "level": 0.95, "p": p,
            "sd": sd, "reference": reference}


ROW = {
    "model": "m",
    # Claim 1: both parts on the claim's side and clear (outside_static is tested against its declared 0.10)
    "dynamism": {"claim1": {"outside_static": _test(0.4, 0.001), "temporal": _test(0.08, 0.004)}},
    "niah": {"intervals": {"rouge_l_dynamic_minus_static": _test(-0.2, 0.01),
                           "rouge_l_dynamic_minus_random": _test(0.1, 0.02)}},
    # Claim 3: the probe beats the prior clearly, the previous step not: the claim needs both (intersection-union)
    "probes": {"probe": {"cluster_paired": {"prior": {"f1": _test(0.3, 0.001)},
                                            "previous_step": {"f1": _test(0.1, 0.3)}}}},
    # Claim 4: k = 5 clear; k = 10 exactly 0 with a small spread: equivalent within 9.6 % of static's 0.5
    "rag": {"claim4": {"5": {"f1": _test(0.05, 0.001, n=16)}, "10": {"f1": _test(0.0, 1.0, n=16, sd=0.02)}}},
}


def test_each_declared_claim_is_decided_within_its_family():
    rows = {c["id"]: c for c in claims_rows(ROW)}
    assert list(rows) == [c.id for c in load()[1]]  # one row per declared claim, in the file's order
    c1 = rows["C1-NIAH"]
    assert c1["verdict"] == "reproduced" and c1["p"] == 0.004  # the larger part's p
    assert "(vs 0.1)" in c1["effect_text"] and c1["family_size"] == 1  # HotpotQA's Claim 1 did not run
    # Claim 2 predicts a negative difference; its family holds the two NIAH rows that ran (Holm: 0.01 x 2, 0.02 x 1)
    assert rows["C2-NIAH-static"]["verdict"] == "reproduced" and rows["C2-NIAH-static"]["p_adjusted"] == pytest.approx(0.02)
    assert rows["C2-NIAH-random"]["verdict"] == "contradicted" and rows["C2-NIAH-random"]["p_adjusted"] == pytest.approx(0.02)
    assert rows["C2-HotpotQA-static"]["verdict"] == "not run" and rows["C2-HotpotQA-static"]["effect"] is None
    c3 = rows["C3-NIAH"]
    assert c3["p"] == 0.3 and c3["verdict"] == "inconclusive at n = 12" and "previous step" in c3["effect_text"]
    assert rows["C4-k5"]["verdict"] == "reproduced"
    assert rows["C4-k10"]["verdict"] == "equivalent to 0 within ±0.048"
    assert rows["C4-k20"]["verdict"] == "not run"
    assert all(c["verdict"] == "not run" for c in rows.values() if c["id"].startswith(("KV-", "H-")))
    assert rows["C3-NIAH"]["unit"] == "test cell (clustered by cell)"


def test_below_the_declared_minimum_nothing_is_decided_and_the_family_shrinks():
    row = {"model": "m", "niah": {"intervals": {"rouge_l_dynamic_minus_static": _test(-0.5, 0.0001, n=9),
                                                "rouge_l_dynamic_minus_random": _test(-0.5, 0.0001, n=12)}}}
    rows = {c["id"]: c for c in claims_rows(row)}
    assert rows["C2-NIAH-static"]["verdict"] == "insufficient n (n = 9 < 10)" and rows["C2-NIAH-static"]["p_adjusted"] is None
    assert rows["C2-NIAH-random"]["family_size"] == 1 and rows["C2-NIAH-random"]["verdict"] == "reproduced"


def test_a_claim_with_parts_fails_when_one_part_lies_clearly_on_the_other_side(tmp_path):
    # the heads stay inside the static top-20 (share 0.04, below the 0.10 tested against) though they change
    row = {"model": "m", "dynamism": {"claim1": {"outside_static": _test(0.04, 0.002), "temporal": _test(0.2, 0.001)}}}
    c1 = next(c for c in claims_rows(row) if c["id"] == "C1-NIAH")
    assert c1["p"] == pytest.approx(0.004) and c1["verdict"] == "contradicted"  # Bonferroni over the 2 parts
    unclear = {"model": "m", "dynamism": {"claim1": {"outside_static": _test(0.09, 0.4), "temporal": _test(0.2, 0.001)}}}
    assert next(c for c in claims_rows(unclear) if c["id"] == "C1-NIAH")["verdict"] == "inconclusive at n = 12"
    write(tmp_path, [ROW])
    assert json.loads((tmp_path / "claims.json").read_text())[0]["id"] == "C1-NIAH"
    text = (tmp_path / "claims.md").read_text()
    assert "| m | C2-NIAH-static | NIAH |" in text and "(of 2)" in text and "suite/claims.yaml" in text
