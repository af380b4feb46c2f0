"""Prompt encoding: token ids exactly as lm-eval's HF model makes them, and the token indices that matter.

The trace engine needs, per prompt, the token indices that define its retrieval heads: the needle
(Eq. 1), the supporting-fact sentences (Eq. 2), or for Section 5 the context span. Documents give them
as text or character spans; they are mapped to tokens through the tokenizer's offsets, after the same
left truncation ``HFLM`` applies. Calibrations and benchmarks encode through this module too, so every
prompt of the suite is tokenised one way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics.retrieval import span_token_indices
from ..engine import DecodingError


@dataclass(frozen=True)
class EncodedPrompt:
    """A context's token ids (after left truncation) and, where the document marks them, the needle
    (Eq. 1) or supporting-fact (Eq. 2) token indices in those ids, and the context span that Section 5
    hides and reveals."""

    ids: list[int]
    needle: list[int] | None = None
    support: list[int] | None = None
    context: list[int] | None = None

    @property
    def target(self) -> list[int] | None:
        """The indices that define the prompt's retrieval heads (needle or supporting facts), if any."""
        return self.needle if self.needle is not None else self.support


def cut_at_line_stop(text: str, stops: Sequence[str]) -> str | None:
    """``text`` up to the first of ``stops`` that comes after its first non-blank character, or ``None`` when none
    does. Why not lm-eval's ``until``: a base model given "Answer:" often starts with a line break, and cutting there
    would leave every such answer empty (SmolLM2 did it on 1 of 2 HotpotQA completion prompts)."""
    lead = len(text) - len(text.lstrip())
    ends = [i for i in (text.find(s, lead) for s in stops if s) if i >= 0]
    return text[:min(ends)] if ends else None


@dataclass(frozen=True)
class PreparedRequest:
    """One lm-eval request ready to decode: its prompt, the retrieval score that defines its heads, its stop rule
    and the bookkeeping its trace line and held-out checks need (what ``DynHeadsLM._prepare`` returns)."""

    context: str
    gen_kwargs: Mapping[str, Any]
    doc: Any
    prompt: EncodedPrompt
    score: Any  # the retrieval score (Eq. 1 copy-paste, or the Eq. 2 reasoning settings)
    until: list[str]
    max_gen: int
    stop: Callable[[list[int]], bool]
    eos_ids: set[int]
    task: str
    doc_id: Any
    doc_key: str | None
    line_stops: tuple[str, ...] = ()  # a completion document's own stops, read after the answer's first character

    @property
    def sample_key(self) -> Any:
        """What seeds a document's random draws: its content hash, else its lm-eval id."""
        return self.doc_key or self.doc_id


