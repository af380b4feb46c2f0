"""Static-head calibration of SmolLM2 through DynHeadsLM: cache file, reuse, user files, seed guard.

The calibration grid is one 300-token sample (depth 0.5), so the whole module needs one calibration
run. The cache root is a temporary folder (``$DYNHEADS_CACHE``) holding a symlink to the user's
de-quantised model folder: the model loads without de-quantising again, and the user's cached
calibration files are neither read nor written.
"""

from __future__ import annotations

import dataclasses
import copy
import json
import math
from pathlib import Path

import pytest

import lm_eval
from lm_eval.tasks import TaskManager

from dynheads.models.harness.request_conditions import fixed_heads
from dynheads.models.harness.static_heads import FORMAT, load_static_heads
import dynheads.tasks.hotpotqa_sf  # noqa: F401  (registers the reasoning calibration that a legacy file names)
from dynheads.tasks.niah_uuid import calibration
from dynheads.tasks.niah_uuid.calibration import CALIBRATION_SEED, CalibrationSetting, setting_from
from dynheads.spec import ConditionSpec
from dynheads.models.engine import DecodingError
from dynheads.models.harness.lm import DynHeadsLM
from dynheads.tasks.niah_uuid.utils import docs_from_metadata

pytestmark = pytest.mark.slow  # loads the embedded SmolLM2 model

TASKS_DIR = str(Path(__file__).resolve().parent.parent / "tasks")
LAYERS, HEADS = 30, 9  # SmolLM2-135M


@pytest.fixture(scope="module")
def cache_dir(isolated_cache):
    return isolated_cache.parent


@pytest.fixture(scope="module")
def lm(cache_dir, smollm2_lm):
    return smollm2_lm  # the session's one loaded model: the one-document calibration is computed (or read) once


@pytest.fixture(scope="module")
def static(lm):
    return lm.static()  # the one calibration run of this module


