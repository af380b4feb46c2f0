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
    # identical scores on all 12 documents: no spread, and the rule of three (3 / 12) does not fit in ±0.05
    assert same["acc_dynamic_minus_static"]["verdict"] == f"inconclusive at n = {n}"
    assert same["acc_dynamic_minus_random"]["verdict"] == "contradicted"  # dynamic masking hurt less here
    # exact sign-flip p of 12 equal signs is 2 / 2^12; Holm over the family of two doubles the smaller
    assert out["acc_dynamic_minus_static"]["p"] == 2 / 2 ** 12 and out["acc_dynamic_minus_static"]["p_adjusted"] == 4 / 2 ** 12
    assert out["acc_dynamic_minus_static"]["family_size"] == 2
    # below the declared minimum (10 documents) nothing is decided, however clear the data
    few = masking_intervals(_cells([0.0] * 9, [1.0] * 9, [1.0] * 9, [1.0] * 9), ("acc",), seed=0)
    assert few["acc_dynamic_minus_static"]["verdict"] == "insufficient n (n = 9 < 10)"
    table = paired_table(out, [("acc", "acc")], "top-3 static", "3 random")
    assert "| dynamic − top-3 static | acc | -1.000 [-1.000, -1.000] | 12 | 0.000488 / 0.000977 (of 2) | reproduced |" in table
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


def test_progressive_rows_carry_intervals_over_documents_and_the_table_shows_them():
    from dynheads.suite.summaries import progressive_rows, progressive_table

    # document i masks i heads at each of its 2 steps under k = 1; masking made static head (0, 0) compensate in
    # documents 0-2 only, so m_s is 1 there and 0 elsewhere
    def result(i: int) -> dict:
        after = [[(0, 0)], []] if i < 3 else [[], []]
        return {"acc": float(i % 2), "heads": [[], []], "heads_after": after, "gated": [i, i]}

    cells = [{"samples": [{"conditions": {"none": {**result(i), "gated": [0, 0], "heads_after": [[], []]},
                                          "dynamic:1": result(i)}} for i in range(6)]}]
    rows = progressive_rows(cells, [0, 1], ["none", "dynamic:1"], [(0, 0)], ("acc",), seed=0)
    k1 = rows[1]
    assert k1["masked_per_step"] == 2.5 and k1["intervals"]["masked_per_step"]["estimate"] == 2.5
    assert k1["intervals"]["masked_per_step"]["low"] < 2.5 < k1["intervals"]["masked_per_step"]["high"] <= 5
    assert k1["static_compensation"] == 0.5 and k1["intervals"]["static_compensation"]["n"] == 6
    assert k1["intervals"]["acc"]["estimate"] == 0.5
    table = progressive_table([{"model": "m", "progressive": rows}], "progressive", "Figure 3", [("acc", "acc")])
    ci = k1["intervals"]["masked_per_step"]
    assert f"| 1 | 6 | 2.500 [{ci['low']:.3f}, {ci['high']:.3f}] |" in table
