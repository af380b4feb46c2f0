"""HotpotQA static reasoning heads: mean Eq. 2 scores on *train* examples, disjoint from the dev evaluation.

A head's static score is its mean Eq. 2 score over all calibration steps (the issue's "top-N by mean
Eq. 2 score"); N comes from the dynamic-masking pass as for NIAH (shared loop and cache:
:mod:`dynheads.tasks.calibration`). Registered with the model layer as the ``hotpotqa`` calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from ...metrics.dynamism import rank_heads_by_mean_score
from ...metrics.reasoning import DEFAULT_LOCAL_WINDOW, DEFAULT_SINK_TOKENS, DEFAULT_THRESHOLD
from ...traces import REASONING
from ...models.harness.static_heads import StaticHeads
from ..calibration import Keyed, masked_counts, registered, result, two_passes
from ...models.harness.context import CalibrationModel

DEFAULT_EXAMPLES = 20


@dataclass(frozen=True)
class ReasoningCalibrationSetting(Keyed):
    """Which HotpotQA *train* examples calibrate the static reasoning heads (Eq. 2), with which Eq. 2 settings."""

    task: ClassVar[str] = "hotpotqa"  # names the cache file and is recorded in it
    kind: ClassVar[str] = REASONING  # the retrieval score it ranks heads by
    n: int = DEFAULT_EXAMPLES
    split: str = "train"
    sink_tokens: int = DEFAULT_SINK_TOKENS
    local_window: int = DEFAULT_LOCAL_WINDOW
    threshold: float = DEFAULT_THRESHOLD
    max_new_tokens: int = 32


def setting_from(options: dict[str, Any]) -> ReasoningCalibrationSetting:
    """The setting for a model's ``calib_examples`` (None = default) and Eq. 2 settings (``reasoning``)."""
    r = options["reasoning"]
    examples = options.get("examples")
    return ReasoningCalibrationSetting(n=DEFAULT_EXAMPLES if examples is None else int(examples),
                                       sink_tokens=r.sink_tokens, local_window=r.local_window, threshold=r.threshold)


def calibrate(lm: CalibrationModel, setting: ReasoningCalibrationSetting, model: str, partial: Path, progress: Callable | None = None) -> StaticHeads:
    """Decode ``setting.n`` train examples on ``lm`` and rank heads by mean Eq. 2 score."""
    from ...models.engine.scores import ReasoningScore
    from .utils import docs_from_metadata

    docs = docs_from_metadata(tokenizer=lm.tokenizer, split=setting.split, n=setting.n)
    spec = ReasoningScore(setting.sink_tokens, setting.local_window, setting.threshold)

    def targets(doc: dict) -> tuple[list[int], dict[str, Any]]:
        prompt = lm.encoder.encode(doc["input"], doc)
        return prompt.ids, {"target": prompt.support, "score": spec}

    records = two_passes(lm, docs, setting.max_new_tokens, f"calibrating static reasoning heads ({model})", progress,
                         targets, partial)
    step_scores = [scores for record in records for scores in record["scores"] or []]
    ranking = rank_heads_by_mean_score(step_scores, lm.engine.num_layers, lm.engine.num_heads)
    return result(setting, model, ranking, len(docs), len(step_scores), masked_counts(records))


CALIBRATION = registered(ReasoningCalibrationSetting, setting_from, calibrate)
