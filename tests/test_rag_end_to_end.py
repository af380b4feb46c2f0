"""SmolLM2 end to end: ``--model dynheads --model_args rag=...`` on hotpotqa_sf scores the RAG answers with the
task's metrics plus the retrieval measures, and writes a trace line per strategy with every retrieval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lm_eval
from lm_eval.tasks import TaskManager

from dynheads.metrics.retrieval import span_token_indices
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.tasks.hotpotqa_sf.utils import docs_from_metadata, score

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("static", "oracle", "none", "full", "fixed_random")  # the lines checked here (the suite runs 11)


@pytest.fixture(scope="module")
def records(suite_run):
    """The session suite's Section 5 trace (two dev examples, threshold 0): the same ``rag=`` path through lm-eval that
    a user runs, decoded once for the whole test session; the lines of the strategies above."""
    out = suite_run[0] / "smollm2"
    lines = (out / "rag" / "cells" / "dev_00000.traces" / "hotpotqa_sf.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["condition"][4:] in STRATEGIES]


@pytest.mark.slow
def test_rag_answers_are_scored_with_the_retrieval_measures(isolated_cache, tmp_path):
    """lm-eval's own results carry the retrieval measures and score the first strategy (one example, one strategy:
    the only decode of this module; the suite's cells never hold lm-eval's aggregate keys)."""
    lm = DynHeadsLM(device="cpu", dtype="float32", rag="static+none", rag_threshold=0.0, calib_examples=1,
                    reasoning_threshold=0.2, trace_dir=str(tmp_path))
    manager = TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False, metadata={"n": 1})
    out = lm_eval.simple_evaluate(model=lm, tasks=["hotpotqa_sf"], task_manager=manager, log_samples=True)
    res = out["results"]["hotpotqa_sf"]
    # threshold 0: every answer retrieves at least once, so every retrieval measure is present
    assert res["rag_triggered,none"] == 1.0 and res["rag_retrievals,none"] >= 1
    assert res["rag_visible_tokens,none"] > 0 and 0 <= res["rag_precision,none"] <= 1 and 0 <= res["rag_recall,none"] <= 1
    lines = [json.loads(line) for line in (tmp_path / "hotpotqa_sf.jsonl").read_text().splitlines()]
    (sample,) = out["samples"]["hotpotqa_sf"]
    first = next(r for r in lines if r["condition"] == "rag:static")
    assert sample["f1"] == score(first["response"], sample["doc"])["f1"]  # lm-eval scored the first strategy
    assert res["rag_retrievals,none"] == first["rag"]["retrievals"]


@pytest.mark.slow
def test_trace_lines_log_every_retrieval(records, suite_run, smollm2_lm):
    lm = smollm2_lm
    assert sorted({r["condition"] for r in records}) == sorted(f"rag:{s}" for s in STRATEGIES) and len(records) == 2 * len(STRATEGIES)
    docs = docs_from_metadata(n=2, tokenizer=lm.tokenizer)
    calibration = json.loads((suite_run[0] / "smollm2" / "hotpotqa_calibration.json").read_text())
    static_top = calibration["top20"][:2]  # the suite's --rag-ks 2,4: rag:static uses k = 2
    for rec in records:
        doc = docs[rec["doc_id"]]
        enc = lm.tokenizer(doc["input"], add_special_tokens=False, return_offsets_mapping=True)
        context = span_token_indices(enc["offset_mapping"], *doc["context_char_span"])
        rag = rec["rag"]
        assert rag["context_token_span"] == [max(context[0], 4), context[-1] + 1]
        name = rec["condition"][4:]
        assert rag["retrievals"] == len(rag["retrieval_log"])
        # threshold 0: every retrieving strategy retrieves; Algorithm 1 as the paper writes it regenerates to the end
        # of the answer after its retrieval, so it retrieves exactly once
        assert rag["retrievals"] == (0 if name in ("none", "full") else 1), name
        for log in rag["retrieval_log"]:
            assert log["trigger"]["word"] and log["trigger"]["score"] > 0 and log["trigger"]["draft"]
            assert all(rag["context_token_span"][0] <= s < e <= rag["context_token_span"][1] for s, e in log["windows"])
            if name == "static":
                assert log["heads"] == static_top
            if name == "oracle":
                assert log["precision"] == log["recall"] == 1.0 and log["heads"] == []
            if name == "fixed_random":
                assert log["heads"] == rag["retrieval_log"][0]["heads"] and len(log["heads"]) == 2
    # full = plain greedy decoding of the whole prompt; none = the first draft (context hidden)
    for doc_id, doc in enumerate(docs):
        ids = lm.tok_encode(doc["input"])
        full = next(r for r in records if r["doc_id"] == doc_id and r["condition"] == "rag:full")
        assert full["input_ids"] == ids
        plain = lm.engine.generate(ids, len(full["steps"]), eos_token_ids=lm.eos_ids()).token_ids
        assert [s["token_id"] for s in full["steps"]] == plain


@pytest.mark.slow
def test_verify_replays_every_rag_line_of_the_trace(records, tmp_path, capsys):
    """The suite's own RAG trace, checked by `python -m dynheads.models.verify` (issue 23: it ended in a KeyError):
    every token, trigger, top position and window of every strategy agrees with the eager replay (one example's lines:
    every strategy and field; the replay of a second example would check the same code again at twice the cost)."""
    from dynheads.models.verify import main

    records = [r for r in records if r["doc_id"] == 0]
    assert len(records) == len(STRATEGIES)
    path = tmp_path / "hotpotqa_sf.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main([str(path)]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out.strip().splitlines()[-1])
    assert result["rag"]["lines"] == len(records) and "not checked" not in printed.err
    for field in ("tokens", "triggers", "top_positions", "windows"):
        assert result["rag"][f"{field}_agreement"] == 1.0, result


@pytest.mark.parametrize("kwargs, message", [
    ({"rag": "dynamic"}, "hotpotqa_probes"),  # names the command that makes the probe
    ({"rag": "static", "static_heads": "off"}, "static_heads=auto"),
    ({"rag": "static", "mask": "dynamic"}, "mask=none"),
    ({"rag": "bogus"}, "unknown rag condition"),
    ({"rag": "static+static"}, "twice"),
    ({"rag": "static", "rag_window": 0}, "rag_window"),
    ({"rag": "static", "rag_algorithm": "both"}, "rag_algorithm=.*choose paper"),
    ({"rag": "static", "rag_stopwords": "never"}, "rag_stopwords=.*choose trigger"),
])
def test_strategy_requirements_are_one_line_before_the_model_loads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DynHeadsLM(**kwargs)


def test_algorithm_and_stop_word_rules_reach_the_settings_from_model_args_and_run_suite_flags():
    import argparse

    from dynheads.models.harness.settings import ModelSettings
    from dynheads.suite.rag import profiles  # Section 5 sizes itself

    settings = ModelSettings.parse(rag="static", rag_algorithm="dragin", rag_stopwords="skip").rag
    assert (settings.algorithm, settings.stopwords, settings.threshold) == ("dragin", "skip", 1.2)
    assert ModelSettings.parse(rag="static").rag.algorithm == "paper"
    p = argparse.ArgumentParser()
    profiles.add_arguments(p)
    prof = profiles.profile("smollm2", "quick", p.parse_args(["--rag-algorithm", "dragin", "--rag-stopwords", "skip"]))
    args = profiles.model_args(prof)
    assert args["rag_algorithm"] == "dragin" and args["rag_stopwords"] == "skip"
