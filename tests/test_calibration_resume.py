"""An interrupted calibration resumes at the next prompt and gives the result of an uninterrupted one.

The model is a stand-in whose engine returns planted generations (per prompt: some heads per step, and
how many the dynamic pass masked), so the test checks the loop, the partial file and the ranking it
feeds, in well under a second.
"""

from __future__ import annotations

import pytest

from dynheads.models.engine import Generation, Step
from dynheads.tasks import calibration
from dynheads.tasks.niah_uuid.calibration import CalibrationSetting, calibrate


class PlantedEngine:
    num_layers, num_heads = 3, 2

    def __init__(self) -> None:
        self.prompts: list[int] = []

    def generate_batch(self, requests, batch_size=1):
        assert len(requests) <= batch_size
        return [self.generate_many(r.prompt_ids, r.max_new_tokens, r.conditions) for r in requests]

    def generate_many(self, ids, max_new_tokens, conditions, eos_token_ids=(), **tracing):
        doc = ids[0]
        self.prompts.append(doc)
        heads = [[(doc % 3, 0)], [(doc % 3, 0), (2, 1)], []]
        none = Generation(ids, [Step(token_id=1, heads=h) for h in heads], "none")
        dynamic = Generation(ids, [Step(token_id=1, gated=h) for h in heads[: 1 + doc % 2]], "dynamic")
        return [none, dynamic]


class StandInLM:
    tokenizer = None

    def __init__(self, batch: int = 1) -> None:
        self.engine = PlantedEngine()
        self.batch = batch

    def decode_batch_size(self):
        return self.batch

    class encoder:  # noqa: N801 (stands in for the lm's PromptEncoder)
        @staticmethod
        def encode_with_needle(text, needle):
            return [int(text)], [0]

    def eos_ids(self):
        return set()


@pytest.fixture
def docs(monkeypatch):
    planted = [{"input": str(i), "needle": "x"} for i in range(5)]
    monkeypatch.setattr("dynheads.tasks.niah_uuid.utils.docs_from_metadata", lambda **_: planted)
    return planted


def _stop_after(count: int):
    def progress(items, **_):
        for i, item in enumerate(items):
            if i == count:
                raise KeyboardInterrupt
            yield item

    return progress


@pytest.mark.parametrize("batch", [1, 2])
def test_an_interrupted_calibration_resumes_at_the_next_prompt(docs, tmp_path, batch):
    setting = CalibrationSetting(lengths=(300,), depths=(0.5,))
    whole = calibrate(StandInLM(), setting, "m", tmp_path / "whole.partial.jsonl")

    lm = StandInLM(batch)
    partial = tmp_path / "cut.partial.jsonl"
    with pytest.raises(KeyboardInterrupt):
        calibrate(lm, setting, "m", partial, progress=_stop_after(2))
    assert lm.engine.prompts == [0, 1] and len(partial.read_text().splitlines()) == 2
    partial.write_text(partial.read_text() + '{"doc": 2, "heads": [[')  # a line torn by the interruption
    resumed = calibrate(lm, setting, "m", partial)
    assert lm.engine.prompts == [0, 1, 2, 3, 4]  # prompts 0 and 1 were not decoded again
    assert resumed.ranking == whole.ranking and resumed.steps == whole.steps == 15
    assert resumed.matched_n == whole.matched_n and resumed.masked_per_step == whole.masked_per_step
    assert whole.ranking[0][:2] == (2, 1)  # active at 5 of 15 steps, more than any other head


def test_the_partial_file_is_removed_once_the_result_is_cached(docs, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNHEADS_CACHE", str(tmp_path))
    setting = CalibrationSetting(lengths=(300,), depths=(0.5,))
    lm = StandInLM()
    static = calibration.load_or_calibrate(setting, "m@float32", lambda partial: calibrate(lm, setting, "m", partial))
    assert static.path.is_file() and not list(static.path.parent.glob("*.partial.jsonl"))
    again = calibration.load_or_calibrate(setting, "m@float32", lambda partial: pytest.fail("recomputed"))
    assert again.ranking == static.ranking
