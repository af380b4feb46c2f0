"""lm-eval glue for the ``hotpotqa_sf`` task: HotpotQA (distractor setting) with supporting-fact spans.

Why
---
Section 4 of "Retrieval Heads are Dynamic" (Lin et al.) moves from needle-in-a-haystack to multi-hop QA
on HotpotQA, where "retrieval" means attention on the *supporting-fact sentences* rather than on a
needle. A model-side tracer therefore needs, for every prompt, the exact characters of each
supporting sentence inside the text the model actually receives (chat template included). This module
builds those prompts and records the spans while it builds them, so nothing has to be searched for
afterwards (a sentence may occur in two paragraphs; a position recorded at build time cannot be
ambiguous). Answers are scored with the official HotpotQA EM/F1 (:mod:`dynheads.metrics.qa`).

``hotpotqa_sf.yaml`` names the hooks by package path (``!function dynheads.tasks.hotpotqa_sf.utils.x``);
the module also loads the lm-eval way, by file path, because all project imports are absolute.

Metadata (``custom_dataset(**metadata)``)
-----------------------------------------
lm-eval passes the YAML ``metadata:`` block, overridden by ``--model_args`` (``pretrained=...``), then by
``--metadata '{...}'``. Keys read here (all others are ignored, since model arguments share the dict):

- ``source``: ``None`` (default) = the vendored file of ``split``; a local file path (official HotpotQA
  JSON list, ``.json``/``.json.gz``, or JSON Lines in the official or Hugging Face columnar layout); or
  ``"hf:NAME/CONFIG:SPLIT"`` (e.g. ``hf:hotpot_qa/distractor:validation``, needs network or a cache).
  Loading is :func:`dynheads.tasks.hotpotqa_sf.data.load_examples`.
- ``split``: ``"dev"`` (default, 1000 vendored examples) or ``"train"`` (601); selects the vendored
  file and is ignored when ``source`` is given.
- ``n``: the first ``n`` examples of the source (default 100); ``"all"`` or ``null`` = every example.
  Asking for more examples than the source holds is an error (no silent shortfall).
- ``start``: skip the first ``start`` examples (default 0), so ``{"start": 8, "n": 8}`` is examples
  8-15; ``run_suite.py`` runs a long evaluation as such chunks to resume where it stopped.
- ``paragraphs``: ``"all"`` (default: the distractor setting, gold and distractor paragraphs) or ``"gold"``
  (only the paragraphs that hold a supporting fact, in the example's order): the hallucination study's
  faithfulness label asks whether an answer is in the context it was given, which needs a context that holds it.
- ``prompt_style``: ``auto`` (default), ``chat`` or ``completion`` (see "Prompt").
- ``tokenizer`` (else ``pretrained``): renders the chat template and counts ``n_tokens``, resolved by
  :func:`dynheads.models.harness.loading.load_tokenizer` (``None`` = embedded SmolLM2). A tokenizer object is
  accepted when calling from Python.

Bad values raise a one-line ``ValueError`` (``FileNotFoundError`` for a missing ``source`` file) that
names the key and shows a fix.

Prompt
------
Paragraph text: ``"Title: {title}\\n"`` followed by the sentences joined with ``""`` as stored (HotpotQA
sentences carry their own leading spaces); paragraphs in the example's order, separated by one blank line
(``"\\n\\n"``). That block is the *context*. It goes into :data:`USER_TEMPLATE` after ``Context:`` and
before the question and a short-answer instruction, with :data:`SYSTEM_PROMPT` as the system turn,
rendered by the tokenizer's chat template (``add_generation_prompt=True``). As in ``niah_uuid``: a
template that rejects a system turn gets the system text prepended to the user turn, and a tokenizer
without a chat template (a base model) gets :data:`COMPLETION_TEMPLATE` (context, question, ``"Short answer:"``; metadata
``prompt_style``: ``auto`` by default, ``chat``, ``completion``), and its documents carry ``prompt_style``, ``stop``
(``["\\n"]``, added by the ``dynheads`` model to the task's stop sequences) and ``answer_prefix`` (empty). The prompt
already carries the template, so no ``--apply_chat_template`` is needed.

Document schema (one per example, in source order; JSON-serialisable and ``datasets``-friendly)
----------------------------------------------------------------------------------------------
- ``input``: the full rendered prompt (what the model receives).
- ``id``, ``question``, ``answer``, ``type`` (``bridge``/``comparison``), ``level``: from the example.
- ``supporting_facts``: ``[{"title": str, "sent_id": int}, ...]`` in the example's order. (Not
  ``[[title, sent_id]]``: Arrow cannot store a list mixing strings and integers, and lm-eval turns the
  documents into a ``datasets.Dataset``. :func:`supporting_fact_pairs` gives ``(title, sent_id)`` tuples.)
- ``support_char_spans``: ``[[start, end], ...]``, one per supporting fact in the same order;
  ``input[start:end]`` is that sentence's text without its leading/trailing whitespace. When a title
  occurs twice in the context, the first paragraph is used (as ``data.missing_supporting_facts`` does).
- ``context_char_span``: ``[start, end]`` of the paragraphs block in ``input``.
- ``n_tokens``: tokens of ``input`` (``add_special_tokens=False``).

A supporting fact whose title is not a paragraph title, or whose sentence index is past the paragraph,
raises ``ValueError`` naming the example id and the fact. :func:`support_token_indices` maps the
character spans onto token positions (what the model side attends to).

Metrics per document
--------------------
The answer is taken from the generation by :func:`extract_answer`, then scored with the official
``exact_match_score`` (``em``) and ``f1_score`` (``f1``, its first element). ``em_bridge``/``f1_bridge``
are added only for bridge questions and ``em_comparison``/``f1_comparison`` only for comparison questions,
so lm-eval's ``mean`` of each is over that type only (lm-eval logs a warning that the metrics were
scored on different numbers of documents; that is intended).
"""

