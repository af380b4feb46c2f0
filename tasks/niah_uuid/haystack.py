"""Needle-in-a-haystack documents with UUID needles (paper Appendix A.1).

Everything here is deterministic and free of lm-eval; ``utils.py`` wraps it for the harness.

Definitions
-----------
- **Needle**: ``"The magic word is {UUID}."`` with a fresh UUID4 per document, drawn from
  ``random.Random(f"niah_uuid:{seed}:{length}:{depth!r}:{run}")`` (a *string* seed, hashed with
  SHA-512 by :mod:`random`, so it is identical across processes and ``PYTHONHASHSEED`` values).
  **Question**: ``"What is the magic word?"``.
- **Haystack source**: by default the Wikipedia paragraphs of the vendored HotpotQA dev file
  (``tasks/data/hotpotqa/hotpot_dev_distractor_1000.json.gz``, CC BY-SA 4.0, Yang et al. 2018): every
  record's ``context`` paragraphs in file order, first occurrence of each title only, sentences
  joined with ``""`` (they carry their own leading spaces) and paragraphs with ``"\\n\\n"``. Any UTF-8
  text file can replace it (metadata ``haystack_file``). A source shorter than needed is repeated,
  joined with ``"\\n\\n"``.
- **Haystack window**: every document reads the source from its own paragraph, drawn from
  ``random.Random(f"niah_haystack:{seed}:{length}:{depth!r}")`` (the cell's stream; run ``r`` takes the
  ``r``-th *distinct* paragraph of it, so the runs of one cell never share a start) and wraps around to
  the source's beginning. Why: with one shared window every document of a cell had the same context and
  needle position (only the UUID differed), so a probe tested on one run had twins in training.
  Paragraph starts keep the window's first sentence whole; the vendored source has ~9.8K paragraphs,
  so two cells (or seeds) start at the same one with probability ~1e-4 per pair.
- **Target length** ``length`` counts the tokens of the *context section* only, i.e. the haystack with
  the needle inserted, tokenized on its own with ``add_special_tokens=False`` by the evaluated model's
  tokenizer. The system prompt, question, instruction and chat-template markup come on top (the
  document's ``n_tokens`` is the count for the whole rendered prompt). The haystack is truncated at
  token level so that the context hits ``length`` exactly; re-tokenisation at the truncation and
  insertion seams can leave it off by a token or two (``MAX_LENGTH_ERROR`` bounds it; tests check it).
- **Depth** ``d`` in [0, 1]: the needle goes ``d`` of the way through the truncated haystack, measured in
  tokens, then backs up to the nearest preceding end of sentence (a ``.`` followed by whitespace) and
  is inserted there as its own sentence: ``"... end of sentence. The magic word is X. Next ..."``.
  ``d = 0`` puts it first (no sentence end before the point also means "first"). ``d = 1`` applies the
  same rule from the very end, so the needle follows the last *complete* sentence and only the
  truncated tail of one sentence (cut at token level) comes after it; this keeps the needle a
  sentence of its own at every depth (Kamradt's original code instead appends it after the cut
  mid-word, e.g. ``"... actor Bela L The magic word is ..."``).
- **Prompt**: the paper's dialogue template rendered with the tokenizer's chat template
  (``apply_chat_template(..., tokenize=False, add_generation_prompt=True)``); if the template rejects a
  system turn the system text is prepended to the user turn. A tokenizer without a chat template (a base model)
  gets :data:`COMPLETION_TEMPLATE` instead (metadata ``prompt_style``: ``auto`` by default, ``chat``,
  ``completion``): context and question, ending in ``"Answer: The magic word is"``; such a document also carries
  ``prompt_style``, ``stop`` (``["\\n", ". "]``: the end of the line or of the sentence, which the ``dynheads``
  model reads after the answer's first character) and ``answer_prefix``.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..common import completion_fields, count_tokens, prompt_style, render_dialogue
from ..hotpotqa_sf.data import load_examples

NEEDLE_TEMPLATE = "The magic word is {uuid}."
QUESTION = "What is the magic word?"
SYSTEM_PROMPT = "You are a helpful AI bot that answers questions for a user. Keep your response short and direct."
USER_TEMPLATE = (
    "Context:\n{context}\n\nQuestion:\n{question}\nInstruction:\n"
    "Don't give information outside the document or repeat your findings."
)
# A base model's prompt (prompt_style "completion"): the same context and question, no system turn or instruction,
# ending in the answer's lead-in, so that the next tokens are the answer (the paper's chat template has the
# instruct model say this lead-in itself).
ANSWER_PREFIX = "The magic word is"
# the answer is one sentence: a base model goes on after it on the same line (Gemma-3-270M did, to the token limit)
COMPLETION_STOPS = ("\n", ". ")
COMPLETION_TEMPLATE = "Context:\n{context}\n\nQuestion:\n{question}\nAnswer: " + ANSWER_PREFIX

DEFAULT_HAYSTACK = "hotpotqa"

#: Largest |context tokens - target length| build_context accepts without raising.
MAX_LENGTH_ERROR = 3

_SENTENCE_END = re.compile(r"\.(?=\s)")
_PARAGRAPH = re.compile(r"\n\s*\n")

__all__ = [
    "NEEDLE_TEMPLATE",
    "QUESTION",
    "SYSTEM_PROMPT",
    "USER_TEMPLATE",
    "Haystack",
    "build_context",
    "build_docs",
    "count_tokens",
    "hotpotqa_text",
    "load_haystack_text",
    "make_uuid",
    "render_prompt",
    "rotated",
    "window_start",
]


@lru_cache(maxsize=4)
def hotpotqa_text() -> str:
    """The default haystack: deduplicated HotpotQA Wikipedia paragraphs of the vendored dev file, read through
    the HotpotQA task's loader (see module docstring)."""
    records = load_examples(split="dev")
    seen: set[str] = set()
    paragraphs: list[str] = []
    for record in records:
        for title, sentences in record["context"]:
            if title in seen:
                continue
            seen.add(title)
            text = "".join(sentences).strip()
            if text:
                paragraphs.append(text)
    return "\n\n".join(paragraphs)


