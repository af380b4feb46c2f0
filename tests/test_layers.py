"""The one-way layers (util <- spec <- metrics | traces <- probes <- models <- tasks <- suite; inside models/,
verify <- harness <- rag <- engine) hold, and the check really catches a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        "--no-cache"]  # reads setup.cfg in the working directory


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(LINT, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_layers_contract_is_kept():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, imported, name", [
    ("models/engine/trace_engine.py", "dynheads.tasks.common", "count_tokens"),  # the kind of import that slipped in before
    ("models/engine/batch.py", "dynheads.models.harness.settings", "ModelSettings"),  # the engine knows no harness
    ("models/rag/algorithm.py", "dynheads.models.harness.lm", "DynHeadsLM"),  # Section 5 sits on the step API only
    ("spec.py", "dynheads.traces", "TRACE_FORMAT"),  # condition names sit below the trace format
    ("tasks/common.py", "dynheads.suite.tables", "markdown"),  # a task reaching up into the suite
    ("traces.py", "dynheads.models.engine.trace_engine", "TraceEngine"),  # the trace format must stay at the bottom
    ("util.py", "dynheads.metrics.heads", "Head"),  # the ground floor imports nothing of dynheads
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, imported, name):
    """A copy of the package with one upward import inside a function: the same check fails and names it."""
    copy = tmp_path / "dynheads"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "tests", "results", "*.egg-info", "__pycache__", "data"))
    path = copy / module
    path.write_text(path.read_text() + f"\n\ndef _breach():\n    from {imported} import {name}\n    return {name}\n")
    done = _lint(copy, pythonpath=tmp_path)
    assert done.returncode != 0
    here = "dynheads." + module[:-3].replace("/", ".")
    assert f"{here} -> {imported}" in done.stdout, done.stdout
