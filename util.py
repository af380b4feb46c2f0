"""Ground-floor helpers that every layer may import: atomic file writes, content digests, a model's text config and
KV geometry.

Why a module of its own at the bottom: result files, caches, probes and traces are written from every layer,
and a reader (or a resumed run) must never see a half-written one; before, ``write_atomic`` lived in
``models/`` so that ``suite/`` and ``tasks/`` imported the engine's package for it, and ``probes/`` wrote its
own variant. It imports nothing of dynheads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block succeeds, removed
    when it fails (e.g. ``torch.save(state, tmp)``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes: cached results that depend on a file (a saved probe) are keyed on its content."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def text_config(model: Any) -> Any:
    """The decoder config of a model or of a config (multimodal models nest it under ``get_text_config``)."""
    config = getattr(model, "config", model)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def kv_geometry(config: Any) -> tuple[int, int]:
    """(key/value heads, head dimension) of a decoder's text config: what one cached position holds per layer."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return heads, getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
