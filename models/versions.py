"""The torch and transformers majors the suite is tested on, checked once at start-up.

Why: the trace engine relies on transformers 5.x semantics (``cache.crop`` on sliding-window cache
layers, ``AttentionInterface`` registration, the attention mask layouts it passes) and on torch 2's
sdpa. A different major version may decode differently without failing loudly, so it is refused in
one line naming the tested range. ``setup.cfg`` declares the same ranges.
"""

from __future__ import annotations

import importlib.metadata

# package -> (tested major, tested range as declared in setup.cfg)
TESTED = {"torch": (2, ">=2.13,<3"), "transformers": (5, ">=5.24,<6")}


class UntestedVersionError(ImportError):
    """An installed torch / transformers whose major version the suite was not tested on."""


def check_versions(version=importlib.metadata.version) -> None:
    """Raise :class:`UntestedVersionError` if torch or transformers has an untested major version."""
    for package, (major, declared) in TESTED.items():
        try:
            installed = version(package)
        except importlib.metadata.PackageNotFoundError:
            continue  # its own import will fail with a clear message
        if not installed.split(".")[0].isdigit() or int(installed.split(".")[0]) != major:
            raise UntestedVersionError(
                f"dynheads: {package} {installed} is untested (the trace engine is tested on {package}{declared}); "
                f"install it with: pip install '{package}{declared}'")


# what a run records in its results (model.json) and the README block names: the packages whose versions can change
# the greedy tokens (torch, transformers), the scoring (lm-eval) or the statistics (numpy, scikit-learn)
RECORDED = ("torch", "transformers", "lm_eval", "numpy", "scikit-learn")


def installed_versions(version=importlib.metadata.version) -> dict[str, str]:
    """``{package: version}`` of :data:`RECORDED` as installed ("absent" for one that is not)."""
    found = {}
    for package in RECORDED:
        try:
            found[package] = version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "absent"
    return found
