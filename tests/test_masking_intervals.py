"""Claim 2's comparison with intervals on planted per-document scores: condition means with bootstrap intervals,
paired differences on the same documents, and the verdict they give."""

from __future__ import annotations

from dynheads.suite.summaries import interval_text, masking_intervals, paired_table


def _cells(dynamic, static, random, none):
    samples = [{"conditions": {"dynamic": {"acc": d}, "static": {"acc": s}, "random": {"acc": r}, "none": {"acc": n}}}
               for d, s, r, n in zip(dynamic, static, random, none)]
    return [{"samples": samples[:5]}, {"samples": samples[5:]}]


def test_dynamic_masking_that_always_hurts_more_is_reproduced_and_equal_masking_is_inconclusive():
    n = 12
    cells = _cells([0.0] * n, [1.0] * n, [0.0] * 6 + [1.0] * 6, [1.0] * n)
    out = masking_intervals(cells, ("acc",), seed=0)
    assert out["acc_none"]["estimate"] == 1.0 and out["acc_none"]["n"] == n
    assert out["acc_dynamic_minus_static"]["estimate"] == -1.0
    assert out["acc_dynamic_minus_static"]["verdict"] == "reproduced"
    random = out["acc_dynamic_minus_random"]
    assert random["estimate"] == -0.5 and random["low"] < random["high"] <= 0.0
    # the documents were paired: only the random condition's half that differs moves the difference
    same = masking_intervals(_cells([0.5] * n, [0.5] * n, [0.0] * n, [1.0] * n), ("acc",), seed=0)
    assert same["acc_dynamic_minus_static"]["verdict"] == f"inconclusive at n = {n}"
    assert same["acc_dynamic_minus_random"]["verdict"] == "contradicted"  # dynamic masking hurt less here
    table = paired_table(out, [("acc", "acc")], "top-3 static", "3 random")
    assert "| dynamic − top-3 static | acc | -1.000 [-1.000, -1.000] | 12 | reproduced |" in table
    assert interval_text(None) == "—"
