"""The conditions one request is decoded under, built from the model's settings, and what a cached cell records of them.

Why apart from the lm-eval wrapper: which heads a static / random mask gates, and which policy a ``kv=`` strategy
follows for a document (its static ranking, its seeded random draw, its probe), are decisions of the experiment, not
of lm-eval's interface; ``models/harness/lm.py`` only asks for them per request.
"""

from __future__ import annotations

from typing import Any

from ...metrics.heads import Head, random_heads
from ..engine.conditions import DecodeCondition, mask_condition
from ...util import file_digest
from ..engine.kv import KVPolicy, kv_condition
from ...spec import KV_PREDICTED, ConditionSpec
from .probe_metrics import kv_predictor
from ..engine.scores import COPY_PASTE
from .settings import parse_head_list, parse_kv_strategies
from .context import ConditionModel


def sample_seed(lm: ConditionModel, task: str, sample_key: Any) -> str:
    """The text a document's random draws are seeded with: reproducible, and different for every document
    (``sample_key`` is its content hash, not its position in a run)."""
    return f"{lm.settings.seed}-{task}-{sample_key}"


def fixed_heads(lm: ConditionModel, condition: ConditionSpec, task: str, sample_key: Any, kind: str = COPY_PASTE) -> tuple[Head, ...]:
    """Heads gated at every step under a static or random mask (empty otherwise)."""
    if condition.strategy == "static":
        if isinstance(lm.settings.mask.heads, str):
            return tuple(parse_head_list(lm.settings.mask.heads))
        return tuple(lm.static(kind).heads[: lm.matched_count(kind)])
    if condition.strategy == "random":
        e = lm.engine
        return tuple(random_heads(lm.matched_count(kind), e.num_layers, e.num_heads, sample_seed(lm, task, sample_key)))
    return ()


def kv_policy(lm: ConditionModel, strategy: str, budget: int | float | None, task: str, sample_key: Any, kind: str) -> KVPolicy:
    """The KV-compression condition ``strategy`` for one document: the static ranking of this document's kind,
    random units seeded per document, and for ``dynamic`` and its controls the offset-1 probe (its predictor, and its
    mean training prediction for ``probe_mean``)."""
    static = lm.static(kind) if lm.settings.static.source != "off" else None
    probe = lm.kv_probe if strategy in KV_PREDICTED else None
    predictor = kv_predictor(probe.estimator, probe.meta, kind, probe.path) if probe is not None else None
    mean = getattr(probe.estimator, "mean_output_", None) if probe is not None else None
    return lm.settings.kv.policy(strategy, budget, ranking=tuple(static.heads) if static is not None else (),
                                 seed=sample_seed(lm, task, sample_key), predictor=predictor,
                                 probe_mean=tuple(float(v) for v in mean) if mean is not None else ())


def request_conditions(lm: ConditionModel, task: str, sample_key: Any, kind: str) -> list[DecodeCondition]:
    """Every condition of one request: the ``kv=`` strategies when given, else the masks with their fixed heads."""
    if lm.settings.kv.strategies:
        return [kv_condition(kv_policy(lm, name, budget, task, sample_key, kind)) for name, budget in lm.settings.kv.strategies]
    return [mask_condition(c, fixed_heads(lm, c, task, sample_key, kind)) for c in lm.settings.mask.conditions]


def kv_identity(lm: ConditionModel, kind: str, strategies: list[str]) -> dict[str, Any]:
    """What decides the KV conditions' choices beyond the model (cell keys): the view, the unit, the units each
    strategy keeps whole, the static ranking and the offset-1 probe's file digest."""
    kv, e = lm.settings.kv, lm.engine
    static = lm.static(kind) if lm.settings.static.source != "off" else None
    units = {f"{name}@{budget}": kv.policy(name, budget).units(e.num_layers, e.num_heads, e.num_kv_heads)
             for name, budget in parse_kv_strategies("+".join(strategies))}
    return {"sink": kv.sink, "window": kv.window, "granularity": kv.granularity, "units": units,
            "ranking": [list(h) for h in static.heads] if static is not None else None,
            "probe": file_digest(kv.probe) if kv.probe else None}
