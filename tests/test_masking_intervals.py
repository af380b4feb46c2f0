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


def test_leaderboard_columns_keep_both_ends_and_show_the_interval():
    from dynheads.suite.niah.tables import leaderboard_columns, leaderboard_section

    cells = _cells([0.0] * 12, [1.0] * 12, [0.0] * 6 + [1.0] * 6, [1.0] * 6 + [0.0] * 6)
    row = {"model": "m", "total_heads": 8, "niah": {"samples": 12, "acc_none": 0.5, "acc_dynamic": 0.0, "acc_static": 1.0,
                                                    "acc_random": 0.5, "intervals": masking_intervals(cells, ("acc",), 0)}}
    board = {"model": "m", **leaderboard_columns(row)}
    assert board["acc"] == 0.5 and board["acc_ci_low"] < 0.5 < board["acc_ci_high"]
    assert board["rouge_l_ci_low"] is None and board["probe_f1_ci_high"] is None  # not run: no interval, no zero
    text = leaderboard_section([board])
    assert f"| 0.500 [{board['acc_ci_low']:.3f}, {board['acc_ci_high']:.3f}] |" in text and "| — |" in text