def test_calibration_writes_the_cache_file(lm, static, cache_dir):
    setting = setting_from(lm.calibration_options)
    assert setting == CalibrationSetting(lengths=(300,), depths=(0.5,), runs=1)
    path = cache_dir / "static_heads" / "smollm2_float32" / f"niah_{setting.key()}.json"
    assert static.path == path and path.is_file()
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT == 2
    assert data["model"] == "smollm2@float32"
    assert data["setting"] == {"lengths": [300], "depths": [0.5], "runs": 1, "seed": CALIBRATION_SEED,
                               "max_new_tokens": 64, "haystack_file": None}
    assert data["samples"] == 1
    steps = data["steps"]
    assert isinstance(steps, int) and 0 < steps <= 64
    rows = data["heads"]
    heads = [(l, h) for l, h, _ in rows]
    assert sorted(heads) == [(l, h) for l in range(LAYERS) for h in range(HEADS)]  # every head exactly once
    scores = [s for _, _, s in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0  # copying the UUID uses some retrieval head
    for (l1, h1, s1), (l2, h2, s2) in zip(rows, rows[1:]):
        assert s1 > s2 or (l1, h1) < (l2, h2)  # ties by (layer, head)
    for s in scores:  # an activation rate: (steps where active) / steps
        assert abs(s * steps - round(s * steps)) < 1e-9
    assert isinstance(data["matched_n"], int) and not isinstance(data["matched_n"], bool)
    assert data["masked_per_masked_step"] >= data["masked_per_step"] > 0
    assert data["matched_n"] == math.floor(data["masked_per_masked_step"] + 0.5)  # steps that masked something
    assert static.heads == heads
    assert static.matched_n == data["matched_n"]
    assert lm.matched_count() == data["matched_n"]


def test_calibration_ranking_recomputed_independently(lm, static):
    """Scores = Eq. 1 activation rates of the ungated decode of the calibration-seed document; N from dynamic."""
    (doc,) = docs_from_metadata(tokenizer=lm.tokenizer, lengths=[300], depths=[0.5], runs=1, seed=CALIBRATION_SEED)
    ids, needle = lm.encoder.encode_with_needle(doc["input"], doc["needle"])
    plain = lm.engine.generate(ids, 64, target=needle, eos_token_ids=lm.eos_ids())
    counts: dict[tuple[int, int], int] = {}
    for step in plain.steps:
        for head in step.heads:
            counts[head] = counts.get(head, 0) + 1
    assert static.steps == len(plain.steps)
    got = {(l, h): s for l, h, s in static.ranking}
    for head, score in got.items():
        assert score == pytest.approx(counts.get(head, 0) / len(plain.steps), abs=1e-12), head
    dynamic = lm.engine.generate(ids, 64, target=needle, mask="dynamic", eos_token_ids=lm.eos_ids())
    masked = [len(s.gated) for s in dynamic.steps]
    assert static.masked_per_step == pytest.approx(sum(masked) / len(masked), abs=1e-12)
    positive = [m for m in masked if m]
    assert static.masked_per_masked_step == pytest.approx(sum(positive) / len(positive), abs=1e-12)


def test_second_load_reuses_the_file(lm, static, monkeypatch):
    path = static.path
    mtime = path.stat().st_mtime_ns

    def no_calibration(*_args, **_kwargs):
        raise AssertionError("calibration ran again instead of reading the cache file")

    monkeypatch.setattr(calibration, "calibrate", no_calibration)
    saved = lm._static
    lm._static = {}
    try:
        again = lm.static()
    finally:
        lm._static = saved
    assert again == static  # model, setting, ranking, samples, steps, masked_per_step, matched_n
    assert again.heads == static.heads
    assert again.path == path
    assert path.stat().st_mtime_ns == mtime
    # another grid is another file: the key covers every field of the setting
    base = setting_from(lm.calibration_options)
    assert CalibrationSetting(lengths=(300,), depths=(0.0,)).key() != base.key()
    assert CalibrationSetting(lengths=(300,), depths=(0.5,), seed=1).key() != base.key()
    assert CalibrationSetting(lengths=(300,), depths=(0.5,)).key() == base.key()


def _with_source(lm: DynHeadsLM, source: str, heads=None) -> DynHeadsLM:
    """The same loaded model with another static_heads source (no second model load)."""
    clone = copy.copy(lm)
    clone.settings = dataclasses.replace(lm.settings, static=dataclasses.replace(lm.settings.static, source=source),
                                         mask=dataclasses.replace(lm.settings.mask, heads=heads))
    clone._static = {}
    return clone


def test_static_heads_path_loads_user_files(lm, static, tmp_path):
    # 1. the calibration layout, copied elsewhere
    full = tmp_path / "calibrated.json"
    full.write_text(static.path.read_text())
    user = _with_source(lm, str(full))
    loaded = user.static()
    assert loaded == static and loaded.path == full
    assert user.matched_count() == static.matched_n
    assert fixed_heads(user, ConditionSpec("mask", "static"), "niah_uuid", 0) == tuple(static.heads[: static.matched_n])

    # 2. a plain ranked list of [layer, head] pairs: order kept, no scores, no matched N
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([[17, 3], [0, 0], [29, 8]]))
    user = _with_source(lm, str(plain))
    loaded = user.static()
    assert loaded.heads == [(17, 3), (0, 0), (29, 8)]
    assert all(math.isnan(s) for _, _, s in loaded.ranking)
    assert loaded.matched_n is None
    with pytest.raises(ValueError, match="no matched head count"):
        user.matched_count()
    user = _with_source(lm, str(plain), heads=2)
    assert user.matched_count() == 2
    assert fixed_heads(user, ConditionSpec("mask", "static"), "niah_uuid", 0) == ((17, 3), (0, 0))
    assert load_static_heads(plain).heads == [(17, 3), (0, 0), (29, 8)]

    # 3. a calibration file serves only its own kind; a plain list serves both
    assert _with_source(lm, str(plain)).static("reasoning").heads == [(17, 3), (0, 0), (29, 8)]
    with pytest.raises(ValueError, match=r"is a copy_paste calibration but this request needs reasoning static heads"):
        _with_source(lm, str(full)).static("reasoning")
    reasoning = tmp_path / "reasoning.json"
    reasoning.write_text(json.dumps({**json.loads(static.path.read_text()), "task": "hotpotqa", "score": "reasoning", "setting": {}}))
    assert load_static_heads(reasoning, "reasoning").heads == static.heads
    with pytest.raises(ValueError, match="is a reasoning calibration but this request needs copy_paste") as info:
        load_static_heads(reasoning, "copy_paste")
    assert "\n" not in str(info.value)
    # a file written before files recorded their score: its task's registered calibration gives the kind
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps({k: v for k, v in json.loads(reasoning.read_text()).items() if k != "score"}))
    assert load_static_heads(legacy).kind == "reasoning"
    with pytest.raises(ValueError, match="is a reasoning calibration"):
        load_static_heads(legacy, "copy_paste")


def test_bad_static_heads_files_are_refused(lm, tmp_path):
    with pytest.raises(ValueError, match=r"static_heads='/no/such\.json' is not a file"):
        DynHeadsLM(static_heads="/no/such.json")
    with pytest.raises(ValueError, match=r"static_heads='/no/such\.json' cannot be read"):
        load_static_heads("/no/such.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="static_heads=.* cannot be read"):
        _with_source(lm, str(broken)).static()
    odd_files = {"not_int.json": ([["a", 1]], "not a pair of integers"),
                 "float.json": ([[1.7, 2]], "not a pair of integers"),
                 "bad_n.json": ({"heads": [[0, 0]], "matched_n": 2.5}, "not a head count")}
    for name, (content, message) in odd_files.items():
        odd = tmp_path / name
        odd.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            load_static_heads(odd)
    for content in ([], {"heads": []}, [[1]], {"model": "x"}):
        empty = tmp_path / "empty.json"
        empty.write_text(json.dumps(content))
        with pytest.raises(ValueError, match="holds no ranked"):
            _with_source(lm, str(empty)).static()
    for missing in ([30, 1], [0, 9]):  # one layer / one head past the model
        other = tmp_path / "other_model.json"
        other.write_text(json.dumps([[0, 0], missing]))
        with pytest.raises(ValueError, match=rf"head \({missing[0]}, {missing[1]}\) does not exist"):
            _with_source(lm, str(other)).static()


def test_evaluation_refuses_the_calibration_seed(lm):
    metadata = {"lengths": [300], "depths": [0.5], "runs": 1, "seed": CALIBRATION_SEED}
    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False, metadata=metadata)
    with pytest.raises(DecodingError, match="calibration seed"):
        lm_eval.simple_evaluate(model=lm, tasks=["niah_uuid"], task_manager=manager)
