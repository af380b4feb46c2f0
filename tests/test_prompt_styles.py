"""A base model's completion prompt ends its answer with its line: the ``dynheads`` model reads a completion document's
own stops after the answer's first character (a leading line break is not an empty answer), and a chat document's
stops stay lm-eval's ``until``."""

from __future__ import annotations

from types import SimpleNamespace

from dynheads.models.harness.prompts import cut_at_line_stop
from dynheads.tasks.hotpotqa_sf.utils import docs_from_metadata


def test_a_line_stop_counts_after_the_answers_first_character():
    assert cut_at_line_stop(" Paris\nQuestion: next", ["\n"]) == " Paris"
    assert cut_at_line_stop("\n\n Paris\nQuestion", ["\n"]) == "\n\n Paris"
    assert cut_at_line_stop("\n Paris", ["\n"]) is None and cut_at_line_stop("", ["\n"]) is None
    assert cut_at_line_stop(" a. b\n", [".", "\n"]) == " a"


def test_the_model_stops_a_completion_answer_at_its_line_end_and_keeps_a_leading_break(smollm2_lm):
    lm = smollm2_lm
    (doc,) = docs_from_metadata(n=1, prompt_style="completion")
    (chat,) = docs_from_metadata(n=1)
    kwargs = {"until": [], "max_gen_toks": 8, "do_sample": False}
    ids = lambda text: lm.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    p = lm._prepare(SimpleNamespace(args=(doc["input"], kwargs), doc=doc, task_name="hotpotqa_sf", doc_id=0), "", set())
    assert p.line_stops == ("\n",)
    assert not p.stop(ids("\n")) and not p.stop(ids("\n No")) and p.stop(ids("\n No\nQuestion"))
    assert lm.text(ids("\n No\nQuestion: x"), p.until, p.line_stops) == "\n No"
    q = lm._prepare(SimpleNamespace(args=(chat["input"], kwargs), doc=chat, task_name="hotpotqa_sf", doc_id=0), "", set())
    assert q.line_stops == () and not q.stop(ids(" No\nQuestion"))
    assert lm.text(ids(" No\nQuestion"), q.until, q.line_stops) == " No\nQuestion"
