"""An untested torch / transformers major version is one clear error; the tested ones pass."""

from __future__ import annotations

import importlib.metadata

import pytest

from dynheads.models.versions import TESTED, UntestedVersionError, check_versions


def test_installed_versions_are_the_tested_majors():
    check_versions()  # what this machine runs


@pytest.mark.parametrize("package, installed", [("transformers", "4.57.1"), ("transformers", "6.0.0"), ("torch", "3.0.0")])
def test_an_untested_major_is_refused_in_one_line(package, installed):
    def fake(name: str) -> str:
        return installed if name == package else f"{TESTED[name][0]}.99.0"

    with pytest.raises(UntestedVersionError, match=rf"{package} {installed} is untested") as info:
        check_versions(fake)
    message = str(info.value)
    assert "\n" not in message and f"pip install '{package}{TESTED[package][1]}'" in message


def test_a_missing_package_is_left_to_its_own_import():
    def fake(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    check_versions(fake)


def test_the_declared_ranges_match_setup_cfg():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "setup.cfg").read_text()
    for package, (_, declared) in TESTED.items():
        assert f"    {package}{declared}\n" in text, package


def _locked() -> dict[str, str]:
    from pathlib import Path

    lines = (Path(__file__).resolve().parent.parent / "constraints.txt").read_text().splitlines()
    return {name.lower().replace("_", "-"): version for name, version in
            (line.split("==") for line in lines if line and not line.startswith("#"))}


def test_the_lock_pins_every_recorded_package_and_is_what_is_installed(monkeypatch):
    """install.sh installs constraints.txt by default: every recorded package is pinned there and, unless the install
    was unlocked on purpose (DYNHEADS_UNLOCKED=1), the installed versions are the locked ones."""
    import os

    from dynheads.models.versions import RECORDED, installed_versions

    locked = _locked()
    assert all(package.replace("_", "-") in locked for package in RECORDED), sorted(locked)
    if os.environ.get("DYNHEADS_UNLOCKED") == "1":
        pytest.skip("DYNHEADS_UNLOCKED=1: the install took your own versions")
    installed = installed_versions()
    differ = {p: (v, locked[p.replace("_", "-")]) for p, v in installed.items()
              if v.split("+")[0] != locked[p.replace("_", "-")]}
    assert not differ, f"installed differs from constraints.txt (installed, locked): {differ}; rerun bash install.sh"
