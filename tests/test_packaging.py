"""The installed package: a cheap interpreter start, and a stock lm_eval that knows dynheads.

Every check runs in a fresh interpreter (``sys.executable``), started outside the repository,
so it sees what ``pip install .`` / ``pip install -e .`` put into site-packages: the
``dynheads-autoload.pth`` hook (dynheads/_autoload.py), the entry points and the task folder.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NIAH_YAML = REPO / "tasks" / "niah_uuid" / "niah_uuid.yaml"


def _python(code: str, tmp_path: Path, timeout: float = 300) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, which is returned."""
    env = {k: v for k, v in os.environ.items() if k != "DYNHEADS_NO_AUTOLOAD"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the repo root: only the installed package counts
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _skip_without_niah_task() -> None:
    if not NIAH_YAML.is_file():
        pytest.skip(f"{NIAH_YAML.relative_to(REPO)} does not exist yet")


def test_plain_start_imports_nothing_heavy(tmp_path):
    out = _python(
        "import json, sys; print(json.dumps({m: m in sys.modules for m in "
        "('torch', 'transformers', 'lm_eval', 'dynheads._autoload')}))",
        tmp_path,
    )
    assert out["torch"] is False and out["transformers"] is False and out["lm_eval"] is False
    # The .pth hook is installed and ran (else `lm_eval --model dynheads` cannot work).
    assert out["dynheads._autoload"] is True, "dynheads-autoload.pth missing: run `pip install -e .`"


def test_stock_lm_eval_registry_resolves_dynheads(tmp_path):
    out = _python(
        "import json, sys\n"
        "import lm_eval.api.registry as r\n"
        "before = {'dynheads': 'dynheads' in r.model_registry, 'hf': 'hf' in r.model_registry,\n"
        "          'lm_imported': 'dynheads.models.harness.lm' in sys.modules}\n"
        "cls = r.get_model('dynheads')\n"
        "print(json.dumps(dict(before, name=cls.__name__, module=cls.__module__)))",
        tmp_path,
    )
    assert out["dynheads"] is True
    assert out["hf"] is True, "lm_eval's own models must stay registered"
    assert out["lm_imported"] is False, "registration must be lazy"
    assert (out["module"], out["name"]) == ("dynheads.models.harness.lm", "DynHeadsLM")


def test_task_manager_finds_dynheads_tasks(tmp_path):
    _skip_without_niah_task()
    out = _python(
        "import json\n"
        "from lm_eval.tasks import TaskManager\n"
        "tm = TaskManager(include_defaults=False)\n"
        "import dynheads._autoload as a\n"
        "again = TaskManager(include_defaults=False, include_path=[a.TASKS_DIR])\n"
        "print(json.dumps({'tasks': tm.all_tasks, 'include_path': [str(p) for p in tm.include_path],\n"
        "                  'again': again.include_path, 'tasks_dir': a.TASKS_DIR}))",
        tmp_path,
    )
    assert "niah_uuid" in out["tasks"]
    assert out["include_path"] == [out["tasks_dir"]]
    assert out["again"] == [out["tasks_dir"]], "the task folder must not be added twice"


@pytest.mark.slow
def test_default_task_manager_lists_niah_uuid(tmp_path):
    """What `lm_eval --tasks niah_uuid` builds: lm_eval's own tasks plus dynheads' (~20 s)."""
    _skip_without_niah_task()
    out = _python(
        "import json\n"
        "from lm_eval.tasks import TaskManager\n"
        "print(json.dumps({'niah_uuid': 'niah_uuid' in TaskManager().all_tasks}))",
        tmp_path,
    )
    assert out["niah_uuid"] is True


def test_entry_points_declared():
    models = {ep.name: ep.value for ep in md.entry_points(group="lm_eval.models")}
    assert models.get("dynheads") == "dynheads.models.harness.lm:DynHeadsLM"
    scripts = {ep.name: ep.value for ep in md.entry_points(group="console_scripts")}
    assert scripts.get("dynheads-bench") == "dynheads.suite.benchmarks.engine:main"
