"""lm-eval glue for the ``niah_uuid`` task (paper Appendix A.1): documents from metadata, scoring, head metrics.

``niah_uuid.yaml`` names these hooks by their package path (``!function
dynheads.tasks.niah_uuid.utils.x``), so lm-eval imports this module normally and shares its caches with
run_suite. It also stays loadable the other lm-eval way, by file path (``!function utils.x``): all
project imports are absolute and nothing here needs ``sys.modules`` to know the module during import
(dataclasses do, hence the ``NamedTuple``).

How the grid arrives
--------------------
lm-eval calls ``custom_dataset(**metadata)`` once per task, where ``metadata`` is the YAML ``metadata:``
block (defaults below plus ``version``), overridden by the parsed ``--model_args`` (e.g.
``pretrained=...``, ``dtype=float32``), overridden in turn by ``--metadata '{...}'`` JSON, plus a
``config_source`` key. Keys this task reads (all others are ignored, since model arguments share the
dict):

- ``lengths``: context lengths in tokens (int, list of ints, or ``"500,1000"``); default
  ``[500, 1000, 1500, 2000]``, sized for the embedded 135M model, which retrieves up to ~1.5K tokens.
- ``depths``: needle depths in [0, 1] (float, list, or ``"0,0.5,1"``); default ``[0, .25, .5, .75, 1]``.
- ``runs``: documents per (length, depth) cell, each with its own UUID; default 2 (the paper used 5).
- ``seed``: integer seed of the UUIDs; default 0.
- ``haystack_file``: UTF-8 text file to use instead of the bundled HotpotQA paragraphs.
- ``prompt_style``: ``auto`` (default: the chat template when the tokenizer has one, else ``completion``), ``chat``
  or ``completion`` (a base model's prompt ending in the answer's lead-in; ``haystack.py``, "Prompt").
- ``tokenizer`` (else ``pretrained``): the tokenizer that sizes the context and renders the chat
  template, resolved by ``dynheads.models.harness.loading.load_tokenizer`` (``None`` = embedded SmolLM2).
  A tokenizer object is accepted too when calling from Python.

Document schema (one per length × depth × run, in that nesting order)
--------------------------------------------------------------------
``input`` (the full rendered prompt, chat template applied), ``needle`` (``"The magic word is
<uuid>."``), ``uuid``, ``length`` (target context tokens), ``depth``, ``run``, ``seed``,
``needle_char_span`` ([start, end) of the needle in ``input``), ``context_char_span`` ([start, end) of
the haystack-with-needle in ``input``), ``context_tokens`` (its actual token count, within
``haystack.MAX_LENGTH_ERROR`` of ``length``), ``n_tokens`` (tokens of the whole ``input``, no special
tokens added), ``haystack`` (``"hotpotqa"`` or the file path), ``haystack_start`` (the character of the
source where this document's haystack window starts: a seeded, per-document paragraph); with a completion prompt
also ``prompt_style``, ``stop`` and ``answer_prefix``.

Head statistics (``dynheads`` model only; absent under other models): ``heads_per_step`` (mean
and ``heads_per_step_std``), ``unique_heads``, ``adjacent_jaccard``, ``head_entropy`` and
``jaccard_static_{20,50,100}`` -- the paper's Table 1 / Table 5 over every decode step of the run
(definitions in :mod:`dynheads.metrics.dynamism`).

Metrics per document: ``acc`` = :func:`dynheads.metrics.text.contains_exact` of the UUID, and
``rouge_l`` = :func:`dynheads.metrics.text.rouge_l` against the *needle sentence* (the paper does not
name the reference; the sentence is what a faithful answer reproduces, so a verbatim
``"The magic word is <uuid>."`` scores 1.0 and a bare UUID about 0.71).
"""

from __future__ import annotations

from functools import partial

import json
import math
import re
from typing import Any, Iterable, Mapping, NamedTuple

from ...metrics.text import contains_exact, rouge_l
from ..common import PROMPT_STYLES, head_metrics, metadata_error, tokenizer_from_spec
from .haystack import DEFAULT_HAYSTACK, build_docs, load_haystack_text

DEFAULT_LENGTHS = (500, 1000, 1500, 2000)
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_RUNS = 2
DEFAULT_SEED = 0
MIN_LENGTH = 64  # the needle alone is ~40 tokens
METRICS = ("acc", "rouge_l")

__all__ = [
    "NiahConfig",
    "docs_from_metadata",
    "niah_uuid_dataset",
    "parse_metadata",
    "process_results",
]


class NiahConfig(NamedTuple):
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    depths: tuple[float, ...] = DEFAULT_DEPTHS
    runs: int = DEFAULT_RUNS
    seed: int = DEFAULT_SEED
    haystack_file: str | None = None
    tokenizer: Any = None  # name/path/None, or a tokenizer object
    prompt_style: str = "auto"  # chat with a chat template, else completion (tasks.common.prompt_style)


_bad = partial(metadata_error, "niah_uuid")


