"""Static retrieval heads (Wu et al. style) and the matched head count N, calibrated per model.

Why a calibration run: the paper compares *dynamic* heads (found at each step) with *static* ones, a
ranking fixed in advance from many generations. Ranking on the evaluation samples themselves would
leak them into the baseline, so each task calibrates on documents that evaluation never sees (NIAH:
a reserved seed; HotpotQA: train examples). This module is the part both share; each task folder's
``calibration.py`` says which documents to decode and how to rank heads, and registers itself with
the model layer (:mod:`dynheads.models.static_heads`).

Each calibration prompt is decoded twice after one shared prefill:

* ``none``    -- the task ranks every head from these generations (NIAH: Eq. 1 activation rate;
  HotpotQA: mean Eq. 2 score);
* ``dynamic`` -- the number of heads masked per step gives N, the count of static / random heads to
  mask so that the three ablation conditions remove equally many heads (Appendix A.1): the mean over
  the steps that masked any head (see :func:`dynheads.metrics.dynamism.matched_head_count`).

The result is a JSON file in the user cache, one per (model, dtype, calibration setting), written
atomically and reused by later runs; ``static_heads=PATH`` accepts the same file for the same kind
of analysis (or a plain ranked list of ``[layer, head]`` pairs for any).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from dynheads.metrics.dynamism import masked_means, matched_head_count
from dynheads.models.files import write_atomic
from dynheads.models.loading import cache_root
from dynheads.models.static_heads import FORMAT, StaticHeads, load_static_heads


class Keyed:
    """Settings dataclasses named in the cache by a short stable hash of their fields."""

    def key(self) -> str:
        """Short stable hash naming the cache file of this setting (the file format is part of it)."""
        blob = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def cache_path(model_id: str, setting: Any) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id.strip("/"))
    return cache_root() / "static_heads" / safe / f"{setting.task}_{setting.key()}.json"


def model_id(lm: Any) -> str:
    """``name@dtype``: the calibration cache folder of a model (different dtypes retrieve differently)."""
    return f"{lm.pretrained_name}@{str(lm.model.dtype).replace('torch.', '')}"


def two_passes(lm: Any, docs: list[dict], max_new_tokens: int, desc: str, progress: Callable | None,
               targets: Callable[[dict], tuple[list[int], dict[str, Any]]]) -> tuple[list[Any], list[int]]:
    """Decode every calibration prompt unmasked and dynamically masked after one shared prefill.

    ``targets(doc)`` gives the prompt ids and the engine's tracing arguments (needle or supporting-fact
    indices). Returns the unmasked generations and, over all masked steps, the number of heads masked.
    """
    from dynheads.models.engine import Condition

    iterator = progress(docs, desc=desc, unit="sample") if progress else docs
    plain, masked_counts = [], []
    for doc in iterator:
        ids, tracing = targets(doc)
        none, dynamic = lm.engine.generate_many(ids, max_new_tokens, [Condition("none"), Condition("dynamic")],
                                                eos_token_ids=lm.eos_ids(), **tracing)
        plain.append(none)
        masked_counts.extend(len(step.gated) for step in dynamic.steps)
    return plain, masked_counts


def result(setting: Any, model: str, ranking: list, samples: int, steps: int, masked_counts: list[int]) -> StaticHeads:
    """A :class:`StaticHeads` from a ranking and the dynamic pass's masked-head counts."""
    mean_masked, mean_positive = masked_means(masked_counts)
    return StaticHeads(model=model, kind=setting.task, setting=asdict(setting), ranking=ranking, samples=samples,
                       steps=steps, masked_per_step=mean_masked, masked_per_masked_step=mean_positive,
                       matched_n=matched_head_count(masked_counts) if masked_counts else None)


def load_or_calibrate(setting: Any, model: str, calibrate: Callable[[], StaticHeads]) -> StaticHeads:
    """The cached calibration of ``model`` under ``setting``, computing (``calibrate()``) and caching it when missing."""
    path = cache_path(model, setting)
    if path.is_file():
        return load_static_heads(path)
    static = calibrate()
    write_atomic(path, static.to_json())
    static.path = path
    return static
