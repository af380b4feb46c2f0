"""Settings per feature: each feature parses its own arguments, cross-feature rules live in one table, renamed
arguments still work with one warning line (no model is loaded: everything here is checked before the load)."""

import warnings

import pytest

from dynheads.models.harness.settings import (EXCLUSIONS, RENAMED, HiddenSettings, KVSettings, MaskSettings, ModelSettings,
                                      StaticSettings, parse_rag, parse_reasoning)


def test_every_argument_belongs_to_one_feature_and_unknown_ones_are_one_line():
    assert len(set(ModelSettings.ARGS)) == len(ModelSettings.ARGS)
    with pytest.raises(ValueError, match="unknown model argument 'sink_token'"):
        ModelSettings.parse(sink_token=4)


def test_each_feature_parses_and_checks_itself():
    assert MaskSettings.parse("none+dynamic:5", "3").heads == 3
    with pytest.raises(ValueError, match="mask=random needs heads=N"):
        MaskSettings.parse("random", "1:2")
    assert StaticSettings.parse("off", calib_runs="2").calibration["runs"] == 2
    with pytest.raises(ValueError, match="calib_runs='x'"):
        StaticSettings.parse(calib_runs="x")
    with pytest.raises(ValueError, match="hidden_dtype"):
        HiddenSettings.parse(hidden_dtype="int8")
    assert parse_reasoning(local_window="8").local_window == 8
    with pytest.raises(ValueError, match="reasoning_threshold in \\[0, 1\\]"):
        parse_reasoning(reasoning_threshold=2)
    assert parse_rag(rag_sink_tokens="2").sink_tokens == 2
    assert KVSettings.parse(kv_budget="8").budget == 8


@pytest.mark.parametrize("args, message", [
    ({"mask": "static", "static_heads": "off"}, "mask=static/random without heads=N needs the calibration"),
    ({"hidden": "true"}, "give trace_dir=DIR too"),
    ({"rag": "static", "mask": "dynamic"}, "decides what the model sees by itself; use it with mask=none"),
    ({"rag": "static", "hidden": "true", "trace_dir": "/tmp/x"}, "run it without rag="),
    ({"kv": "full", "mask": "none+dynamic"}, "kv= compresses the unmasked model's KV cache on its own"),
    ({"kv": "full", "rag": "static"}, "kv= compresses the unmasked model's KV cache on its own"),
    ({"kv": "dynamic"}, "give kv_probe=PATH"),
    ({"kv": "observed", "static_heads": "off"}, "kv=static/dynamic/frozen/observed rank or fill heads by the static calibration"),
    ({"kv": "frozen"}, "give kv_probe=PATH"),
])
def test_each_cross_feature_rule_is_one_row_of_the_table_and_one_line(args, message):
    with pytest.raises(ValueError, match=message) as raised:
        ModelSettings.parse(**args)
    assert "\n" not in str(raised.value)
    assert sum(message.replace("\\", "") in text for _, text in EXCLUSIONS) == 1


def test_renamed_arguments_warn_once_and_set_their_new_names():
    assert set(RENAMED) == {"kv_heads", "sink_tokens"}
    with pytest.warns(FutureWarning, match="sink_tokens is deprecated; use reasoning_sink_tokens and rag_sink_tokens"):
        settings = ModelSettings.parse(sink_tokens="2")
    assert settings.reasoning.sink_tokens == 2 and settings.rag.sink_tokens == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn about nothing and are independent
        settings = ModelSettings.parse(reasoning_sink_tokens="2", rag_sink_tokens="6")
    assert settings.reasoning.sink_tokens == 2 and settings.rag.sink_tokens == 6
    with pytest.raises(ValueError, match="give rag_sink_tokens only"):
        ModelSettings.parse(sink_tokens=2, rag_sink_tokens=3)
