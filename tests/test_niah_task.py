"""The niah_uuid task: document construction, metadata handling, lm-eval wiring and per-cell reports.

Uses the real embedded SmolLM2 tokenizer (``load_tokenizer(None)``); no model is loaded.
Length tolerance: the context section (haystack + needle) must be within ``MAX_LENGTH_ERROR`` = 3 tokens
of the target length; in practice almost every document is exact.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dynheads.suite.niah import report
from dynheads.tasks.niah_uuid import haystack as H
from dynheads.tasks.niah_uuid import utils as U

TASKS_DIR = Path(U.__file__).resolve().parents[1]
LENGTHS = [200, 500, 1000]
DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]
RUNS = 2


@pytest.fixture(scope="module")
def tok():
    from dynheads.models.harness.loading import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="module")
def docs(tok):
    return U.docs_from_metadata(lengths=LENGTHS, depths=DEPTHS, runs=RUNS, seed=0, tokenizer=tok)


def _context(doc):
    start, end = doc["context_char_span"]
    return doc["input"][start:end]


def test_grid_and_schema(docs):
    assert len(docs) == len(LENGTHS) * len(DEPTHS) * RUNS
    keys = {
        "input", "needle", "uuid", "length", "depth", "run", "seed", "needle_char_span",
        "context_char_span", "context_tokens", "n_tokens", "haystack", "haystack_start",
    }
    assert all(set(d) == keys for d in docs)
    cells = [(d["length"], d["depth"], d["run"]) for d in docs]
    assert cells == [(n, dp, r) for n in LENGTHS for dp in DEPTHS for r in range(RUNS)]
    assert all(d["haystack"] == "hotpotqa" and d["seed"] == 0 for d in docs)


def test_no_two_documents_share_a_context(docs, tok):
    """Issue 19: each document reads the haystack from its own seeded paragraph, so the runs of a cell (and the
    cells of a grid) never share context text; the start is reproducible and depends on the seed."""
    assert len({_context(d) for d in docs}) == len(docs)
    assert len({(d["length"], d["depth"], d["haystack_start"]) for d in docs}) == len(docs)
    again = H.build_docs(tok, [LENGTHS[0]], [DEPTHS[0]], RUNS, seed=0)
    assert [d["input"] for d in again] == [d["input"] for d in docs[:RUNS]]
    other_seed = H.build_docs(tok, [LENGTHS[0]], [DEPTHS[0]], 1, seed=1)
    assert other_seed[0]["haystack_start"] != docs[0]["haystack_start"]
    text = H.hotpotqa_text()
    for d in docs:  # a window starts at a paragraph: the context opens with the paragraph's first words
        paragraph = text[d["haystack_start"]:][:40].strip()
        assert _context(d).lstrip().startswith(paragraph[:20]) or d["depth"] == 0.0


def test_runs_of_a_cell_take_distinct_paragraphs_even_from_a_short_source():
    text = "\n\n".join(f"Paragraph {i} says something. It ends here." for i in range(4))
    starts = [H.window_start(text, 0, 500, 0.5, run) for run in range(4)]
    assert sorted(starts) == sorted({0, *(m.end() for m in H._PARAGRAPH.finditer(text))})
    assert H.rotated(text, starts[1]).startswith(text[starts[1]:])


def test_token_lengths(docs, tok):
    for d in docs:
        context = _context(d)
        assert H.count_tokens(tok, context) == d["context_tokens"]
        assert abs(d["context_tokens"] - d["length"]) <= H.MAX_LENGTH_ERROR, (d["length"], d["context_tokens"])
        assert d["n_tokens"] == H.count_tokens(tok, d["input"])
        assert 0 < d["n_tokens"] - d["context_tokens"] < 120  # template overhead only
    exact = sum(d["context_tokens"] == d["length"] for d in docs)
    assert exact >= 0.8 * len(docs)


def test_prompt_uses_chat_template_and_paper_wording(docs):
    prompt = docs[0]["input"]
    assert prompt.startswith("<|im_start|>system\n" + H.SYSTEM_PROMPT + "<|im_end|>")
    assert "<|im_start|>user\nContext:\n" in prompt
    assert prompt.endswith(
        "\n\nQuestion:\nWhat is the magic word?\nInstruction:\n"
        "Don't give information outside the document or repeat your findings.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_needle_once_at_sentence_boundary_and_depth(docs, tok):
    for d in docs:
        start, end = d["needle_char_span"]
        prompt, needle = d["input"], d["needle"]
        assert needle == f"The magic word is {d['uuid']}."
        assert prompt[start:end] == needle
        assert prompt.count(d["uuid"]) == 1
        cstart, cend = d["context_char_span"]
        assert cstart <= start < end <= cend
        context, s = _context(d), start - cstart
        # Its own sentence: starts the context or follows ". ", and is followed by whitespace or the end.
        assert s == 0 or context[s - 2 : s] == ". ", context[max(0, s - 30) : s + 5]
        assert s + len(needle) == len(context) or context[s + len(needle)].isspace()
        if d["depth"] == 0.0:
            assert s == 0
            continue
        # The insertion point is the last sentence end at or before the depth point of the haystack.
        hay = context[: s - 1] + context[s + len(needle) :]
        ids = tok(hay, add_special_tokens=False)["input_ids"]
        point = len(hay) if d["depth"] == 1.0 else len(tok.decode(ids[: round(d["depth"] * len(ids))]))
        insert_at = s - 1
        assert insert_at <= point + 1
        assert not re.search(r"\.\s", hay[insert_at:point]), (d["length"], d["depth"], hay[insert_at:point])
        if d["length"] >= 500:  # depth is measured in tokens (the point backs up to a sentence end)
            before = len(tok(context[: s - 1], add_special_tokens=False)["input_ids"])
            assert d["depth"] - 0.15 <= before / len(ids) <= d["depth"] + 0.02


def test_deterministic_across_builds(docs, tok):
    again = U.docs_from_metadata(lengths=LENGTHS, depths=DEPTHS, runs=RUNS, seed=0, tokenizer=tok)
    assert again == docs


def test_uuids_differ_across_runs_cells_and_seeds(docs, tok):
    uuids = [d["uuid"] for d in docs]
    assert len(set(uuids)) == len(uuids)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u) for u in uuids)
    other = U.docs_from_metadata(lengths=[200], depths=[0.5], runs=2, seed=1, tokenizer=tok)
    assert not {d["uuid"] for d in other} & set(uuids)


def test_uuid_is_stable_across_processes():
    here = H.make_uuid(0, 500, 0.5, 1)
    code = "from dynheads.tasks.niah_uuid.haystack import make_uuid; print(make_uuid(0, 500, 0.5, 1))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here
    assert H.make_uuid(0, 500, 0, 1) == H.make_uuid(0, 500, 0.0, 1)


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"lengths": [10]}, "lengths"),
        ({"lengths": ["abc"]}, "lengths"),
        ({"lengths": [500.5]}, "lengths"),
        ({"lengths": []}, "lengths"),
        ({"depths": [1.5]}, "depths"),
        ({"depths": [-0.1]}, "depths"),
        ({"depths": "half"}, "depths"),
        ({"runs": 0}, "runs"),
        ({"runs": "two"}, "runs"),
        ({"seed": 1.5}, "seed"),
        ({"haystack_file": "/nonexistent/haystack.txt"}, "haystack_file"),
    ],
)
def test_bad_metadata_gives_one_clear_line(meta, key, tok):
    with pytest.raises(ValueError) as info:
        U.docs_from_metadata(tokenizer=tok, **meta)
    message = str(info.value)
    assert f"'{key}'" in message and "\n" not in message
    assert message.startswith("niah_uuid:")


def test_metadata_forms_and_defaults():
    cfg = U.parse_metadata({"pretrained": "x", "dtype": "float32", "version": 1.0, "config_source": "y"})
    assert cfg.lengths == (500, 1000, 1500, 2000) and cfg.depths == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert (cfg.runs, cfg.seed, cfg.haystack_file, cfg.tokenizer) == (2, 0, None, "x")
    cfg = U.parse_metadata({"lengths": "500,1000", "depths": "[0, 1]", "runs": "3", "tokenizer": "t", "pretrained": "p"})
    assert (cfg.lengths, cfg.depths, cfg.runs, cfg.tokenizer) == ((500, 1000), (0.0, 1.0), 3, "t")
    assert U.parse_metadata({"lengths": 700, "depths": 0.5}).lengths == (700,)


def test_haystack_file_is_repeated_to_length(tmp_path, tok):
    path = tmp_path / "hay.txt"
    path.write_text("The sky is blue. Grass is green. Snow is white.\n", encoding="utf-8")
    (doc,) = U.docs_from_metadata(lengths=[300], depths=[0.5], runs=1, haystack_file=str(path), tokenizer=tok)
    assert doc["haystack"] == str(path)
    assert abs(doc["context_tokens"] - 300) <= H.MAX_LENGTH_ERROR
    assert _context(doc).count("Grass is green.") > 10


def test_a_tokenizer_without_chat_template_gets_a_completion_prompt(tok, without_chat_template):
    """A base model's prompt ends in the answer's lead-in, so its next tokens are the UUID; ROUGE-L reads that lead-in
    in front of the response, so a base model's " X." scores as a chat model's "The magic word is X." does."""
    (doc,) = H.build_docs(without_chat_template(tok), [200], [0.5], 1, seed=0)
    assert doc["input"].startswith("Context:\n") and doc["input"].endswith("\nAnswer: The magic word is")
    assert H.SYSTEM_PROMPT not in doc["input"] and "Instruction" not in doc["input"]
    assert (doc["prompt_style"], doc["stop"], doc["answer_prefix"]) == ("completion", ["\n", ". "], "The magic word is")
    s, e = doc["needle_char_span"]
    assert doc["input"][s:e] == doc["needle"]
    assert U.score(f" {doc['uuid']}.", doc) == {"acc": 1.0, "rouge_l": 1.0}
    (chat,) = H.build_docs(tok, [200], [0.5], 1, seed=0)
    assert "prompt_style" not in chat and U.score(f"The magic word is {chat['uuid']}.", chat)["rouge_l"] == 1.0
    assert U.score(f" {chat['uuid']}.", chat)["rouge_l"] < 0.8  # no lead-in said by the prompt: none read back
    with pytest.raises(ValueError, match="prompt_style.*must be one of auto, chat, completion"):
        U.docs_from_metadata(lengths=[200], depths=[0.5], runs=1, tokenizer=tok, prompt_style="base")


def test_process_results_and_per_cell(docs, tmp_path, capsys):
    d0, d1 = docs[0], docs[1]
    assert U.process_results(d0, [d0["needle"]]) == {"acc": 1.0, "rouge_l": pytest.approx(1.0)}
    wrong = U.process_results(d0, ["The magic word is " + d0["uuid"][:-1] + "x."])
    assert wrong["acc"] == 0.0 and 0.8 < wrong["rouge_l"] < 1.0
    rows = [
        {"doc": d0, "acc": 1.0, "rouge_l": 1.0},  # lm-eval --log_samples layout
        {"doc": d1, "filtered_resps": ["no idea"]},  # metrics recomputed from the response
        {"length": 500, "depth": 0.5, "acc": 0.0, "rouge_l": 0.5},  # flat row
    ]
    cells = report.per_cell(rows)
    assert cells[0] == {"length": d0["length"], "depth": d0["depth"], "n": 2, "acc": 0.5, "rouge_l": pytest.approx(0.5)}
    assert cells[1] == {"length": 500, "depth": 0.5, "n": 1, "acc": 0.0, "rouge_l": 0.5}
    table = report.markdown_table(cells, "acc")
    assert table.splitlines()[0] == "| length \\ depth | 0 | 0.5 | mean |"
    assert "| 200 | 0.50 | – | 0.50 |" in table

    samples = tmp_path / "samples_niah_uuid.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    assert report.main([str(samples)]) == 0
    out = capsys.readouterr().out
    assert "3 samples, 2 cells" in out and "### acc" in out and "### rouge_l" in out
    assert report.main([str(tmp_path / "missing.jsonl")]) == 2


def test_lm_eval_loads_task_with_metadata(tok):
    """The YAML parses, metadata reaches custom_dataset, and the hooks resolve (no model needed)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"lengths": [200], "depths": [0.25], "runs": 2, "seed": 3},
    )
    loaded = manager.load(["niah_uuid"])
    (task,) = [t for t in loaded["tasks"].values()] if isinstance(loaded["tasks"], dict) else loaded["tasks"]
    test_docs = list(task.test_docs())
    assert [(d["length"], d["depth"], d["run"], d["seed"]) for d in test_docs] == [(200, 0.25, 0, 3), (200, 0.25, 1, 3)]
    assert task.doc_to_text(test_docs[0]) == test_docs[0]["input"]
    assert task.doc_to_target(test_docs[0]) == test_docs[0]["uuid"]
    assert task.process_results(test_docs[0], [test_docs[0]["needle"]])["acc"] == 1.0
    gen = task.config.generation_kwargs
    assert gen["do_sample"] is False and gen["max_gen_toks"] == 64 and gen["until"] == []
