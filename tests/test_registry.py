"""The stage registry: prerequisites run first and once, in registry order; unknown names and cycles are one error."""

import importlib.util
from pathlib import Path

import pytest

from dynheads.suite.registry import Stage, run_order

ROOT = Path(__file__).resolve().parents[1]


def test_prerequisites_run_first_once_in_registry_order():
    stages = {"cal_a": Stage(None), "cal_b": Stage(None), "a": Stage(None, ("cal_a",)),
              "probe": Stage(None, ("cal_b",)), "rag": Stage(None, ("cal_b", "probe"))}
    assert run_order(stages, ["rag"]) == ["cal_b", "probe", "rag"]
    assert run_order(stages, ["rag", "a", "rag"]) == ["cal_a", "a", "cal_b", "probe", "rag"]
    assert run_order(stages, list(stages)) == list(stages)


def test_unknown_stage_and_cycle_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown stage.*nope; choose from a"):
        run_order({"a": Stage(None)}, ["nope"])
    with pytest.raises(ValueError, match="a -> b -> a need each other"):
        run_order({"a": Stage(None, ("b",)), "b": Stage(None, ("a",))}, ["a"])
    with pytest.raises(ValueError, match="'a' needs unknown stage 'c'"):
        run_order({"a": Stage(None, ("c",))}, ["a"])


def test_suite_registry_rag_needs_the_hotpotqa_probe():
    spec = importlib.util.spec_from_file_location("run_suite_registry", ROOT / "run_suite.py")
    run_suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_suite)
    assert run_order(run_suite.STAGES, ["rag"]) == ["calibrate_hotpotqa", "hotpotqa_probes", "rag"]
    assert run_order(run_suite.STAGES, list(run_suite.STAGES)) == list(run_suite.STAGES)  # the registry lists needs first


def test_the_suite_registers_both_tasks_calibrations():
    """A fresh interpreter that loads run_suite.py can calibrate both kinds of document (the suite imports the tasks)."""
    import subprocess
    import sys

    code = ("import runpy; runpy.run_path(%r, run_name='loaded');"
            "from dynheads.models.harness.static_heads import calibration_for;"
            "print(calibration_for('copy_paste') is not None, calibration_for('reasoning') is not None)") % str(ROOT / "run_suite.py")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
