"""Shared fixtures: one isolated dynheads cache, one loaded SmolLM2 and one tiny suite run for the whole session.

Why session-scoped: the real-model tests all read the same NIAH (300 tokens, depth 0.5, one run) and HotpotQA (one
example) calibrations, the same loaded model and the same one-cell ``run_suite --all``; computing each once is what
keeps CI under ten minutes. A test that changes shared state restores it (``configure(mask="none")``) or works on
a copy of the suite's results.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# the one-cell grid of every stage that the session's suite run (and the tests reading it) use
TINY = ["--models", "smollm2", "--lengths", "300", "--depths", "0.5", "--runs", "1", "--seed", "5",
        "--calib-lengths", "300", "--calib-depths", "0.5", "--prog-length", "300", "--prog-depths", "0.5",
        "--hotpot-n", "2", "--hotpot-chunk", "1", "--hotpot-calib", "1", "--hotpot-prog-n", "1", "--hotpot-ks", "0,2",
        "--probe-lengths", "300", "--probe-depths", "0,1", "--probe-runs", "2", "--probe-epochs", "3", "--probe-hidden-sizes", "16",
        "--hotpot-probe-train", "5", "--rag-n", "2", "--rag-ks", "2,4", "--rag-threshold", "0",
        "--kv-lengths", "300", "--kv-depths", "0.3", "--kv-runs", "1", "--kv-hotpot-n", "2", "--kv-budgets", "0.05",
        "--halluc-lengths", "300", "--halluc-depths", "0.2,0.8", "--halluc-runs", "2", "--halluc-gold-n", "2",
        "--halluc-gold-train-n", "4"]


@pytest.fixture(scope="session")
def isolated_cache(tmp_path_factory):
    """A temporary ``DYNHEADS_CACHE`` for the whole session (static-head calibrations land there, not in the user's
    cache, and are computed once) holding a symlink to the real embedded model folder, so nothing is de-quantised
    again. Yields the symlinked model folder."""
    from dynheads.models.harness.loading import resolve_pretrained

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
    """Wraps a tokenizer so that tasks must fall back to their completion prompt (a base model's)."""
    return _NoChatTemplate


@pytest.fixture(scope="session")
def smollm2_lm(isolated_cache):
    """The embedded SmolLM2 as the ``dynheads`` lm-eval model (float32, the one-document calibration), loaded once."""
    from dynheads.models.harness.lm import DynHeadsLM

    return DynHeadsLM(device="cpu", dtype="float32", calib_lengths="300", calib_depths="0.5")


@pytest.fixture(scope="session")
def smollm2_eager(isolated_cache):
    """The same weights under transformers' eager attention: the independent reference of ``verify``."""
    from dynheads.models.harness.loading import load_model

    eager = load_model(str(isolated_cache))
    eager.set_attn_implementation("eager")
    return eager


@pytest.fixture(scope="session")
def smollm2_hf(isolated_cache):
    """lm-eval's own ``hf`` model over the same folder (head metrics must be absent under it)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(isolated_cache), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def run_suite():
    """``run_suite.py`` as a module (its ``main`` and stage registry)."""
    spec = importlib.util.spec_from_file_location("run_suite", ROOT / "run_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def suite_run(run_suite, isolated_cache, tmp_path_factory):
    """One cold ``--all`` on the one-cell grid; every stage test reads its outputs (read-only: a test that reruns or
    rewrites results works on a copy)."""
    out = tmp_path_factory.mktemp("suite")
    args = ["--all", *TINY, "--ks", "0,5", "--out", str(out)]
    assert run_suite.main(args) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [row["model"] for row in board] == ["smollm2"]
    return out, args, board[0]
