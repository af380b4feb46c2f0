"""The hotpotqa_sf task: prompts with supporting-fact spans, metadata handling, scoring, lm-eval wiring.

Uses the real embedded SmolLM2 tokenizer (``load_tokenizer(None)``); no model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynheads.metrics.qa import exact_match_score, f1_score
from dynheads.tasks.hotpotqa_sf import utils as U
from dynheads.tasks.hotpotqa_sf.data import load_examples

TASKS_DIR = Path(U.__file__).resolve().parents[1]
N = 20

BRIDGE = {
    "_id": "hand-bridge-1",
    "question": "In which city does the director of Sinister live?",
    "answer": "Los Angeles, California",
    "type": "bridge",
    "level": "easy",
    "supporting_facts": [["Sinister (film)", 1], ["Scott Derrickson", 1]],
    "context": [
        ["Scott Derrickson", ["Scott Derrickson is an American director.", " He lives in Los Angeles, California."]],
        ["Sinister (film)", ["Sinister is a 2012 horror film.", " It was directed by Scott Derrickson.", " "]],
    ],
}
COMPARISON = {
    "_id": "hand-comparison-1",
    "question": "Are Paris and Lyon both capitals?",
    "answer": "no",
    "type": "comparison",
    "level": "medium",
    "supporting_facts": [["Paris", 0], ["Lyon", 0]],
    "context": [
        ["Lyon", ["Lyon is a city in France. "]],
        ["Paris", ["Paris is the capital of France.", " It lies on the Seine."]],
    ],
}


@pytest.fixture(scope="module")
def tok():
    from dynheads.models.harness.loading import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="module")
def records():
    return load_examples(split="dev", limit=N)


@pytest.fixture(scope="module")
def docs(tok):
    return U.docs_from_metadata(n=N, tokenizer=tok)


@pytest.fixture()
def user_file(tmp_path):
    path = tmp_path / "hotpot_subset.json"
    path.write_text(json.dumps([BRIDGE, COMPARISON]), encoding="utf-8")
    return path


def _sentence(record, title, sent_id):
    return dict((t, s) for t, s in reversed(record["context"]))[title][sent_id]


def test_schema_and_order(docs, records):
    assert len(docs) == N
    assert [d["id"] for d in docs] == [r["id"] for r in records]
    for d, r in zip(docs, records):
        assert tuple(d) == U.DOC_KEYS
        assert (d["question"], d["answer"], d["type"], d["level"]) == (r["question"], r["answer"], r["type"], r["level"])
        assert U.supporting_fact_pairs(d) == [(t, i) for t, i in r["supporting_facts"]]
        assert len(d["support_char_spans"]) == len(r["supporting_facts"])
        assert isinstance(d["n_tokens"], int) and d["n_tokens"] > 100
    json.dumps(docs)
    assert {d["type"] for d in docs} == {"bridge", "comparison"}


def test_support_spans_slice_the_supporting_sentences(docs, records):
    for d, r in zip(docs, records):
        cstart, cend = d["context_char_span"]
        for (title, sent_id), (start, end) in zip(r["supporting_facts"], d["support_char_spans"]):
            assert d["input"][start:end] == _sentence(r, title, sent_id).strip()
            assert cstart <= start < end <= cend


def test_prompt_layout(docs, records, tok):
    for d, r in zip(docs, records):
        prompt = d["input"]
        cstart, cend = d["context_char_span"]
        context = prompt[cstart:cend]
        expected = "\n\n".join(f"Title: {t}\n" + "".join(s) for t, s in r["context"])
        assert context == expected
        positions = [context.find(f"Title: {t}\n") for t, _ in r["context"]]
        assert positions == sorted(positions) and positions[0] == 0 and -1 not in positions
        q = prompt.find("Question:\n" + r["question"])
        assert q >= cend
        assert prompt.startswith("<|im_start|>system\n" + U.SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\nContext:\n")
        assert prompt.endswith("Do not explain.<|im_end|>\n<|im_start|>assistant\n")
        assert d["n_tokens"] == len(tok(prompt, add_special_tokens=False)["input_ids"])


def test_support_spans_map_onto_tokens(docs, tok):
    for d in docs:
        offsets = tok(d["input"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        indices = U.support_token_indices(offsets, d)
        assert len(indices) == len(d["support_char_spans"])
        for (start, end), idx in zip(d["support_char_spans"], indices):
            overlapping = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
            assert overlapping and idx == overlapping
            # the tokens cover the whole sentence
            assert offsets[idx[0]][0] <= start and offsets[idx[-1]][1] >= end


def test_missing_supporting_sentence_names_the_example(tmp_path, tok):
    bad = json.loads(json.dumps(BRIDGE))
    bad["_id"] = "broken-42"
    bad["supporting_facts"][1] = ["Scott Derrickson", 5]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([COMPARISON, bad]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'broken-42'.*\['Scott Derrickson', 5\].*2 sentences") as info:
        U.docs_from_metadata(source=str(path), n=2, tokenizer=tok)
    assert "\n" not in str(info.value)
    bad["supporting_facts"][1] = ["No Such Page", 0]
    path.write_text(json.dumps([bad]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'broken-42'.*'No Such Page'.*not a paragraph"):
        U.docs_from_metadata(source=str(path), n=1, tokenizer=tok)


def test_user_file_docs_and_scores(user_file, tok):
    bridge, comparison = U.docs_from_metadata(source=str(user_file), n=2, tokenizer=tok)
    assert bridge["input"][slice(*bridge["context_char_span"])] == (
        "Title: Scott Derrickson\nScott Derrickson is an American director. He lives in Los Angeles, California."
        "\n\nTitle: Sinister (film)\nSinister is a 2012 horror film. It was directed by Scott Derrickson. "
    )
    assert [bridge["input"][s:e] for s, e in bridge["support_char_spans"]] == [
        "It was directed by Scott Derrickson.", "He lives in Los Angeles, California."
    ]
    assert [comparison["input"][s:e] for s, e in comparison["support_char_spans"]] == [
        "Paris is the capital of France.", "Lyon is a city in France."
    ]
    assert comparison["supporting_facts"] == [{"title": "Paris", "sent_id": 0}, {"title": "Lyon", "sent_id": 0}]

    cases = [
        (bridge, "Answer: Los Angeles\nHe lives there.", "Los Angeles"),
        (bridge, "  \"Los Angeles, California.\"  ", "Los Angeles, California."),
        (bridge, "Paris", "Paris"),
        (comparison, "No.", "No."),
        (comparison, "no way", "no way"),  # yes/no rule: F1 = 0 despite the shared token
        (comparison, "yes", "yes"),
    ]
    for doc, response, prediction in cases:
        out = U.process_results(doc, [response])
        kind = doc["type"]
        other = "comparison" if kind == "bridge" else "bridge"
        assert set(out) == {"em", "f1", f"em_{kind}", f"f1_{kind}"}
        assert f"em_{other}" not in out and f"f1_{other}" not in out
        assert out["em"] == exact_match_score(prediction, doc["answer"]) == out[f"em_{kind}"]
        assert out["f1"] == pytest.approx(f1_score(prediction, doc["answer"])[0]) and out["f1"] == out[f"f1_{kind}"]
    assert U.process_results(bridge, ["Los Angeles"])["f1"] == pytest.approx(2 * (1 * 2 / 3) / (1 + 2 / 3))
    assert U.process_results(comparison, ["No."])["em"] == 1.0
    no_way = U.process_results(comparison, ["no way"])
    assert no_way["f1"] == 0.0 and no_way["em"] == 0.0
    assert U.process_results(comparison, [])["em"] == 0.0
    assert set(U.process_results({**bridge, "type": "other"}, ["x"])) == {"em", "f1"}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Los Angeles", "Los Angeles"),
        ("\n\n  Answer: Los Angeles\nBecause he lives there.", "Los Angeles"),
        ("answer : yes", "yes"),
        ("A: no", "no"),
        ("Answer:\nParis", "Paris"),
        ('"Doctor Strange"', "Doctor Strange"),
        ("\u201cDoctor Strange\u201d", "Doctor Strange"),
        ("'yes'", "yes"),
        ('"Sinister", a film', '"Sinister", a film'),  # unmatched outer quotes are kept
        ("Anne: the queen", "Anne: the queen"),  # only Answer:/A: prefixes are dropped
        ("", ""),
        (None, ""),
        ("   \n  ", ""),
        # lead-in lines and prefixes ending in a colon (issue 23); without the colon the sentence is the answer
        ("The answer is:\nParis", "Paris"),
        ("The final answer is: \"Paris\"", "Paris"),
        ("My answer:\n\n  Lyon  ", "Lyon"),
        ("Answer to the question: yes", "yes"),
        ("The answer is Paris", "The answer is Paris"),
        ("Answering: no", "Answering: no"),
    ],
)
def test_extract_answer(response, expected):
    assert U.extract_answer(response) == expected


def test_lead_in_rule_can_be_switched_off_to_count_what_it_changed():
    from dynheads.suite.hotpotqa.stages import lead_in_changed

    assert U.extract_answer("The answer is:\nParis", lead_ins=False) == "The answer is:"
    assert U.extract_answer("Answer:\nParis", lead_ins=False) == "Paris"  # the plain prefix was always dropped
    samples = [{"conditions": {c: {"response": r} for c in ("none", "dynamic", "static", "random")}}
               for r in ("The answer is:\nParis", "Paris", "My answer: Lyon")]
    assert lead_in_changed(samples) == {"none": 2, "dynamic": 2, "static": 2, "random": 2}


def test_lm_eval_loads_task_with_metadata(tok):
    """The YAML parses, metadata reaches custom_dataset, and the hooks resolve (no model needed)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"n": 3, "split": "dev"})
    loaded = manager.load(["hotpotqa_sf"])
    (task,) = [t for t in loaded["tasks"].values()] if isinstance(loaded["tasks"], dict) else loaded["tasks"]
    test_docs = list(task.test_docs())
    assert [d["id"] for d in test_docs] == [r["id"] for r in load_examples(split="dev", limit=3)]
    doc = test_docs[0]
    assert set(doc) == set(U.DOC_KEYS)
    assert doc["supporting_facts"] == [{"title": "Scott Derrickson", "sent_id": 0}, {"title": "Ed Wood", "sent_id": 0}]
    assert task.doc_to_text(doc) == doc["input"]
    assert task.doc_to_target(doc) == doc["answer"] == "yes"
    assert task.process_results(doc, ["Yes."]) == {"em": 1.0, "f1": 1.0, "em_comparison": 1.0, "f1_comparison": 1.0}
    gen = task.config.generation_kwargs
    assert gen["do_sample"] is False and gen["max_gen_toks"] == 32 and gen["until"] == []
    from dynheads.models.rag.measures import RAG_METRICS
    from dynheads.tasks.common import HALLUCINATION_METRICS, HEAD_METRICS, KV_METRICS, PROBE_METRICS

    assert {m["metric"] for m in task.config.metric_list} == {
        "em", "f1", "em_bridge", "f1_bridge", "em_comparison", "f1_comparison", *HEAD_METRICS, *PROBE_METRICS["reasoning"], *RAG_METRICS,
        *HALLUCINATION_METRICS, *KV_METRICS}


