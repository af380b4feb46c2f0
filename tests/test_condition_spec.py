"""The one typed name of every condition: parse(name).name round-trips, across families, and bad names fail in one line."""

import pytest

from dynheads.models.engine.kv import KVPolicy, kv_condition
from dynheads.models.rag.strategies import Strategy
from dynheads.spec import ConditionSpec, SpecError
from dynheads.models.engine.conditions import mask_condition

NAMES = ["none", "dynamic", "dynamic:0", "dynamic:5", "static", "random", "rag:dynamic", "rag:static:10",
         "rag:fixed_random:3", "rag:full", "rag:oracle", "kv:full", "kv:streaming", "kv:static@0.3", "kv:dynamic@8",
         "kv:observed@0.05", "kv:random@1", "kv:probe_mean@0.3", "kv:frozen@0.3", "kv:redrawn@0.15"]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_round_trips(name):
    spec = ConditionSpec.parse(name)
    assert spec.name == name
    assert ConditionSpec.parse(spec.label, family=spec.family) == spec


def test_each_family_writes_its_names_through_the_spec():
    assert mask_condition("dynamic:5").name == "dynamic:5"
    assert Strategy.parse("static:10").spec.name == "rag:static:10"
    assert kv_condition(KVPolicy("static", 0.3)).name == "kv:static@0.3"
    assert kv_condition(KVPolicy("full", 0.3)).name == "kv:full"  # an unbudgeted strategy names no budget
    assert ConditionSpec.parse("static@0.25", family="kv") == ConditionSpec("kv", "static", budget=0.25)
    assert ConditionSpec.parse("static@8", family="kv").budget == 8


@pytest.mark.parametrize("text, family, message", [
    ("bogus", None, "unknown mask condition 'bogus'"),
    ("kv:bogus@0.3", None, "unknown kv condition 'bogus'"),
    ("rag:full:3", None, "full:3 takes no head count"),
    ("rag:static:0", None, "static:0 takes no head count here or a count out of range"),
    ("kv:full@0.3", None, "full@0.3 takes no budget"),
    ("kv:static@1.5", None, "a fraction must lie in \\(0, 1\\]"),
    ("kv:static@x", None, "kv_budget='x'; give a count N"),
    ("kv:static:3", None, "cannot read KV condition"),
    ("kv:static@0.3", "rag", "is a kv condition where a rag one is expected"),
    ("dynamic:x", None, "cannot read the head count of 'dynamic:x'"),
])
def test_bad_names_fail_in_one_line(text, family, message):
    with pytest.raises(SpecError, match=message):
        ConditionSpec.parse(text, family=family)
