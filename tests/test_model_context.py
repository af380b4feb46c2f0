"""The typed views of the loaded model (models/harness/context.py) are what DynHeadsLM offers: every attribute and method
each protocol names exists on a loaded model, so the calibrations, the conditions and Section 5 read nothing else."""

from __future__ import annotations

import pytest

from dynheads.models.harness.context import CalibrationModel, ConditionModel, RagModel


@pytest.mark.slow
def test_the_loaded_model_offers_every_view(smollm2_lm):
    for view in (CalibrationModel, ConditionModel, RagModel):
        assert isinstance(smollm2_lm, view), view.__name__


def test_a_view_names_only_what_its_functions_read():
    class Partial:  # a double with the calibration view's members only
        pretrained_name, model, engine, encoder, tokenizer = "m", None, None, None, None

        def eos_ids(self):
            return {0}

        def decode_batch_size(self):
            return 1

    assert isinstance(Partial(), CalibrationModel) and not isinstance(Partial(), ConditionModel)
