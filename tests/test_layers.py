"""The one-way layers (metrics <- probes <- models <- tasks) hold, and the check really catches a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert "1 kept, 0 broken" in done.stdout


def test_a_models_module_importing_tasks_breaks_the_contract(tmp_path):
    """A copy of the package whose engine imports a task module, inside a function (the kind of import
    that slipped in before): the same check fails and names the import."""
    copy = tmp_path / "dynheads"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "tests", "results", "*.egg-info", "__pycache__", "data"))
    engine = copy / "models" / "engine.py"
    engine.write_text(engine.read_text() + "\n\ndef _breach():\n    from dynheads.tasks.common import count_tokens\n    return count_tokens\n")
    done = _lint(copy, pythonpath=tmp_path)
    assert done.returncode != 0
    assert "dynheads.models.engine -> dynheads.tasks.common" in done.stdout, done.stdout
