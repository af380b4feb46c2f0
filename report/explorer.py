"""Write the explorer: one static page per traced document, and an index of them, from a ``trace_dir``.

Why one page per document: a 2,000-token prompt with four conditions of 60 steps each is a few hundred kilobytes of
data, which a browser draws at once; a page per trace file would hold every document of a cell.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..traces import read_lines
from ..util import write_atomic
from .explorer_data import by_document, document_data

TEMPLATE = Path(__file__).with_name("explorer.html")


@functools.lru_cache(maxsize=1)
def template() -> str:
    """The page template, read once per process (a run writes hundreds of pages)."""
    return TEMPLATE.read_text(encoding="utf-8")


def page(data: dict[str, Any], title: str) -> str:
    """The page of one document: the template with its data inlined (``</`` escaped, so no string in the data can close
    the script element)."""
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return template().replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def trace_files(trace_dir: Path) -> list[Path]:
    """Every trace file (``*.jsonl``) under ``trace_dir``, a run's results folder or one ``trace_dir``."""
    return sorted(Path(trace_dir).rglob("*.jsonl"))


def build(trace_dir: Path, out: Path, token_text: Callable[[int], str], num_layers: int, num_heads: int) -> list[Path]:
    """Write ``out/<trace file's folder>/<task>-<document>.html`` for every document of every trace file under
    ``trace_dir`` and ``out/index.html`` linking them; returns the pages."""
    files = trace_files(trace_dir)
    if not files:
        raise ValueError(f"dynheads: no trace file (*.jsonl) under {trace_dir}; trace with --model_args trace_dir=DIR")
    pages, rows = [], []
    for path in files:
        where = path.parent.relative_to(trace_dir) if path.parent != Path(trace_dir) else Path(".")
        for key, lines in by_document(read_lines(path)).items():
            name = f"{path.stem}-{str(key)[:16]}.html"
            target = out / where / name
            title = f"{path.stem}, document {lines[0].get('doc_id')} ({', '.join(line['condition'] for line in lines)})"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, page(document_data(lines, token_text, num_layers, num_heads), title))
            pages.append(target)
            rows.append(f'<li><a href="{html.escape((where / name).as_posix())}">{html.escape(title)}</a></li>')
    index = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dynheads trace explorer</title></head>"
             f"<body><h1>dynheads trace explorer: {len(pages)} documents</h1><ul>{''.join(rows)}</ul></body></html>")
    write_atomic(out / "index.html", index)
    return pages


def explorer_for(trace_dir: Path, out: Path, pretrained: str | None = None) -> list[Path]:
    """:func:`build` with the token texts and head geometry of ``pretrained`` (the model that wrote the traces;
    ``None``: the embedded SmolLM2)."""
    from transformers import AutoConfig

    from ..models.harness.loading import load_tokenizer, resolve_pretrained
    from ..util import text_config

    tokenizer = load_tokenizer(pretrained)
    config = text_config(AutoConfig.from_pretrained(resolve_pretrained(pretrained)))
    token_text = functools.lru_cache(maxsize=None)(lambda t: tokenizer.decode([t]))
    return build(Path(trace_dir), Path(out), token_text, config.num_hidden_layers, config.num_attention_heads)
