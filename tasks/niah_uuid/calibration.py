"""NIAH static heads: Eq. 1 activation rates on needle prompts drawn with a seed evaluation never uses.

Each head's static score is its Eq. 1 activation rate over all calibration steps (steps where it is
active / all steps; :func:`dynheads.metrics.dynamism.rank_static_heads`); the shared loop, cache and
N matching are in :mod:`dynheads.tasks.calibration`. Registered with the model layer as the ``niah``
calibration (see this package's ``__init__``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from ...metrics.dynamism import rank_static_heads
from ...traces import COPY_PASTE
from ...models.harness.static_heads import StaticHeads
from ..calibration import Keyed, masked_counts, registered, result, two_passes
from ...models.harness.context import CalibrationModel

CALIBRATION_SEED = 1_000_003


@dataclass(frozen=True)
class CalibrationSetting(Keyed):
    """Which NIAH samples calibrate the static heads (defaults sized for 2 CPU cores)."""

    task: ClassVar[str] = "niah"  # names the cache file and is recorded in it
    kind: ClassVar[str] = COPY_PASTE  # the retrieval score it ranks heads by

    lengths: tuple[int, ...] = (500, 1000, 1500, 2000)
    depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    runs: int = 1
    seed: int = CALIBRATION_SEED
    max_new_tokens: int = 64
    haystack_file: str | None = None


def setting_from(options: dict[str, Any]) -> CalibrationSetting:
    """The setting for a model's ``calib_lengths`` / ``calib_depths`` / ``calib_runs`` (None = default)."""
    given = {key: options.get(key) for key in ("lengths", "depths", "runs")}
    return CalibrationSetting(**{key: value for key, value in given.items() if value is not None})


def calibrate(lm: CalibrationModel, setting: CalibrationSetting, model: str, partial: Path, progress: Callable | None = None) -> StaticHeads:
    """Decode the calibration grid on ``lm`` (a ``DynHeadsLM``) and rank heads by Eq. 1 activation rate."""
    from .utils import docs_from_metadata

    docs = docs_from_metadata(tokenizer=lm.tokenizer, lengths=list(setting.lengths), depths=list(setting.depths),
                              runs=setting.runs, seed=setting.seed, haystack_file=setting.haystack_file)

    def targets(doc: dict) -> tuple[list[int], dict[str, Any]]:
        ids, needle = lm.encoder.encode_with_needle(doc["input"], doc["needle"])
        return ids, {"target": needle}

    records = two_passes(lm, docs, setting.max_new_tokens, f"calibrating static heads ({model})", progress, targets, partial)
    plain_steps = [[[tuple(h) for h in step] for step in record["heads"]] for record in records]
    ranking = rank_static_heads(plain_steps, lm.engine.num_layers, lm.engine.num_heads)
    return result(setting, model, ranking, len(docs), sum(len(s) for s in plain_steps), masked_counts(records))


CALIBRATION = registered(CalibrationSetting, setting_from, calibrate, reserved_seed=CALIBRATION_SEED)
