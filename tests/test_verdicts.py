"""The one verdict rule (suite/verdicts.py) and Claim 1's statistics, on planted data: a test that can fail."""

from __future__ import annotations

import numpy as np
import pytest

from dynheads.metrics.inference import one_sample_test
from dynheads.metrics.table1_sums import claim1_units
from dynheads.suite.verdicts import Rule, decide_family, decide_table, equivalence_p, load, table_rule, verdict


def _record(estimate, p, n=12, sd=0.1, reference=None):
    return {"estimate": estimate, "low": estimate - 0.1, "high": estimate + 0.1, "n": n, "p": p, "sd": sd,
            "reference": reference}


def test_verdict_words_follow_the_kind_the_direction_and_the_minimum():
    claim, conjecture = Rule("claim", 10, margin=0.05), Rule("conjecture", 10, direction=-1, margin=0.05)
    assert verdict(_record(0.2, 0.01), claim, 0.01, 1.0) == "reproduced"
    assert verdict(_record(-0.2, 0.01), claim, 0.01, 1.0) == "contradicted"
    assert verdict(_record(-0.2, 0.01), conjecture, 0.01, 1.0) == "supported"
    assert verdict(_record(0.2, 0.01), conjecture, 0.01, 1.0) == "not supported"
    assert verdict(_record(0.2, 0.01), claim, 0.06, 1.0) == "inconclusive at n = 12"
    assert verdict(_record(0.0, 0.9), claim, 0.9, 0.01) == "equivalent to 0 within ±0.05"
    assert verdict(_record(0.2, 0.0001, n=9), claim, 0.0001, 0.0) == "insufficient n (n = 9 < 10)"
    assert verdict(None, claim, 1.0, 1.0) == "not run"
    per_class = Rule("conjecture", 10, min_per_class=10)
    assert verdict({**_record(0.3, 0.001, n=30), "positive_units": 4, "negative_units": 26}, per_class, 0.001, 1.0) == (
        "insufficient n (4 positive units < 10)")
    assert verdict({**_record(0.3, 0.001, n=30), "positive_units": 12, "negative_units": 18}, per_class, 0.001, 1.0) == "supported"
    with pytest.raises(ValueError, match="direction"):
        Rule("claim", 10, direction=0)


def test_holm_within_the_family_turns_a_lone_p_of_0_03_into_inconclusive():
    rule = Rule("claim", 10)
    alone = decide_family([(_record(0.2, 0.03), rule)])
    assert alone[0]["verdict"] == "reproduced"
    three = decide_family([(_record(0.2, 0.03), rule), (_record(0.1, 0.5), rule), (_record(0.1, 0.04), rule)])
    assert [d["p_adjusted"] for d in three] == pytest.approx([0.09, 0.5, 0.09])
    assert {d["verdict"] for d in three} == {"inconclusive at n = 12"} and three[0]["family_size"] == 3


def test_a_relative_margin_scales_the_reference_mean_and_an_interval_without_sd_is_conservative():
    relative = Rule("claim", 10, margin=0.1, relative=True)
    assert relative.margin_for({"reference": 0.5}) == pytest.approx(0.05) and relative.margin_for({"reference": None}) is None
    auroc = {"estimate": 0.0, "low": -0.03, "high": 0.04, "n": 30, "p": 0.8}  # no sd: is the 95 % interval inside?
    assert equivalence_p(auroc, Rule("conjecture", 10, margin=0.05)) == 0.0
    assert equivalence_p(auroc, Rule("conjecture", 10, margin=0.035)) == 1.0


def test_stage_tables_take_their_rule_from_the_claims_file():
    tables, claims = load()
    assert set(tables) == {"masking", "rag", "kv", "probes", "hallucination"}
    assert table_rule("masking", -1).direction == -1 and table_rule("kv").kind == "conjecture"
    assert all(c.rule.min_n >= 10 for c in claims)
    decided = decide_table("kv", {"a": (_record(0.3, 0.001), 1), "b": (None, 1)})
    assert decided["a"]["verdict"] == "supported" and decided["b"]["verdict"] == "not run"


def _generations(step_heads, steps=40, generations=12, seed=0):
    rng = np.random.default_rng(seed)
    return [[step_heads(rng, t) for t in range(steps)] for _ in range(generations)]


def _decides(samples, ranking):
    """Claim 1's two parts, each tested against the null claims.yaml declares: True when both are clear."""
    nulls = {source[-1]: null for c in load()[1] for _, source, null in c.parts}
    units = claim1_units(samples, ranking)
    tests = {k: one_sample_test(v, nulls[k], seed=0) for k, v in units.items()}
    return all(t.p <= 0.05 and t.interval.estimate > nulls[k] for k, t in tests.items()), units


def test_claim1_fails_for_one_fixed_head_set_and_for_a_fixed_set_seen_through_noise():
    static = [(0, h) for h in range(20)]
    fixed = _generations(lambda rng, t: [(0, 1), (0, 2), (0, 3)])
    decided, units = _decides(fixed, static)
    assert not decided and units["outside_static"].max() == 0.0
    # a fixed set, each head active at random steps, plus an occasional head outside the static set
    noisy = _generations(lambda rng, t: [(0, h) for h in range(5) if rng.random() < 0.6]
                         + ([(1, int(rng.integers(0, 30)))] if rng.random() < 0.5 else []))
    decided, units = _decides(noisy, static)
    assert not decided and abs(units["temporal"].mean()) < 0.03  # step-wise noise has no temporal structure
    # heads that switch every few steps, mostly outside the static set: both parts clear
    def dynamic(rng, t):
        phase = t // 4 + int(rng.integers(0, 1))
        return [(1, (phase * 3 + k) % 30) for k in range(3)] + [(0, 1)]
    decided, units = _decides(_generations(dynamic), static)
    assert decided and units["outside_static"].mean() > 0.5 and units["temporal"].mean() > 0.2
    assert len(claim1_units(fixed, None)["outside_static"]) == 0  # no ranking: that part is not computed