from __future__ import annotations

from functools import partial

import math
import os
import re
from typing import Any, Mapping, NamedTuple, Sequence

from ...metrics.qa import exact_match_score, f1_score
from ..common import (PROMPT_STYLES, completion_fields, count_tokens, head_metrics, metadata_error, prompt_style,
                      render_dialogue, tokenizer_from_spec)
from .data import HF_EXAMPLE, HF_PREFIX, VENDORED, load_examples, parse_hf_spec

TASK = "hotpotqa_sf"
SYSTEM_PROMPT = (
    "You are a helpful assistant that answers questions using the given paragraphs. "
    "Answer with a short phrase only (yes or no for yes/no questions)."
)
USER_TEMPLATE = (
    "Context:\n{context}\n\nQuestion:\n{question}\nInstruction:\n"
    "Answer the question with a short phrase taken from the paragraphs, or with yes or no. Do not explain."
)
# A base model's prompt (prompt_style "completion"): context and question, no system turn or instruction, ending in
# "Short answer:" so that the next tokens are the answer; the dynheads model stops it at the end of the line. Chosen
# on Gemma-3-270M over the first 12 dev examples (EM 0.17, F1 0.25) against "Answer (a short phrase ...):" (0, 0)
# and "Q: / A:" (0, 0.04), which it answered with whole sentences or by repeating the prompt.
COMPLETION_TEMPLATE = "Context:\n{context}\n\nQuestion: {question}\nShort answer:"
PARAGRAPH_TEMPLATE = "Title: {title}\n"  # followed directly by the sentences
PARAGRAPH_SEPARATOR = "\n\n"
DEFAULT_N = 100
PARAGRAPHS = ("all", "gold")
DEFAULT_SPLIT = "dev"
# an answer is hallucinated (hallucination=absence, the suite's hallucination stage) below this F1: sharing less than
# half of its normalised tokens with the gold answer (harmonic mean), it is mostly not that answer
HALLUCINATION_F1 = 0.5
QUESTION_TYPES = ("bridge", "comparison")
DOC_KEYS = (
    "input", "id", "question", "answer", "type", "level", "supporting_facts", "support_char_spans",
    "context_char_span", "n_tokens",
)

