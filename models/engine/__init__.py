"""The trace engine: step-wise decoding that reads retrieval heads at every step, and the conditions it runs under.

The public step API is :mod:`.batch` (:class:`~.batch.DecodeBatch`); :mod:`.trace_engine` decodes requests over it;
:mod:`.conditions` and :mod:`.kv` are the conditions (one class per strategy); :mod:`.scores` finds a step's
retrieval heads (Eq. 1, Eq. 2); :mod:`.attention` is the hook that gates, restricts and records attention rows.
Nothing here knows lm-eval (:mod:`dynheads.models.harness`) or how results are verified (:mod:`dynheads.models.verify`).
"""

from .conditions import DecodeCondition, DecodingError, DynamicMask, FixedMask, Unmasked, mask_condition
from .trace_engine import DecodeRequest, Generation, Step, TraceEngine

__all__ = ["DecodeCondition", "DecodeRequest", "DecodingError", "DynamicMask", "FixedMask", "Generation", "Step",
           "TraceEngine", "Unmasked", "mask_condition"]
