"""Every third-party import is declared in setup.cfg, so a fresh virtual environment has it.

Why: a package that only the developer's machine has (``accelerate`` once) passes every test there and
fails every command on a user's machine. Two checks, one per way a dependency goes missing:

* **Direct imports** (static): every ``import x`` / ``from x import`` in the package, its tests and
  ``run_suite.py`` — function-level and guarded ones included — names a distribution that setup.cfg
  declares itself, in ``install_requires`` or an extra, or through a declared extra of another
  requirement (``lm_eval[hf]`` declares ``accelerate``). Relying on a transitive dependency fails.
* **What gets loaded** (runtime): importing every dynheads module in a fresh interpreter loads
  only distributions in the dependency closure of setup.cfg's requirements, extras followed. This
  is what catches a library of ours importing something its own base requirements do not bring
  (``lm_eval.models.huggingface`` imports ``accelerate``, which only lm-eval's ``hf`` extra declares).

Hand-written (AST walk + importlib.metadata) because deptry, the maintained tool for the first check,
reads pyproject.toml and requirements files but not setup.cfg, and expands no extra of a dependency.
"""

from __future__ import annotations

import ast
import configparser
import functools
import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"build", "dist", "results", "__pycache__"}
# Modules of this repository that are not imported through the package name `dynheads`.
LOCAL = {"dynheads", "run_suite", "setup", "conftest"} | {p.stem for p in (REPO / "tests").glob("*.py")}
# Declared for something other than an import of ours; each needs its reason here.
DECLARED_NOT_IMPORTED = {
    "gguf": "transformers reads the embedded models' GGUF files with it",
    "import-linter": "tests/test_layers.py runs its `lint-imports` command",
}


def _setup_cfg_requirements() -> dict[str, list[Requirement]]:
    """setup.cfg's ``install_requires`` and each extra, as parsed requirements."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")

    def parse(text: str) -> list[Requirement]:
        lines = (line.split("#")[0].strip() for line in text.splitlines())
        return [Requirement(line) for line in lines if line]

    groups = {"install_requires": parse(cfg["options"]["install_requires"])}
    for extra, text in cfg["options.extras_require"].items():
        groups[extra] = parse(text)
    return groups


def _extra_requirements(req: Requirement) -> list[Requirement]:
    """What ``req``'s extras add (``lm_eval[hf]`` -> accelerate, peft, ...), read from its metadata."""
    if not req.extras:
        return []
    try:
        declared = [Requirement(r) for r in md.requires(req.name) or []]
    except md.PackageNotFoundError:
        pytest.fail(f"{req} is declared in setup.cfg but not installed: run `bash install.sh`")
    env = default_environment()
    return [r for r in declared if r.marker and any(r.marker.evaluate({**env, "extra": e}) for e in req.extras)]


def _declared_names() -> set[str]:
    names = set()
    for reqs in _setup_cfg_requirements().values():
        for req in reqs:
            names.add(canonicalize_name(req.name))
            names.update(canonicalize_name(r.name) for r in _extra_requirements(req))
    return names


def _closure(roots: list[Requirement]) -> set[str]:
    """Every distribution that installing ``roots`` installs: requirements followed through their
    own (active) markers and requested extras, as pip resolves them."""
    env = default_environment()
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [(r, "") for r in roots]
    while todo:
        req, for_extra = todo.pop()
        if req.marker and not req.marker.evaluate({**env, "extra": for_extra}):
            continue
        name = canonicalize_name(req.name)
        names.add(name)
        try:
            requires = [Requirement(r) for r in md.requires(req.name) or []]
        except md.PackageNotFoundError:
            continue  # not installed (an optional extra such as gemma): nothing of it can be loaded
        for extra in ("",) + tuple(sorted(req.extras)):
            if (name, extra) not in seen:
                seen.add((name, extra))
                todo.extend((r, extra) for r in requires)
    return names


def _python_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        files.append(path)
    return sorted(files)


def _third_party_imports(path: Path) -> list[tuple[str, int]]:
    """Top-level names of the absolute imports in ``path`` that are neither stdlib nor ours."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in LOCAL and top != "__future__":
                found.append((top, node.lineno))
    return found


@functools.lru_cache(maxsize=1)
def _installed_modules() -> dict[str, list[str]]:
    return md.packages_distributions()  # scans every installed distribution: once per session


def _distributions_of(module: str) -> list[str]:
    """The installed distributions that provide top-level ``module``; when none is installed (an
    optional extra), the distribution named like the module."""
    dists = _installed_modules().get(module)
    return [canonicalize_name(d) for d in dists] if dists else [canonicalize_name(module)]


def test_every_import_is_declared_in_setup_cfg():
    declared = _declared_names()
    build = {"setuptools"}  # setup.py runs in pip's build environment: pyproject.toml's build-system.requires
    undeclared = []
    for path in _python_files():
        allowed = declared | build if path.name == "setup.py" else declared
        for module, line in _third_party_imports(path):
            dists = _distributions_of(module)
            if not allowed.intersection(dists):
                undeclared.append(f"{path.relative_to(REPO)}:{line} imports {module!r} "
                                  f"(distribution {'/'.join(dists)}), which setup.cfg does not declare")
    assert not undeclared, "add these to setup.cfg:\n" + "\n".join(undeclared)


def test_every_declared_requirement_is_imported_or_explained():
    imported = {d for path in _python_files() for m, _ in _third_party_imports(path) for d in _distributions_of(m)}
    direct = {canonicalize_name(r.name) for reqs in _setup_cfg_requirements().values() for r in reqs}
    unexplained = sorted(direct - imported - set(DECLARED_NOT_IMPORTED))
    assert not unexplained, f"setup.cfg declares {unexplained}, which nothing imports: drop them or say why"


def test_importing_every_module_loads_only_declared_distributions(tmp_path):
    """A fresh interpreter imports every dynheads module and run_suite.py; each loaded top-level module
    must come from the dependency closure of setup.cfg (install_requires + the test extra)."""
    code = (
        "import importlib, json, pkgutil, runpy, sys\n"
        "import dynheads\n"
        "for m in pkgutil.walk_packages(dynheads.__path__, 'dynheads.'):\n"
        "    if m.name.split('.')[1] not in ('setup', 'run_suite', 'conftest', 'tests'):\n"
        "        importlib.import_module(m.name)\n"
        f"runpy.run_path({str(REPO / 'run_suite.py')!r}, run_name='run_suite_imported')\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    groups = _setup_cfg_requirements()
    allowed = _closure(groups["install_requires"] + groups["test"]) | {"dynheads"}
    where = _installed_modules()
    outside = sorted({f"{m} ({'/'.join(where[m])})" for m in loaded if m in where
                      and not allowed.intersection(canonicalize_name(d) for d in where[m])})
    assert not outside, (f"importing dynheads loads {outside}, which setup.cfg's requirements do not "
                         "bring: declare them (or the extra of the package that imports them)")