__all__ = [
    "DOC_KEYS",
    "SYSTEM_PROMPT",
    "USER_TEMPLATE",
    "HotpotConfig",
    "build_context",
    "build_doc",
    "docs_from_metadata",
    "extract_answer",
    "hotpotqa_sf_dataset",
    "parse_metadata",
    "process_results",
    "render_prompt",
    "score",
    "support_token_indices",
    "supporting_fact_pairs",
    "context_texts",
    "gold_only",
]


class HotpotConfig(NamedTuple):
    source: str | None = None
    split: str = DEFAULT_SPLIT
    n: int | None = DEFAULT_N  # None = all examples
    tokenizer: Any = None  # name/path/None, or a tokenizer object
    start: int = 0  # skip this many examples first (run_suite splits a run into resumable chunks)
    paragraphs: str = "all"  # "gold": only the paragraphs holding a supporting fact
    prompt_style: str = "auto"  # chat with a chat template, else completion (tasks.common.prompt_style)


# -------------------------------------------------------------------------------------------- metadata


_bad = partial(metadata_error, TASK)


def _n(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number != int(number):
        raise _bad("n", value, 'must be a positive integer or "all"', "100")
    if number < 1:
        raise _bad("n", value, "must be at least 1", "100")
    return int(number)


def _start(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise _bad("start", value, "must be a non-negative integer", "0")
    return int(value)


def _source(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _bad("source", value, "must be a file path or 'hf:NAME/CONFIG:SPLIT'", '"/path/to/hotpot_dev_distractor_v1.json"')
    if value.startswith(HF_PREFIX):
        try:
            parse_hf_spec(value)
        except ValueError:
            raise _bad("source", value, "is not a valid 'hf:NAME/CONFIG:SPLIT' spec", f'"{HF_EXAMPLE}"') from None
        return value
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{TASK}: metadata 'source' = {value!r} is not an existing file; pass a HotpotQA file (official "
            "JSON list, .json.gz or JSON Lines), e.g. --metadata '{\"source\": \"/path/to/hotpot_dev_distractor_v1.json\"}', "
            f"or '{HF_EXAMPLE}', or leave it out for the vendored dev set"
        )
    return path


def parse_metadata(meta: Mapping[str, Any] | None = None) -> HotpotConfig:
    """Validate the task's metadata keys (see module docstring); one-line errors on bad input."""
    meta = dict(meta or {})
    split = meta.get("split", DEFAULT_SPLIT)
    if split is None:
        split = DEFAULT_SPLIT
    if not isinstance(split, str) or split not in VENDORED:
        raise _bad("split", split, f"is not a vendored split (one of {sorted(VENDORED)})", '"dev"')
    n = _n(meta.get("n", DEFAULT_N))
    source = _source(meta.get("source"))
    tokenizer = meta.get("tokenizer") or meta.get("pretrained")
    paragraphs = meta.get("paragraphs") or "all"
    if paragraphs not in PARAGRAPHS:
        raise _bad("paragraphs", paragraphs, f"is not one of {', '.join(PARAGRAPHS)}", '"gold"')
    style = meta.get("prompt_style") or "auto"
    if style not in PROMPT_STYLES:
        raise _bad("prompt_style", style, f"is not one of {', '.join(PROMPT_STYLES)}", '"auto"')
    return HotpotConfig(source, split, n, tokenizer, _start(meta.get("start", 0)), paragraphs, style)


_tokenizer = partial(tokenizer_from_spec, task=TASK)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _examples(cfg: HotpotConfig) -> list[dict]:
    origin = cfg.source if cfg.source is not None else f"vendored {cfg.split}"
    try:
        records = load_examples(cfg.source, split=cfg.split, limit=None if cfg.n is None else cfg.start + cfg.n)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{TASK}: metadata 'source' = {origin!r}: {_one_line(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"{TASK}: metadata 'source' = {origin!r}: {_one_line(exc)}") from None
    held = len(records)
    records = records[cfg.start :]
    if cfg.n is not None and len(records) < cfg.n:
        fits = held - cfg.start
        raise _bad("n", cfg.n, f"with start {cfg.start} asks for more examples than source {origin!r} holds ({held})",
                   f'{fits} or "all"' if fits > 0 else '"all" (and a smaller start)')
    if not records:
        raise ValueError(f"{TASK}: metadata 'source' = {origin!r} holds no examples; pass a non-empty HotpotQA file")
    return records


# ----------------------------------------------------------------------------------------------- docs


def render_prompt(tokenizer: Any, context: str, question: str, style: str = "chat") -> str:
    """The task's dialogue rendered for ``tokenizer`` (``style`` "chat"), or a base model's completion prompt
    (``style`` "completion"; module docstring)."""
    if style == "completion":
        return COMPLETION_TEMPLATE.format(context=context, question=question)
    return render_dialogue(tokenizer, SYSTEM_PROMPT, USER_TEMPLATE.format(context=context, question=question))


def _describe_missing(record: Mapping, title: str, sent_id: Any, paragraphs: Mapping[str, int]) -> str:
    if title not in paragraphs:
        why = "its title is not a paragraph of the context"
    else:
        count = len(record["context"][paragraphs[title]][1])
        why = f"paragraph {title!r} has {count} sentences (indices 0..{count - 1})"
    return (
        f"{TASK}: example id {record['id']!r}: supporting fact [{title!r}, {sent_id!r}] cannot be located: "
        f"{why}; fix the example or drop it from the source file"
    )


def build_context(record: Mapping) -> tuple[str, list[list[int]]]:
    """The paragraphs block of a canonical record and each supporting fact's ``[start, end]`` in it.

    Spans exclude the sentence's leading/trailing whitespace. Raises ``ValueError`` (naming the id and the
    fact) for a fact that points at no paragraph or past a paragraph's sentences.
    """
    parts: list[str] = []
    offset = 0
    sentence_spans: list[list[tuple[int, int]]] = []  # per paragraph, per sentence (stripped)
    for p, (title, sentences) in enumerate(record["context"]):
        if p:
            parts.append(PARAGRAPH_SEPARATOR)
            offset += len(PARAGRAPH_SEPARATOR)
        head = PARAGRAPH_TEMPLATE.format(title=title)
        parts.append(head)
        offset += len(head)
        spans = []
        for sentence in sentences:
            lead = len(sentence) - len(sentence.lstrip())
            spans.append((offset + lead, offset + len(sentence.rstrip()) if sentence.strip() else offset + lead))
            parts.append(sentence)
            offset += len(sentence)
        sentence_spans.append(spans)
    context = "".join(parts)
    assert len(context) == offset
    paragraphs: dict[str, int] = {}
    for p, (title, _) in enumerate(record["context"]):
        paragraphs.setdefault(title, p)  # first paragraph of a repeated title wins
    support: list[list[int]] = []
    for title, sent_id in record["supporting_facts"]:
        p = paragraphs.get(title)
        if p is None or not (isinstance(sent_id, int) and 0 <= sent_id < len(sentence_spans[p])):
            raise ValueError(_describe_missing(record, title, sent_id, paragraphs))
        start, end = sentence_spans[p][sent_id]
        if end <= start:
            raise ValueError(
                f"{TASK}: example id {record['id']!r}: supporting fact [{title!r}, {sent_id}] is an empty "
                "sentence, so no token can carry it; fix the example or drop it from the source file"
            )
        support.append([start, end])
    return context, support


def gold_only(record: Mapping) -> dict[str, Any]:
    """The record with only the paragraphs that hold a supporting fact (the gold paragraphs), in its order."""
    titles = {title for title, _ in record["supporting_facts"]}
    return {**record, "context": [paragraph for paragraph in record["context"] if paragraph[0] in titles]}


def build_doc(record: Mapping, tokenizer: Any, paragraphs: str = "all", style: str = "auto") -> dict[str, Any]:
    """One task document from a canonical record (schema: module docstring); ``paragraphs="gold"`` keeps only the
    paragraphs holding a supporting fact; ``style``: the prompt style (``auto``: chat with a chat template, else
    completion)."""
    if paragraphs == "gold":
        record = gold_only(record)
    style = prompt_style(tokenizer, style, TASK)
    context, spans = build_context(record)
    prompt = render_prompt(tokenizer, context, record["question"], style)
    start = prompt.find(context)
    if start < 0:
        raise ValueError(
            f"{TASK}: the chat template of {getattr(tokenizer, 'name_or_path', tokenizer)!r} altered the "
            f"paragraph text of example id {record['id']!r}, so the supporting-fact spans cannot be placed"
        )
    support = [[start + s, start + e] for s, e in spans]
    return {
        "input": prompt,
        "id": record["id"],
        "question": record["question"],
        "answer": record["answer"],
        "type": record["type"],
        "level": record["level"],
        "supporting_facts": [{"title": t, "sent_id": int(i)} for t, i in record["supporting_facts"]],
        "support_char_spans": support,
        "context_char_span": [start, start + len(context)],
        "n_tokens": count_tokens(tokenizer, prompt),
        **completion_fields(style),
    }


def docs_from_metadata(**metadata: Any) -> list[dict[str, Any]]:
    """The task's documents as plain dicts (no ``datasets`` needed); same keys lm-eval passes."""
    cfg = parse_metadata(metadata)
    records = _examples(cfg)
    tokenizer = _tokenizer(cfg.tokenizer)
    return [build_doc(record, tokenizer, cfg.paragraphs, cfg.prompt_style) for record in records]


def context_texts(**metadata: Any) -> dict[str, tuple[str, str]]:
    """Each example's question and context block (the paragraphs the model is given) by example id, for the same
    metadata as :func:`docs_from_metadata` but without rendering or tokenising a prompt."""
    cfg = parse_metadata(metadata)
    return {r["id"]: (r["question"], build_context(gold_only(r) if cfg.paragraphs == "gold" else r)[0])
            for r in _examples(cfg)}


def hotpotqa_sf_dataset(**metadata: Any):
    """``custom_dataset`` entry point: ``{"test": datasets.Dataset}``."""
    import datasets

    return {"test": datasets.Dataset.from_list(docs_from_metadata(**metadata), split=datasets.Split.TEST)}


def supporting_fact_pairs(doc: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``[(title, sent_id), ...]`` of a document (the form :func:`dynheads.metrics.qa.supporting_fact_scores`
    takes); accepts the document's dict entries and ``[title, sent_id]`` pairs alike."""
    out = []
    for fact in doc["supporting_facts"]:
        if isinstance(fact, Mapping):
            out.append((fact["title"], int(fact["sent_id"])))
        else:
            title, sent_id = fact
            out.append((title, int(sent_id)))
    return out


def support_token_indices(offsets: Sequence[Sequence[int]], doc: Mapping[str, Any]) -> list[list[int]]:
    """Token indices of each supporting fact, in ``supporting_facts`` order.

    ``offsets`` is the tokenizer's ``offset_mapping`` for ``doc["input"]`` (as the model encodes it);
    a token belongs to a fact when its character span overlaps the fact's span
    (:func:`dynheads.metrics.retrieval.span_token_indices`). Raises ``ValueError`` if a fact overlaps no
    token (the offsets are not for this input).
    """
    from ...metrics.retrieval import span_token_indices

    out = []
    for fact, (start, end) in zip(supporting_fact_pairs(doc), doc["support_char_spans"]):
        indices = span_token_indices(offsets, int(start), int(end))
        if not indices:
            raise ValueError(
                f"{TASK}: supporting fact {list(fact)!r} of example id {doc['id']!r} overlaps no token; "
                "pass the offset_mapping of this document's 'input'"
            )
        out.append(indices)
    return out


# -------------------------------------------------------------------------------------------- scoring

_ANSWER_PREFIX = re.compile(r"^(?:answer|a)\s*:\s*", re.IGNORECASE)
# A lead-in sentence before the answer, ending in a colon (issue 23): "The answer is:", "The final answer is:",
# "My answer:", "Short answer:", "Answer to the question:". Only with the colon: "The answer is Paris" is left to the
# official normalisation, which scores the words it shares with the gold.
_LEAD_IN = re.compile(r"^(?:(?:the|my|our|final|short|correct|best)\s+)*answer(?:\s+(?:is|would be|to (?:the|this|your) "
                      r"question(?: is)?))?\s*:\s*", re.IGNORECASE)
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """``text[start:end]`` without surrounding whitespace, as indices."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def answer_span(response: str | None, lead_ins: bool = True) -> tuple[int, int]:
    """Where the short answer lies in a generation, as ``[start, end)`` character offsets (empty at the end when
    there is none): :func:`extract_answer` is ``response[start:end]``; the hallucination detectors read the steps
    that wrote these characters.

    Rules, in order: take the first line that is not blank; drop a leading ``Answer:`` or ``A:`` prefix
    (any case, spaces around the colon allowed) or, with ``lead_ins`` (default), a lead-in sentence ending in a
    colon (``The answer is:``, ``The final answer is:``, ``My answer:``; :data:`_LEAD_IN`); strip surrounding
    whitespace and a matching pair of surrounding quotes (``"…"``, ``'…'``, backticks, curly or guillemet quotes;
    repeated). If nothing is left of that line (``"The answer is:"`` alone, the answer on the next line), the next
    non-blank line is used. Only the first line's prefix is dropped. Anything else (trailing punctuation,
    articles, case) is left to the official normalisation. ``lead_ins=False`` is the rule before issue 23, kept to
    count the answers the lead-in rule changes.
    """
    if not response:
        return 0, 0
    prefixed, offset = False, 0
    for line in response.splitlines(keepends=True):  # every line separator is whitespace, stripped below
        a, b = _strip(response, offset, offset + len(line))
        offset += len(line)
        if a == b:
            continue
        match = _ANSWER_PREFIX.match(response[a:b]) or (_LEAD_IN.match(response[a:b]) if lead_ins else None)
        if match and not prefixed:
            a, prefixed = a + match.end(), True
        a, b = _strip(response, a, b)
        while b - a >= 2 and _QUOTE_PAIRS.get(response[a]) == response[b - 1]:
            a, b = _strip(response, a + 1, b - 1)
        if b > a:
            return a, b
    return len(response), len(response)


def extract_answer(response: str | None, lead_ins: bool = True) -> str:
    """The short answer in a generation (rules: :func:`answer_span`); ``None`` gives ``""``."""
    start, end = answer_span(response, lead_ins)
    return (response or "")[start:end]


def score(response: str | None, doc: Mapping[str, Any]) -> dict[str, float]:
    """``em``/``f1`` of a response against the gold answer, plus ``em_<type>``/``f1_<type>`` for the
    document's question type (bridge or comparison only)."""
    prediction = extract_answer(response)
    gold = doc["answer"]
    em = exact_match_score(prediction, gold)
    f1 = f1_score(prediction, gold)[0]
    out = {"em": em, "f1": f1}
    if doc.get("type") in QUESTION_TYPES:
        out[f"em_{doc['type']}"] = em
        out[f"f1_{doc['type']}"] = f1
    return out


def process_results(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
    """lm-eval ``process_results``: ``results[0]`` is the generated text.

    Under ``--model dynheads`` the per-step Eq. 2 reasoning heads add the dynamism statistics
    (:func:`dynheads.tasks.common.head_metrics`); under other models they are absent.
    """
    response = results[0] if results else ""
    values = score(response, doc)
    return {**values, **head_metrics(doc, (answer_span(response), values["f1"] < HALLUCINATION_F1))}
