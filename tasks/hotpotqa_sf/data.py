"""Load HotpotQA (distractor setting) examples into one canonical record layout.

Why three sources:

- **Offline default.** ``source=None`` reads the records vendored with this package
  (``tasks/data/hotpotqa/``: 1000 dev records, 601 train records, CC BY-SA 4.0, see that folder's
  README), so the task runs on a machine without network access and every run sees the same examples.
- **Users' own files.** A path reads a local file in the official HotpotQA layout (a JSON list,
  ``.json`` or gzip-compressed) or JSON Lines, in either the official or the Hugging Face layout, so the
  full official dev set or a hand-made subset can be evaluated without code changes. The file format is
  detected from the content (gzip magic bytes; a JSON list, else one JSON object per line), not from the
  suffix, because ``datasets.Dataset.to_json("x.json")`` writes JSON Lines.
- **The Hub, for networked users.** ``"hf:NAME/CONFIG:SPLIT"`` (e.g. ``hf:hotpot_qa/distractor:validation``;
  on recent hubs the dataset lives at ``hf:hotpotqa/hotpot_qa/distractor:validation``) loads
  ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)``. ``datasets`` is imported only then.

Layouts accepted per record (detected record by record):

- official (``hotpot_dev_distractor_v1.json``): ``{"_id", "question", "answer", "type", "level",
  "supporting_facts": [[title, sent_id], ...], "context": [[title, [sentence, ...]], ...]}``;
- Hugging Face ``hotpot_qa`` columnar: ``{"id", ..., "supporting_facts": {"title": [...], "sent_id": [...]},
  "context": {"title": [...], "sentences": [[...], ...]}}``.

Both become the canonical record, a plain JSON-serialisable dict::

    {"id": str, "question": str, "answer": str, "type": str, "level": str,
     "supporting_facts": [[title, sent_id], ...], "context": [[title, [sentence, ...]], ...]}

Other fields are dropped. Sentences are kept verbatim (they carry their own leading spaces). Supporting
facts whose title or sentence index is not in the context are *kept* (the official scorer only compares
``(title, sent_id)`` pairs); :func:`missing_supporting_facts` lists them. The vendored files have none.
"""

from __future__ import annotations

import gzip
import json
import operator
import os
import zlib
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "VENDORED",
    "CANONICAL_KEYS",
    "load_examples",
    "normalise_record",
    "parse_hf_spec",
    "missing_supporting_facts",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "hotpotqa"
VENDORED: dict[str, Path] = {
    "dev": DATA_DIR / "hotpot_dev_distractor_1000.json.gz",
    "train": DATA_DIR / "hotpot_train_distractor_601.json.gz",
}
CANONICAL_KEYS = ("id", "question", "answer", "type", "level", "supporting_facts", "context")

HF_PREFIX = "hf:"
HF_EXAMPLE = "hf:hotpot_qa/distractor:validation"

_LAYOUTS = (
    "official HotpotQA layout (a JSON list of {_id, question, answer, type, level, "
    "supporting_facts: [[title, sent_id], ...], context: [[title, [sentences]], ...]}, .json or .json.gz) "
    "or JSON Lines of such records or of Hugging Face hotpot_qa rows "
    "(supporting_facts: {title, sent_id}, context: {title, sentences})"
)


# --------------------------------------------------------------------------------------------- records


def _fail(where: str, field: str, problem: str) -> ValueError:
    return ValueError(f"HotpotQA {where}: field {field!r} {problem}")


def _where(rec: Mapping, index: int | None) -> str:
    rid = rec.get("_id", rec.get("id"))
    parts = []
    if index is not None:
        parts.append(f"record {index}")
    if rid is not None:
        parts.append(f"id {rid!r}")
    return " ".join(parts) if parts else "record"


def _str_field(rec: Mapping, key: str, where: str) -> str:
    if key not in rec:
        raise _fail(where, key, "is missing")
    value = rec[key]
    if not isinstance(value, str):
        raise _fail(where, key, f"must be a string, got {type(value).__name__}")
    return value


