"""Across the models of one run, a claim replicates only when every model's verdict is decided the same way; an open
verdict on any model leaves it undecided and names that model (suite/replication.py, replication.md)."""

from __future__ import annotations

import json

from dynheads.suite.claims import write
from dynheads.suite.replication import across, replication_rows, summary


def claim(model: str, cid: str, verdict: str) -> dict:
    return {"model": model, "id": cid, "claim": cid.split("-")[0], "setting": "s", "statistic": "st", "unit": "document",
            "effect_text": "0.1 [0, 0.2]", "n": 12, "p": 0.01, "p_adjusted": 0.02, "family_size": 2, "paper": "—",
            "verdict": verdict}


def test_what_two_models_verdicts_say_together():
    assert across({"a": "reproduced", "b": "reproduced"}).startswith("replicates (reproduced")
    assert across({"a": "not supported", "b": "not supported"}).startswith("replicates (not supported")
    assert across({"a": "reproduced", "b": "contradicted"}) == "does not replicate"
    assert across({"a": "supported", "b": "not supported"}) == "does not replicate"
    assert across({"a": "reproduced", "b": "equivalent to 0 within ±0.05"}) == "does not replicate"
    assert across({"a": "equivalent to 0 within ±0.05", "b": "equivalent to 0 within ±0.1"}).startswith("replicates")
    assert across({"a": "reproduced", "b": "insufficient n (n = 4 < 10)"}) == "undecided: open on b"
    assert across({"a": "inconclusive at n = 18", "b": "reproduced"}) == "undecided: open on a"
    assert across({"a": "not run", "b": "not run"}) == "not run"
    assert across({"a": "reproduced"}) == "one model only"


def test_rows_follow_the_claims_order_and_the_page_is_written_only_for_several_models(tmp_path, monkeypatch):
    claims = [claim("m1", "C1-NIAH", "reproduced"), claim("m1", "C2-NIAH", "contradicted"),
              claim("m2", "C1-NIAH", "reproduced"), claim("m2", "C2-NIAH", "inconclusive at n = 12")]
    rows = replication_rows(claims)
    assert [r["id"] for r in rows] == ["C1-NIAH", "C2-NIAH"]
    assert rows[1]["verdicts"] == {"m1": "contradicted", "m2": "inconclusive at n = 12"}
    assert summary(claims) == {"replicates": ["C1-NIAH"], "does not replicate": [], "undecided": ["C2-NIAH"]}

    from dynheads.suite import claims as claims_module

    for models, expected in ((["m1"], False), (["m1", "m2"], True)):
        out = tmp_path / "-".join(models)
        out.mkdir()
        planted = [c for c in claims if c["model"] in models]
        monkeypatch.setattr(claims_module, "claims_rows",
                            lambda row, planted=planted: [c for c in planted if c["model"] == row["model"]])
        write(out, [{"model": m} for m in models])
        assert json.loads((out / "claims.json").read_text()) == planted
        assert (out / "replication.md").is_file() == expected
    page = (tmp_path / "m1-m2" / "replication.md").read_text()
    assert "replicates: C1-NIAH; does not replicate: none; undecided: C2-NIAH." in page
    assert "| C2-NIAH | s | contradicted | inconclusive at n = 12 | undecided: open on m2 |" in page