def load_haystack_text(haystack_file: str | None = None) -> str:
    """Haystack source text: HotpotQA by default, else the UTF-8 file ``haystack_file``."""
    if haystack_file in (None, "", DEFAULT_HAYSTACK):
        return hotpotqa_text()
    path = Path(str(haystack_file)).expanduser()
    if not path.is_file():
        raise ValueError(
            f"niah_uuid: metadata 'haystack_file' = {str(haystack_file)!r} is not a readable file; "
            "pass a path to a UTF-8 text file, or leave it out to use the bundled HotpotQA paragraphs"
        )
    text = path.read_text(encoding="utf-8").strip()
    if not _SENTENCE_END.search(text + " ") or len(text) < 20:
        raise ValueError(
            f"niah_uuid: metadata 'haystack_file' = {str(haystack_file)!r} holds no sentence text "
            "(it needs prose with '.'-terminated sentences); pass a different file"
        )
    return text


def make_uuid(seed: int, length: int, depth: float, run: int) -> str:
    """Deterministic UUID4 string for one grid cell and run."""
    rng = random.Random(f"niah_uuid:{int(seed)}:{int(length)}:{float(depth)!r}:{int(run)}")
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def render_prompt(tokenizer: Any, context: str, question: str = QUESTION, style: str = "chat") -> str:
    """The paper's NIAH dialogue with ``context``, rendered for ``tokenizer`` (``style`` "chat"), or the completion
    prompt of a base model (``style`` "completion"; see module docstring)."""
    if style == "completion":
        return COMPLETION_TEMPLATE.format(context=context, question=question)
    return render_dialogue(tokenizer, SYSTEM_PROMPT, USER_TEMPLATE.format(context=context, question=question))


@lru_cache(maxsize=4)
def _paragraph_starts(text: str) -> tuple[int, ...]:
    return (0, *(m.end() for m in _PARAGRAPH.finditer(text)))


def window_start(text: str, seed: int, length: int, depth: float, run: int) -> int:
    """Character offset of document ``(seed, length, depth, run)``'s haystack window in ``text``: the start of a
    paragraph, the ``run``-th distinct draw of the cell's seeded stream (see module docstring)."""
    starts = _paragraph_starts(text)
    rng = random.Random(f"niah_haystack:{int(seed)}:{int(length)}:{float(depth)!r}")
    drawn: list[int] = []
    while len(drawn) <= int(run):
        if len(drawn) == len(starts):  # a source with fewer paragraphs than runs: starts repeat from here on
            drawn.append(drawn[int(run) % len(starts)])
            continue
        start = starts[rng.randrange(len(starts))]
        if start not in drawn:
            drawn.append(start)
    return drawn[int(run)]


def rotated(text: str, start: int) -> str:
    """``text`` read from character ``start``, wrapping around to its beginning."""
    return text if start <= 0 else text[start:] + "\n\n" + text[:start].rstrip()