@pytest.mark.parametrize(
    ("meta", "key", "error"),
    [
        ({"n": 0}, "n", ValueError),
        ({"n": "x"}, "n", ValueError),
        ({"n": 2.5}, "n", ValueError),
        ({"n": 1001}, "n", ValueError),  # more than the vendored dev set holds
        ({"split": "val"}, "split", ValueError),
        ({"source": "/no/such/file.json"}, "source", FileNotFoundError),
        ({"source": "hf:hotpot_qa"}, "source", ValueError),
        ({"source": 3}, "source", ValueError),
        ({"start": -1}, "start", ValueError),
        ({"start": "x"}, "start", ValueError),
        ({"start": 999, "n": 2}, "n", ValueError),  # past the end of the 1000 vendored examples
    ],
)
def test_bad_metadata_gives_one_clear_line(meta, key, error, tok):
    with pytest.raises(error) as info:
        U.docs_from_metadata(tokenizer=tok, **meta)
    message = str(info.value)
    assert f"'{key}'" in message and "\n" not in message
    assert message.startswith("hotpotqa_sf:")


def test_metadata_forms_and_defaults(user_file):
    cfg = U.parse_metadata({"pretrained": "x", "dtype": "float32", "version": 1.0, "config_source": "y"})
    assert cfg == U.HotpotConfig(source=None, split="dev", n=100, tokenizer="x")
    cfg = U.parse_metadata({"n": "7", "split": "train", "tokenizer": "t", "pretrained": "p", "source": str(user_file)})
    assert cfg == U.HotpotConfig(source=str(user_file), split="train", n=7, tokenizer="t")
    assert U.parse_metadata({"n": "all"}).n is None and U.parse_metadata({"n": None}).n is None
    assert U.parse_metadata({"source": "hf:hotpot_qa/distractor:validation"}).source == "hf:hotpot_qa/distractor:validation"