class PromptEncoder:
    """Encodes contexts as ``tok_encode`` (lm-eval's ``HFLM``) does, with character offsets per token.

    ``max_length``: the model's context limit (None: no truncation); a prompt longer than
    ``max_length - max_gen`` is cut from the left, as ``HFLM`` does, and an index the cut removed is an
    error naming the fix.
    """

    def __init__(self, tokenizer: Any, tok_encode: Callable[[str], list[int]], max_length: int | None = None) -> None:
        self.tokenizer, self.tok_encode, self.max_length = tokenizer, tok_encode, max_length

    def with_offsets(self, context: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids exactly as ``tok_encode`` makes them, plus character offsets per token."""
        ids = self.tok_encode(context)
        enc = self.tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
        plain, offsets = enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
        prefix = len(ids) - len(plain)
        if prefix < 0 or ids[prefix:] != plain:
            raise DecodingError("dynheads: tokenizer offsets disagree with lm-eval's encoding of the context; use a fast tokenizer")
        return ids, [(0, 0)] * prefix + offsets

    def encode(self, context: str, doc: Mapping[str, Any] | None = None, max_gen: int = 0,
               with_context: bool = False) -> EncodedPrompt:
        """``context`` for a request that may generate ``max_gen`` tokens, with the document's needle or
        supporting-fact indices (``doc["needle"]`` / ``doc["support_char_spans"]`` in ``doc["input"]``) and its
        context span (``doc["context_char_span"]`` in ``doc["input"]``; only ``with_context``, for Section 5),
        each where the document marks it."""
        ids, offsets = self.with_offsets(context)
        kept_from = 0
        if self.max_length and len(ids) > self.max_length - max_gen:
            kept_from = len(ids) - (self.max_length - max_gen)  # left truncation, as HFLM does
        doc = doc or {}
        needle = self._needle(context, doc, offsets, kept_from)
        support = self._support(context, doc, offsets, kept_from) if needle is None else None
        span = self._context(context, doc, offsets, kept_from) if with_context else None
        return EncodedPrompt(ids[kept_from:], needle, support, span)

    def encode_with_needle(self, context: str, needle: str) -> tuple[list[int], list[int]]:
        """Token ids of ``context`` and the indices of the tokens of ``needle`` (calibration, benchmarks)."""
        prompt = self.encode(context, {"needle": needle})
        return prompt.ids, prompt.needle or []

    # -- the document's indices ---------------------------------------------------------------------
    def _needle(self, context: str, doc: Mapping[str, Any], offsets: list[tuple[int, int]], kept_from: int) -> list[int] | None:
        needle = doc.get("needle")
        if not needle:
            return None
        start = context.find(needle)
        if start < 0:
            raise DecodingError("dynheads: the needle text does not occur in the context the model receives; check the task's doc_to_text")
        return self._kept(span_token_indices(offsets, start, start + len(needle)), kept_from, "the needle was",
                          "use a shorter task length")

    def _support(self, context: str, doc: Mapping[str, Any], offsets: list[tuple[int, int]], kept_from: int) -> list[int] | None:
        """Token indices of every supporting-fact sentence (``doc["support_char_spans"]``, in ``doc["input"]``)."""
        spans = doc.get("support_char_spans")
        if not spans:
            return None
        base = context.find(doc.get("input", ""))
        if base < 0 or not doc.get("input"):
            raise DecodingError("dynheads: the document's input does not occur in the context the model receives; do not add --apply_chat_template to tasks that render their own prompt")
        full = sorted({i for start, end in spans for i in span_token_indices(offsets, base + start, base + end)})
        return self._kept(full, kept_from, "supporting facts were", "use shorter examples")

    def _context(self, context: str, doc: Mapping[str, Any], offsets: list[tuple[int, int]], kept_from: int) -> list[int] | None:
        """Token indices of the document's context span (``doc["context_char_span"]``, in ``doc["input"]``)."""
        span = doc.get("context_char_span")
        base = context.find(doc.get("input") or "\0")
        if not span or base < 0:
            return None
        spans = span_token_indices(offsets, base + int(span[0]), base + int(span[1]))
        return self._kept(spans, kept_from, "the context was", "use shorter examples")

    def _kept(self, full: list[int], kept_from: int, what: str, fix: str) -> list[int]:
        """Token indices shifted past a left truncation; an error if truncation cut any of them."""
        indices = [i - kept_from for i in full if i >= kept_from]
        if len(indices) != len(full):
            raise DecodingError(
                f"dynheads: {what} lost in truncation (context cut to max_length={self.max_length}); raise max_length or {fix}"
            )
        return indices


def response_header_ids(tokenizer: Any) -> list[int]:
    """The tokens a chat template's generation prompt adds after the last user turn (SmolLM2:
    ``<|im_start|>assistant\\n``): the response header that Lookback Lens counts among the new tokens (its authors
    count ``\\n#Answer#:``). Empty without a chat template, or when the template's two renderings do not share the
    user turn as a prefix (then nothing is counted as header)."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    turn = [{"role": "user", "content": "Q"}]
    try:
        opened = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
        closed = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=False)
    except Exception:  # jinja2 TemplateError: a template that cannot render a lone user turn
        return []
    if not opened.startswith(closed) or opened == closed:
        return []
    return list(tokenizer.encode(opened[len(closed):], add_special_tokens=False))


def header_length(prompt_ids: list[int], header: list[int]) -> int:
    """How many of the prompt's last tokens are the response ``header`` (0 when the prompt does not end with it)."""
    return len(header) if header and list(prompt_ids[-len(header):]) == header else 0