def _sent_id(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool):
        raise _fail(where, field, f"has a non-integer sentence index {value!r}")
    try:
        idx = operator.index(value)  # int, or an integer scalar such as numpy.int64
    except TypeError:
        raise _fail(where, field, f"has a non-integer sentence index {value!r}") from None
    if idx < 0:
        raise _fail(where, field, f"has a negative sentence index {idx}")
    return idx


def _title(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, field, f"has a non-string title {value!r}")
    return value


def _sentences(value: Any, where: str, field: str, title: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _fail(where, field, f"paragraph {title!r} must be a list of sentence strings")
    if not all(isinstance(s, str) for s in value):
        raise _fail(where, field, f"paragraph {title!r} has a non-string sentence")
    return list(value)


def _columns(value: Mapping, keys: tuple[str, str], where: str, field: str) -> tuple[list, list]:
    for key in keys:
        if key not in value:
            raise _fail(where, field, f"(Hugging Face layout) has no {key!r} column")
    a, b = (value[k] for k in keys)
    for key, col in zip(keys, (a, b)):
        if isinstance(col, (str, bytes)) or not isinstance(col, (list, tuple)):
            raise _fail(where, field, f"(Hugging Face layout) column {key!r} must be a list")
    if len(a) != len(b):
        raise _fail(
            where, field, f"(Hugging Face layout) columns {keys[0]!r} and {keys[1]!r} differ in length "
            f"({len(a)} vs {len(b)})"
        )
    return list(a), list(b)


def _pairs(value: Any, where: str, field: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _fail(
            where, field, "must be a list of pairs (official layout) or a mapping of columns "
            "(Hugging Face layout)"
        )
    for item in value:
        if isinstance(item, (str, bytes)) or not isinstance(item, (list, tuple)) or len(item) != 2:
            raise _fail(where, field, f"must hold [title, value] pairs, got {item!r:.80}")
    return list(value)


def _pair_rows(value: Any, where: str, field: str, columns: tuple[str, str]) -> list:
    """``(title, value)`` pairs from either layout: official pairs or Hugging Face columns."""
    if isinstance(value, Mapping):
        return list(zip(*_columns(value, columns, where, field)))
    return _pairs(value, where, field)


def _supporting_facts(value: Any, where: str) -> list[list]:
    field = "supporting_facts"
    pairs = _pair_rows(value, where, field, ("title", "sent_id"))
    return [[_title(t, where, field), _sent_id(i, where, field)] for t, i in pairs]


def _context(value: Any, where: str) -> list[list]:
    field = "context"
    pairs = _pair_rows(value, where, field, ("title", "sentences"))
    out = []
    for t, sents in pairs:
        title = _title(t, where, field)
        out.append([title, _sentences(sents, where, field, title)])
    return out


def normalise_record(rec: Mapping, index: int | None = None) -> dict:
    """One record of either layout -> a new canonical dict (see the module docstring).

    ``index`` (the record's position in its source) only improves error messages. Raises one
    ``ValueError`` naming the first missing or invalid field and the record's index/id.
    """
    if not isinstance(rec, Mapping):
        where = f"record {index}" if index is not None else "record"
        raise ValueError(
            f"HotpotQA {where}: expected a JSON object (mapping), got {type(rec).__name__}; "
            f"expected layouts: {_LAYOUTS}"
        )
    where = _where(rec, index)
    if "_id" in rec:
        rid = rec["_id"]
        id_key = "_id"
    elif "id" in rec:
        rid = rec["id"]
        id_key = "id"
    else:
        raise _fail(where, "_id", "is missing (official layout '_id', Hugging Face layout 'id')")
    if not isinstance(rid, str) or not rid:
        raise _fail(where, id_key, f"must be a non-empty string, got {rid!r}")
    for key in ("supporting_facts", "context"):
        if key not in rec:
            raise _fail(where, key, "is missing")
    return {
        "id": rid,
        "question": _str_field(rec, "question", where),
        "answer": _str_field(rec, "answer", where),
        "type": _str_field(rec, "type", where),
        "level": _str_field(rec, "level", where),
        "supporting_facts": _supporting_facts(rec["supporting_facts"], where),
        "context": _context(rec["context"], where),
    }


def missing_supporting_facts(record: Mapping) -> list[list]:
    """The canonical ``record``'s supporting facts whose title is not a context paragraph or whose
    sentence index is past that paragraph's sentences (first paragraph of a repeated title wins)."""
    paragraphs: dict[str, list] = {}
    for title, sentences in record["context"]:
        paragraphs.setdefault(title, sentences)
    return [
        [title, sent_id]
        for title, sent_id in record["supporting_facts"]
        if title not in paragraphs or not 0 <= sent_id < len(paragraphs[title])
    ]


# --------------------------------------------------------------------------------------------- sources


def parse_hf_spec(spec: str) -> tuple[str, str, str]:
    """``"hf:NAME/CONFIG:SPLIT"`` -> ``(NAME, CONFIG, SPLIT)``.

    NAME may hold a namespace: ``hf:hotpotqa/hotpot_qa/distractor:validation`` ->
    ``("hotpotqa/hotpot_qa", "distractor", "validation")``. Split slicing (``validation[:100]``) is not
    accepted; use ``limit``. Raises ``ValueError`` with an example of the right form otherwise."""
    bad = ValueError(
        f"bad Hugging Face dataset spec {spec!r}: expected 'hf:NAME/CONFIG:SPLIT', e.g. {HF_EXAMPLE!r}"
    )
    if not isinstance(spec, str) or not spec.startswith(HF_PREFIX):
        raise bad
    body = spec[len(HF_PREFIX):]
    if body.count(":") != 1 or any(c.isspace() for c in body):
        raise bad
    path, split = body.split(":")
    name, sep, config = path.rpartition("/")
    if not sep or not name or not config or not split or any(not p for p in name.split("/")):
        raise bad
    return name, config, split


def _read_records(path: Path) -> list:
    """The raw records of a local file: a JSON list, or JSON Lines; gzip detected by magic bytes."""
    if not path.exists():
        raise FileNotFoundError(f"HotpotQA file not found: {path} (expected {_LAYOUTS})")
    if not path.is_file():
        raise ValueError(f"HotpotQA source {path} is not a file (expected {_LAYOUTS})")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read HotpotQA file {path}: {e} (expected {_LAYOUTS})") from None
    if not text.strip():
        raise ValueError(f"HotpotQA file {path} is empty (expected {_LAYOUTS})")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"HotpotQA file {path} is not valid JSON: {e} (expected {_LAYOUTS})") from None
        if not isinstance(data, list):  # pragma: no cover - a text starting with '[' parses to a list
            raise ValueError(f"HotpotQA file {path}: expected a JSON list (expected {_LAYOUTS})")
        return data
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(
                f"HotpotQA file {path} line {lineno} is not a JSON record: {e} (expected {_LAYOUTS})"
            ) from None
    return records


def _normalise_all(records: Iterable, origin: str) -> list[dict]:
    out = []
    for i, rec in enumerate(records):
        try:
            out.append(normalise_record(rec, index=i))
        except ValueError as e:
            raise ValueError(f"{origin}: {e}") from None
    return out


def load_examples(
    source: str | os.PathLike | None = None, split: str = "dev", limit: int | None = None
) -> list[dict]:
    """HotpotQA examples as canonical records, in source order.

    - ``source=None``: the vendored file of ``split`` (``"dev"`` or ``"train"``; see :data:`VENDORED`).
    - ``source="hf:NAME/CONFIG:SPLIT"``: ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)`` (needs the
      ``datasets`` package and network or its cache); ``split`` is ignored, the spec names it.
    - any other string or path: a local file (see the module docstring); ``split`` is ignored.

    ``limit`` keeps the first ``limit`` records (``None``: all). Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` for an unreadable file, an unknown split or an invalid record.
    """
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")
    if source is None:
        if split not in VENDORED:
            raise ValueError(f"unknown HotpotQA split {split!r}: the vendored splits are {sorted(VENDORED)}")
        path = VENDORED[split]
        return _normalise_all(islice(_read_records(path), limit), str(path))
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        name, config, hf_split = parse_hf_spec(source)
        import datasets  # only Hub users need it

        ds = datasets.load_dataset(name, config, split=hf_split)
        return _normalise_all(islice(ds, limit), source)
    path = Path(source)
    return _normalise_all(islice(_read_records(path), limit), str(path))