def test_start_skips_examples(tok, user_file):
    assert U.parse_metadata({}).start == 0 and U.parse_metadata({"start": "3"}).start == 3
    (second,) = U.docs_from_metadata(source=str(user_file), start=1, n=1, tokenizer=tok)
    assert second["id"] == U.docs_from_metadata(source=str(user_file), n=2, tokenizer=tok)[1]["id"]
    tail = [d["id"] for d in U.docs_from_metadata(start=998, n="all", tokenizer=tok)]
    assert tail == [r["id"] for r in load_examples(limit=1000)[998:]]


def test_train_split_and_all(tok, user_file):
    (doc,) = U.docs_from_metadata(n=1, split="train", tokenizer=tok)
    assert doc["id"] == load_examples(split="train", limit=1)[0]["id"]
    assert len(U.docs_from_metadata(source=str(user_file), n="all", tokenizer=tok)) == 2


def test_a_tokenizer_without_chat_template_gets_a_completion_prompt(tok, user_file, without_chat_template):
    """A base model's prompt: context and question ending in "Short answer:", no system turn or instruction to repeat; its
    documents name the stop at the end of the line; asking for chat without a template is one clear error."""
    plain = without_chat_template(tok)
    bridge, _ = U.docs_from_metadata(source=str(user_file), n=2, tokenizer=plain)
    assert bridge["input"].startswith("Context:\nTitle: Scott Derrickson\n")
    assert bridge["input"].endswith("\n\nQuestion: " + bridge["question"] + "\nShort answer:")
    assert U.SYSTEM_PROMPT not in bridge["input"] and "Do not explain" not in bridge["input"]
    assert (bridge["prompt_style"], bridge["stop"], bridge["answer_prefix"]) == ("completion", ["\n"], "")
    assert [bridge["input"][s:e] for s, e in bridge["support_char_spans"]] == [
        "It was directed by Scott Derrickson.", "He lives in Los Angeles, California."
    ]
    chat, _ = U.docs_from_metadata(source=str(user_file), n=2, tokenizer=tok)
    assert set(chat) == set(U.DOC_KEYS) and chat == U.docs_from_metadata(source=str(user_file), n=2, tokenizer=tok,
                                                                          prompt_style="chat")[0]
    forced, _ = U.docs_from_metadata(source=str(user_file), n=2, tokenizer=tok, prompt_style="completion")
    assert forced["input"].endswith("\nShort answer:") and forced["stop"] == ["\n"]
    with pytest.raises(ValueError, match="prompt_style.*has none.*completion"):
        U.docs_from_metadata(source=str(user_file), n=1, tokenizer=plain, prompt_style="chat")
    with pytest.raises(ValueError, match="prompt_style.*is not one of auto, chat, completion"):
        U.docs_from_metadata(source=str(user_file), n=1, tokenizer=tok, prompt_style="base")


def test_gold_paragraphs_keep_only_the_paragraphs_holding_a_supporting_fact():
    from dynheads.tasks.hotpotqa_sf.utils import context_texts, docs_from_metadata

    full = docs_from_metadata(split="dev", n=4)
    gold = docs_from_metadata(split="dev", n=4, paragraphs="gold")
    texts = context_texts(split="dev", n=4, paragraphs="gold")
    for f, g in zip(full, gold):
        titles = {fact["title"] for fact in g["supporting_facts"]}
        context = g["input"][slice(*g["context_char_span"])]
        assert {line[len("Title: "):] for line in context.split("\n") if line.startswith("Title: ")} == titles
        assert texts[g["id"]] == (g["question"], context) and g["n_tokens"] < f["n_tokens"]
        for start, end in g["support_char_spans"]:  # every supporting sentence is still where the spans say
            assert g["input"][start:end] in f["input"]
    with pytest.raises(ValueError, match="paragraphs"):
        docs_from_metadata(split="dev", n=1, paragraphs="some")
