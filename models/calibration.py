"""Static retrieval heads (Wu et al. style) and the matched head count N, calibrated per model.

Why a calibration run: the paper compares *dynamic* heads (found at each step) with *static* ones, a
ranking fixed in advance from many NIAH generations. Ranking on the evaluation samples themselves
would leak them into the baseline, so the ranking comes from NIAH samples drawn with a seed that
evaluation never uses (:data:`CALIBRATION_SEED`; the evaluation refuses documents carrying it).

Each calibration prompt is decoded twice after one shared prefill:

* ``none``    -- each head's score is its Eq. 1 activation rate over all calibration steps
  (:func:`dynheads.metrics.dynamism.rank_static_heads`); the ranking lists every head;
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
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..metrics.dynamism import masked_means, matched_head_count, rank_heads_by_mean_score, rank_static_heads
from ..metrics.reasoning import DEFAULT_LOCAL_WINDOW, DEFAULT_SINK_TOKENS, DEFAULT_THRESHOLD
from ..metrics.retrieval import Head
from .files import write_atomic
from .loading import cache_root

CALIBRATION_SEED = 1_000_003
FORMAT = 2  # 2: N averages over the steps that masked a head (part of the cache key)


class _Keyed:
    """Settings dataclasses named in the cache by a short stable hash of their fields."""

    def key(self) -> str:
        """Short stable hash naming the cache file of this setting (the file format is part of it)."""
        blob = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CalibrationSetting(_Keyed):
    """Which NIAH samples calibrate the static heads (defaults sized for 2 CPU cores)."""

    task: ClassVar[str] = "niah"

    lengths: tuple[int, ...] = (500, 1000, 1500, 2000)
    depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    runs: int = 1
    seed: int = CALIBRATION_SEED
    max_new_tokens: int = 64
    haystack_file: str | None = None


@dataclass(frozen=True)
class ReasoningCalibrationSetting(_Keyed):
    """Which HotpotQA *train* examples calibrate the static reasoning heads (Eq. 2).

    Train examples keep the calibration disjoint from the dev examples that are evaluated. A head's
    static score is its mean Eq. 2 score over all calibration steps (the issue's "top-N by mean Eq. 2
    score"); N comes from the dynamic-masking pass as for NIAH.
    """

    task: ClassVar[str] = "hotpotqa"
    n: int = 20
    split: str = "train"
    sink_tokens: int = DEFAULT_SINK_TOKENS
    local_window: int = DEFAULT_LOCAL_WINDOW
    threshold: float = DEFAULT_THRESHOLD
    max_new_tokens: int = 32


SETTINGS = {"niah": CalibrationSetting, "hotpotqa": ReasoningCalibrationSetting}


@dataclass
class StaticHeads:
    """A calibration result: every head ranked by its static score, and the matched count N."""

    model: str
    setting: CalibrationSetting | ReasoningCalibrationSetting
    ranking: list[tuple[int, int, float]]
    samples: int
    steps: int
    masked_per_step: float | None = None
    masked_per_masked_step: float | None = None
    matched_n: int | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def heads(self) -> list[Head]:
        return [(layer, head) for layer, head, _ in self.ranking]

    @property
    def informative(self) -> bool:
        """False when no head was ever active in calibration: the ranking is then only index order,
        and statistics against it (Jaccard with static heads) must be reported as absent."""
        return any(score > 0 or score != score for _, _, score in self.ranking)  # NaN: a user list, no scores

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "task": self.setting.task, "model": self.model, "setting": asdict(self.setting), "samples": self.samples,
            "steps": self.steps, "masked_per_step": self.masked_per_step,
            "masked_per_masked_step": self.masked_per_masked_step, "matched_n": self.matched_n,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "heads": [[layer, head, score] for layer, head, score in self.ranking],
        }, indent=1)


def load_static_heads(path: str | os.PathLike, kind: str | None = None) -> StaticHeads:
    """Read a calibration file, or a plain JSON list of ranked ``[layer, head]`` pairs.

    ``kind`` (``niah`` / ``hotpotqa``): the analysis the heads are for. A calibration file records the
    task it was made on, and an Eq. 1 NIAH ranking is not a ranking of Eq. 2 reasoning heads (nor the
    reverse), so a file of the other kind is refused; a plain list carries no task and serves any.
    """
    def bad(problem: str) -> ValueError:
        return ValueError(f"dynheads: static_heads={str(path)!r} {problem}; give a calibration file or a JSON list like [[12, 3], [14, 7]]")

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise bad(f"cannot be read ({exc})") from None
    rows = data.get("heads") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and len(r) >= 2 for r in rows):
        raise bad("holds no ranked [layer, head] pairs")
    ranking = []
    for r in rows:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in r[:2]):
            raise bad(f"has a head {r[:2]!r} that is not a pair of integers")
        score = r[2] if len(r) > 2 and isinstance(r[2], (int, float)) else float("nan")
        ranking.append((r[0], r[1], float(score)))
    meta = data if isinstance(data, dict) else {}
    if kind is not None and meta and meta.get("task", "niah") != kind:
        raise ValueError(f"dynheads: static_heads={str(path)!r} is a {meta.get('task', 'niah')} calibration but this "
                         f"request needs {kind} static heads; use static_heads=auto, or a {kind} calibration file")
    kind = SETTINGS.get(meta.get("task", "niah"), CalibrationSetting)
    known = {f for f in kind.__dataclass_fields__}
    raw = meta.get("setting", {}) if isinstance(meta.get("setting", {}), dict) else {}
    setting = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known})
    matched = meta.get("matched_n")
    if matched is not None and (isinstance(matched, bool) or not isinstance(matched, int) or matched < 0):
        raise bad(f"has matched_n={matched!r}, which is not a head count")
    return StaticHeads(model=str(meta.get("model", "?")), setting=setting, ranking=ranking,
                       samples=int(meta.get("samples", 0)), steps=int(meta.get("steps", 0)),
                       masked_per_step=meta.get("masked_per_step"),
                       masked_per_masked_step=meta.get("masked_per_masked_step"), matched_n=matched, path=Path(path))


def cache_path(model_id: str, setting: CalibrationSetting | ReasoningCalibrationSetting) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id.strip("/"))
    return cache_root() / "static_heads" / safe / f"{setting.task}_{setting.key()}.json"


def _two_passes(lm: Any, docs: list[dict], max_new_tokens: int, desc: str, progress: Callable | None,
                targets: Callable[[dict], tuple[list[int], dict[str, Any]]]) -> tuple[list[Any], list[int]]:
    """Decode every calibration prompt unmasked and dynamically masked after one shared prefill.

    ``targets(doc)`` gives the prompt ids and the engine's tracing arguments (needle or supporting-fact
    indices). Returns the unmasked generations and, over all masked steps, the number of heads masked.
    """
    from .engine import Condition

    iterator = progress(docs, desc=desc, unit="sample") if progress else docs
    plain, masked_counts = [], []
    for doc in iterator:
        ids, tracing = targets(doc)
        none, dynamic = lm.engine.generate_many(ids, max_new_tokens, [Condition("none"), Condition("dynamic")],
                                                eos_token_ids=lm.eos_ids(), **tracing)
        plain.append(none)
        masked_counts.extend(len(step.gated) for step in dynamic.steps)
    return plain, masked_counts


def _result(setting: Any, model_id: str, ranking: list, samples: int, steps: int, masked_counts: list[int]) -> StaticHeads:
    mean_masked, mean_positive = masked_means(masked_counts)
    return StaticHeads(model=model_id, setting=setting, ranking=ranking, samples=samples, steps=steps,
                       masked_per_step=mean_masked, masked_per_masked_step=mean_positive,
                       matched_n=matched_head_count(masked_counts) if masked_counts else None)


def calibrate_reasoning(lm: Any, setting: ReasoningCalibrationSetting, model_id: str, progress: Callable | None = None) -> StaticHeads:
    """Eq. 2 calibration on HotpotQA train examples: heads ranked by mean reasoning score, and N."""
    from ..tasks.hotpotqa_sf.utils import docs_from_metadata
    from .engine import ReasoningScore

    docs = docs_from_metadata(tokenizer=lm.tokenizer, split=setting.split, n=setting.n)
    spec = ReasoningScore(setting.sink_tokens, setting.local_window, setting.threshold)

    def targets(doc: dict) -> tuple[list[int], dict[str, Any]]:
        ids, offsets = lm._encode_with_offsets(doc["input"])
        return ids, {"support_indices": lm._support_indices(doc["input"], doc, offsets, 0), "reasoning": spec}

    plain, masked_counts = _two_passes(lm, docs, setting.max_new_tokens, f"calibrating static reasoning heads ({model_id})",
                                       progress, targets)
    step_scores = [step.scores for gen in plain for step in gen.steps]
    ranking = rank_heads_by_mean_score(step_scores, lm.engine.num_layers, lm.engine.num_heads)
    return _result(setting, model_id, ranking, len(docs), len(step_scores), masked_counts)


def calibrate(
    lm: Any,
    setting: CalibrationSetting | ReasoningCalibrationSetting,
    model_id: str,
    progress: Callable | None = None,
) -> StaticHeads:
    """Run the calibration on ``lm`` (a :class:`~dynheads.models.lm.DynHeadsLM`) and return the result.

    ``progress`` wraps the sample iterator (e.g. ``tqdm``); the caller decides about caching.
    """
    if isinstance(setting, ReasoningCalibrationSetting):
        return calibrate_reasoning(lm, setting, model_id, progress)
    from ..tasks.niah_uuid.utils import docs_from_metadata

    docs = docs_from_metadata(tokenizer=lm.tokenizer, lengths=list(setting.lengths), depths=list(setting.depths),
                              runs=setting.runs, seed=setting.seed, haystack_file=setting.haystack_file)

    def targets(doc: dict) -> tuple[list[int], dict[str, Any]]:
        ids, needle = lm.encode_with_needle(doc["input"], doc["needle"])
        return ids, {"needle_indices": needle}

    plain, masked_counts = _two_passes(lm, docs, setting.max_new_tokens, f"calibrating static heads ({model_id})",
                                       progress, targets)
    plain_steps = [[step.heads for step in gen.steps] for gen in plain]
    ranking = rank_static_heads(plain_steps, lm.engine.num_layers, lm.engine.num_heads)
    return _result(setting, model_id, ranking, len(docs), sum(len(s) for s in plain_steps), masked_counts)


def load_or_calibrate(lm: Any, setting: CalibrationSetting | ReasoningCalibrationSetting, model_id: str, progress: Callable | None = None) -> StaticHeads:
    """The cached calibration of ``model_id`` under ``setting``, computing and caching it when missing."""
    path = cache_path(model_id, setting)
    if path.is_file():
        return load_static_heads(path)
    result = calibrate(lm, setting, model_id, progress)
    write_atomic(path, result.to_json())
    result.path = path
    return result