def _as_list(key: str, value: Any, example: str) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise _bad(key, value, "is not a valid JSON list", example) from None
        else:
            value = [v for v in text.replace(" ", ",").split(",") if v]
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad(key, value, "must be a non-empty list", example)
    return list(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int(key: str, value: Any, example: str, minimum: int | None = None) -> int:
    number = _number(value)
    if number is None or not math.isfinite(number) or number != int(number):
        raise _bad(key, value, "must be an integer", example)
    if minimum is not None and number < minimum:
        raise _bad(key, value, f"must be at least {minimum}", example)
    return int(number)


def _dedupe(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def parse_metadata(meta: Mapping[str, Any] | None = None) -> NiahConfig:
    """Validate the task's metadata keys (see module docstring); one-line ``ValueError`` on bad input."""
    meta = dict(meta or {})
    lengths_ex, depths_ex = "[500, 1000]", "[0.0, 0.5, 1.0]"
    lengths = []
    for item in _as_list("lengths", meta.get("lengths", DEFAULT_LENGTHS), lengths_ex):
        number = _number(item)
        if number is None or not math.isfinite(number) or number != int(number) or number < MIN_LENGTH:
            raise _bad("lengths", meta.get("lengths"), f"needs integers >= {MIN_LENGTH} (context tokens)", lengths_ex)
        lengths.append(int(number))
    depths = []
    for item in _as_list("depths", meta.get("depths", DEFAULT_DEPTHS), depths_ex):
        number = _number(item)
        if number is None or not (0.0 <= number <= 1.0):  # NaN fails this too
            raise _bad("depths", meta.get("depths"), "needs numbers in [0, 1] (0 = start, 1 = end)", depths_ex)
        depths.append(float(number))
    runs = _int("runs", meta.get("runs", DEFAULT_RUNS), "5", minimum=1)
    seed = _int("seed", meta.get("seed", DEFAULT_SEED), "0")
    haystack_file = meta.get("haystack_file")
    if haystack_file is not None and not isinstance(haystack_file, str):
        raise _bad("haystack_file", haystack_file, "must be a path string", '"/path/to/text.txt"')
    tokenizer = meta.get("tokenizer") or meta.get("pretrained")
    style = meta.get("prompt_style") or "auto"
    if style not in PROMPT_STYLES:
        raise _bad("prompt_style", style, f"must be one of {', '.join(PROMPT_STYLES)}", '"auto"')
    return NiahConfig(_dedupe(lengths), _dedupe(depths), runs, seed, haystack_file or None, tokenizer, style)


_tokenizer = partial(tokenizer_from_spec, task="niah_uuid")


def docs_from_metadata(**metadata: Any) -> list[dict[str, Any]]:
    """The task's documents as plain dicts (no ``datasets`` needed); same keys lm-eval passes."""
    cfg = parse_metadata(metadata)
    tokenizer = _tokenizer(cfg.tokenizer)
    text = load_haystack_text(cfg.haystack_file)
    return build_docs(
        tokenizer,
        cfg.lengths,
        cfg.depths,
        cfg.runs,
        cfg.seed,
        haystack_text=text,
        haystack_name=cfg.haystack_file or DEFAULT_HAYSTACK,
        style=cfg.prompt_style,
    )


def niah_uuid_dataset(**metadata: Any):
    """``custom_dataset`` entry point: ``{"test": datasets.Dataset}``."""
    import datasets

    return {"test": datasets.Dataset.from_list(docs_from_metadata(**metadata), split=datasets.Split.TEST)}


_LEAD = re.compile(r"magic word is\s*[:\-]?", re.IGNORECASE)
_WRAPPERS = "\"'`*_()[]<>\u201c\u201d\u2018\u2019\u00ab\u00bb"
_END_PUNCTUATION = ".,;:!?"


def answer_span(response: str | None) -> tuple[int, int]:
    """Where the answer word lies in a response, as ``[start, end)`` (the span whose tokens the hallucination
    labels and detectors read).

    Rule: after the first ``magic word is`` (any case, an optional colon or dash) if the response has one, else
    from its start; skip whitespace and opening quotes / emphasis (``" ' ` * _ ( [ <`` and curly quotes); the
    answer runs to the next whitespace, minus closing quotes and sentence punctuation. Why one word: a UUID has
    no spaces, and an invented answer (``serendipity``) is one word too; what follows it is chatter.
    """
    text = response or ""
    lead = _LEAD.search(text)
    start = lead.end() if lead else 0
    while start < len(text) and (text[start].isspace() or text[start] in _WRAPPERS):
        start += 1
    end = start
    while end < len(text) and not text[end].isspace():
        end += 1
    while end > start and (text[end - 1] in _WRAPPERS or text[end - 1] in _END_PUNCTUATION):
        end -= 1
    return start, end


def score(response: str | None, doc: Mapping[str, Any]) -> dict[str, float]:
    """Both metrics for one response. A completion prompt's lead-in (``answer_prefix``, said by the prompt rather than
    the model) is read in front of the response for ROUGE-L, so that a chat model's "The magic word is X." and a base
    model's " X." after the same lead-in score alike."""
    sentence = doc.get("answer_prefix", "") + (response or "")
    return {"acc": contains_exact(response, doc["uuid"]), "rouge_l": rouge_l(sentence, doc["needle"])}


def process_results(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
    """lm-eval ``process_results``: ``results[0]`` is the generated text."""
    response = results[0] if results else ""
    values = score(response, doc)
    return {**values, **head_metrics(doc, (answer_span(response), not values["acc"]))}


