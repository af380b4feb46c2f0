"""Build script for dynheads; the metadata lives in pyproject.toml.

This file does what pyproject.toml cannot:

* The repository root *is* the package ``dynheads`` (``package_dir = {"dynheads": "."}``).
  Its packages are found here (every folder under models/, metrics/, probes/, tasks/;
  task folders need no __init__.py), and root scripts such as this file and
  run_suite.py are kept out of the installed package.
* ``dynheads-autoload.pth`` goes into site-packages, for ``pip install .`` (build_py
  writes it into build_lib) and for ``pip install -e .`` (editable_wheel writes it into
  the editable wheel). Its one line imports ``dynheads._autoload``, which teaches a stock
  ``lm_eval`` the model ``dynheads`` and dynheads' task folder (see _autoload.py).
"""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

ROOT = Path(__file__).resolve().parent
SUBPACKAGES = ("models", "metrics", "probes", "tasks", "suite", "report")
NOT_IN_PACKAGE = {"setup", "run_suite", "conftest", "noxfile"}  # root .py files that are no modules

PTH_NAME = "dynheads-autoload.pth"  # sorts after setuptools' "__editable__.*.pth"
_PTH_CODE = (
    "try:\n"
    "    import dynheads._autoload\n"
    "except Exception as e:\n"
    "    if getattr(e, 'name', None) != 'dynheads':\n"
    "        sys.stderr.write('dynheads: lm_eval autoload disabled: %r\\n' % (e,))\n"
)
PTH_LINE = "import sys; exec(%r)\n" % _PTH_CODE


def _packages():
    packages = ["dynheads"]
    for sub in SUBPACKAGES:
        base = ROOT / sub
        if not base.is_dir():
            continue
        for folder, dirs, _files in os.walk(base):
            rel = Path(folder).relative_to(ROOT)
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            packages.append(".".join(("dynheads",) + rel.parts))
    return packages


def _write_pth(folder):
    Path(folder, PTH_NAME).write_text(PTH_LINE, encoding="utf-8")
    return str(Path(folder, PTH_NAME))


class build_py(_build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "dynheads":
            modules = [m for m in modules if m[1] not in NOT_IN_PACKAGE]
        return modules

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.mkpath(self.build_lib)
            _write_pth(self.build_lib)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs


cmdclass = {"build_py": build_py}

try:  # PEP 660 editable installs (setuptools >= 64)
    from setuptools.command.editable_wheel import editable_wheel as _editable_wheel
except ImportError:  # pragma: no cover
    _editable_wheel = None

if _editable_wheel is not None:

    class editable_wheel(_editable_wheel):
        # The editable wheel writes everything in its unpacked folder into the wheel,
        # and setuptools hands that folder to _install_namespaces before building it.
        _dynheads_pth = False

        def _install_namespaces(self, installation_dir, pth_prefix):
            super()._install_namespaces(installation_dir, pth_prefix)
            _write_pth(installation_dir)
            self._dynheads_pth = True

        def run(self):
            super().run()
            if not self._dynheads_pth:
                raise RuntimeError(
                    f"dynheads: this setuptools did not let setup.py add {PTH_NAME} to the "
                    "editable wheel; without it `lm_eval --model dynheads` would not work"
                )

    cmdclass["editable_wheel"] = editable_wheel


setup(
    package_dir={"dynheads": "."},
    packages=_packages(),
    package_data={
        "dynheads.tasks": ["**/*.yaml", "**/*.yml", "data/**/*"],
        # the declared claims every verdict is decided by (suite/verdicts.py reads it)
        "dynheads.suite": ["claims.yaml"],
        # the trace explorer's page (data and script inlined into it per document)
        "dynheads.report": ["explorer.html"],
    },
    exclude_package_data={"": ["__pycache__/*", "*.pyc"]},
    cmdclass=cmdclass,
)