@dataclass
class Haystack:
    """A source text and its token ids, grown lazily by repetition to any length."""

    text: str
    tokenizer: Any
    _ids: list[int] = field(default_factory=list, repr=False)
    _window: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.text = self.text.strip()
        if not self.text:
            raise ValueError("niah_uuid: the haystack text is empty")

    def ids(self, n: int) -> list[int]:
        """The first ``n`` token ids of the (repeated) source."""
        margin = 16  # tokens near a cut may merge differently; keep them out of the answer
        chars = max(self._window, 8 * (n + margin) + 256)
        while len(self._ids) < n + margin:
            reps = -(-chars // (len(self.text) + 2))  # ceil
            window = "\n\n".join([self.text] * reps)[:chars]
            self._ids = self.tokenizer(window, add_special_tokens=False, verbose=False)["input_ids"]
            self._window = chars
            chars *= 2
        return self._ids[:n]

    def decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return text.rstrip("\ufffd")  # a multi-byte character cut in half by token truncation


def _insert_needle(haystack_ids: Sequence[int], hay: Haystack, depth: float, needle: str) -> tuple[str, int]:
    """Context text and the needle's start offset in it."""
    text = hay.decode(haystack_ids).rstrip()
    if depth >= 1.0:
        point = len(text) + 1  # the final '.' counts as a sentence end too
        text_for_search = text + " "
    else:
        point = len(hay.decode(haystack_ids[: round(depth * len(haystack_ids))])) if depth > 0 else 0
        point = min(point, len(text))
        text_for_search = text
    cut = None
    for match in _SENTENCE_END.finditer(text_for_search, 0, point):
        cut = match.end()  # just after the '.'
    if cut is None:
        return needle + " " + text.lstrip(), 0
    if cut >= len(text):  # haystack ends exactly at a sentence end
        return text + " " + needle, cut + 1
    return text[:cut] + " " + needle + text[cut:], cut + 1


def build_context(tokenizer: Any, hay: Haystack, length: int, depth: float, needle: str) -> tuple[str, int, int]:
    """Haystack of ``length`` context tokens with ``needle`` at ``depth``.

    Returns ``(context, needle_start, n_context_tokens)`` with ``context[needle_start:][:len(needle)]
    == needle``. The haystack token budget is corrected a few times for seam effects; the closest
    result is kept and must be within ``MAX_LENGTH_ERROR`` tokens.
    """
    budget = length - count_tokens(tokenizer, " " + needle)
    best: tuple[int, str, int, int] | None = None
    tried: set[int] = set()
    for _ in range(8):
        budget = max(budget, 0)
        if budget in tried:
            break
        tried.add(budget)
        context, start = _insert_needle(hay.ids(budget), hay, depth, needle)
        n = count_tokens(tokenizer, context)
        score = abs(n - length) * 2 + (n > length)  # prefer exact, then one short over one long
        if best is None or score < best[0]:
            best = (score, context, start, n)
        if n == length:
            break
        budget += length - n
    assert best is not None
    _, context, start, n = best
    if abs(n - length) > MAX_LENGTH_ERROR:
        raise ValueError(
            f"niah_uuid: could not build a {length}-token context (got {n}); "
            "use a larger length (the needle alone is about 40 tokens)"
        )
    return context, start, n


def build_docs(
    tokenizer: Any,
    lengths: Iterable[int],
    depths: Iterable[float],
    runs: int,
    seed: int = 0,
    haystack_text: str | None = None,
    haystack_name: str = DEFAULT_HAYSTACK,
    style: str = "auto",
) -> list[dict[str, Any]]:
    """One document per (length, depth, run), in that nesting order. Schema: see ``utils.py``. ``style``: the prompt
    style (``auto``: chat with a chat template, else completion)."""
    style = prompt_style(tokenizer, style, "niah_uuid")
    source = (haystack_text if haystack_text is not None else hotpotqa_text()).strip()
    docs: list[dict[str, Any]] = []
    for length in lengths:
        for depth in depths:
            depth = float(depth)
            for run in range(int(runs)):
                start_char = window_start(source, seed, int(length), depth, run)
                hay = Haystack(rotated(source, start_char), tokenizer)
                uid = make_uuid(seed, length, depth, run)
                needle = NEEDLE_TEMPLATE.format(uuid=uid)
                context, _, n_context = build_context(tokenizer, hay, int(length), depth, needle)
                prompt = render_prompt(tokenizer, context, style=style)
                start = prompt.find(needle)
                assert start >= 0 and prompt.count(uid) == 1, "needle must appear exactly once"
                end = start + len(needle)
                assert prompt[start:end] == needle
                ctx_start = prompt.find(context)
                docs.append(
                    {
                        "input": prompt,
                        "needle": needle,
                        "uuid": uid,
                        "length": int(length),
                        "depth": depth,
                        "run": run,
                        "seed": int(seed),
                        "needle_char_span": [start, end],
                        "context_char_span": [ctx_start, ctx_start + len(context)] if ctx_start >= 0 else [-1, -1],
                        "context_tokens": n_context,
                        "n_tokens": count_tokens(tokenizer, prompt),
                        "haystack": haystack_name,
                        "haystack_start": start_char,
                        **completion_fields(style, ANSWER_PREFIX, COMPLETION_STOPS),
                    }
                )
    return docs
