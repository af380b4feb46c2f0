"""Shared fixtures: an isolated dynheads cache that still reuses the user's de-quantised SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory):
    """A temporary ``DYNHEADS_CACHE`` (static-head calibrations land there, not in the user's cache)
    holding a symlink to the real embedded model folder, so nothing is de-quantised again.
    Yields the symlinked model folder."""
    from dynheads.models.loading import resolve_pretrained

    real = Path(resolve_pretrained(None))  # the user's de-quantised folder (created once if missing)
    root = tmp_path_factory.mktemp("dynheads_cache")
    (root / real.name).symlink_to(real, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DYNHEADS_CACHE", str(root))
        yield root / real.name


class _NoChatTemplate:
    """A tokenizer whose chat template is missing, delegating everything else to a real one."""

    chat_template = None

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self._tokenizer.decode(*args, **kwargs)


@pytest.fixture
def without_chat_template():
    """Wraps a tokenizer so that tasks must fall back to their plain-text prompt."""
    return _NoChatTemplate
