"""Static retrieval heads as the model layer sees them: a ranked result, its file format, and the
registry through which tasks supply the calibration that produces one.

Why a registry: a calibration builds task prompts (NIAH haystacks, HotpotQA train examples) and
decodes them, so it belongs to the task layer, above models. The ``dynheads`` lm-eval model still
needs static heads on its own (``static_heads=auto`` calibrates on first use), so each task
registers a :class:`Calibration` for the kind of retrieval score its documents use (``copy_paste``:
Eq. 1 needle documents; ``reasoning``: Eq. 2 supporting-fact documents; :mod:`dynheads.models.engine.scores`)
when its package is imported, which lm-eval does when it loads the task. Models never import tasks.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...metrics.heads import Head  # stdlib-only modules: task packages import this one at lm-eval start-up
from ...traces import COPY_PASTE, REASONING

FORMAT = 2  # 2: N averages over the steps that masked a head (part of the cache key)


@dataclass
class StaticHeads:
    """A calibration result: every head ranked by its static score, and the matched count N.

    ``setting`` is the calibration's settings as a plain dict (what the task's setting dataclass
    holds); ``kind`` the retrieval score it ranks heads by (``copy_paste`` / ``reasoning``); ``task`` the
    task whose documents calibrated it (recorded in the file).
    """

    model: str
    kind: str
    setting: dict[str, Any]
    ranking: list[tuple[int, int, float]]
    samples: int
    steps: int
    masked_per_step: float | None = None
    masked_per_masked_step: float | None = None
    matched_n: int | None = None
    task: str = ""
    path: Path | None = field(default=None, compare=False)
    computed: bool = field(default=False, compare=False)  # True when this run calibrated (not read from the cache)

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
            "format": FORMAT, "task": self.task, "score": self.kind, "model": self.model, "setting": self.setting, "samples": self.samples,
            "steps": self.steps, "masked_per_step": self.masked_per_step,
            "masked_per_masked_step": self.masked_per_masked_step, "matched_n": self.matched_n,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "heads": [[layer, head, score] for layer, head, score in self.ranking],
        }, indent=1)


def load_static_heads(path: str | os.PathLike, kind: str | None = None) -> StaticHeads:
    """Read a calibration file, or a plain JSON list of ranked ``[layer, head]`` pairs.

    ``kind`` (``copy_paste`` / ``reasoning``): the retrieval score the heads are for. A calibration file
    records its score (files written before it did record their task, whose registered calibration gives
    the score), and an Eq. 1 ranking is not a ranking of Eq. 2 reasoning heads (nor the reverse), so a file
    of the other kind is refused; a plain list carries no kind and serves any.
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
    file_kind = meta.get("score") or next((c.kind for c in _CALIBRATIONS.values() if c.task == meta.get("task")), None)
    if kind is not None and file_kind is not None and file_kind != kind:
        raise ValueError(f"dynheads: static_heads={str(path)!r} is a {file_kind} calibration but this "
                         f"request needs {kind} static heads; use static_heads=auto, or a {kind} calibration file")
    setting = meta.get("setting", {}) if isinstance(meta.get("setting", {}), dict) else {}
    matched = meta.get("matched_n")
    if matched is not None and (isinstance(matched, bool) or not isinstance(matched, int) or matched < 0):
        raise bad(f"has matched_n={matched!r}, which is not a head count")
    return StaticHeads(model=str(meta.get("model", "?")), kind=file_kind or kind or COPY_PASTE, setting=setting,
                       ranking=ranking, samples=int(meta.get("samples", 0)), steps=int(meta.get("steps", 0)),
                       masked_per_step=meta.get("masked_per_step"),
                       masked_per_masked_step=meta.get("masked_per_masked_step"), matched_n=matched,
                       task=str(meta.get("task", "")), path=Path(path))


@dataclass(frozen=True)
class Calibration:
    """How one kind of document gets its static heads, supplied by the task that makes such documents.

    ``kind``: the retrieval score of the task's documents; ``task``: the name its files record.
    ``run(lm, options, progress)`` returns the (cached) :class:`StaticHeads` of the ``dynheads`` model
    ``lm``; ``options`` holds the model's ``calib_*`` arguments (``None`` = the task's default) and its
    Eq. 2 settings. ``reserved_seed``: a document seed the calibration uses, which evaluation refuses so
    that the two stay disjoint.
    """

    kind: str
    run: Callable[[Any, dict[str, Any], Callable | None], StaticHeads]
    reserved_seed: int | None = None
    task: str = ""


_CALIBRATIONS: dict[str, Calibration] = {}


def register_calibration(calibration: Calibration) -> None:
    """Make ``calibration`` the one used for its kind (tasks call this when their package is imported)."""
    if calibration.kind not in (COPY_PASTE, REASONING):
        raise ValueError(f"dynheads: unknown calibration kind {calibration.kind!r}; choose {COPY_PASTE} or {REASONING}")
    _CALIBRATIONS[calibration.kind] = calibration


def calibration_for(kind: str) -> Calibration | None:
    """The registered calibration of ``kind``, or None when no task of that kind has been imported."""
    return _CALIBRATIONS.get(kind)
