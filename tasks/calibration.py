"""Static retrieval heads (Wu et al. style) and the matched head count N, calibrated per model.

Why a calibration run: the paper compares *dynamic* heads (found at each step) with *static* ones, a
ranking fixed in advance from many generations. Ranking on the evaluation samples themselves would
leak them into the baseline, so each task calibrates on documents that evaluation never sees (NIAH:
a reserved seed; HotpotQA: train examples). This module is the part both share; each task folder's
``calibration.py`` says which documents to decode and how to rank heads, and registers itself with
the model layer (:mod:`dynheads.models.harness.static_heads`).

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

from ..metrics.dynamism import masked_means, matched_head_count
from ..util import write_atomic
from ..models.harness.loading import cache_root
from ..models.harness.static_heads import FORMAT, Calibration, StaticHeads, load_static_heads
from ..models.harness.context import CalibrationModel


class Keyed:
    """Settings dataclasses named in the cache by a short stable hash of their fields."""

    def key(self) -> str:
        """Short stable hash naming the cache file of this setting (the file format is part of it)."""
        blob = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def cache_path(model_id: str, setting: Any) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id.strip("/"))
    return cache_root() / "static_heads" / safe / f"{setting.task}_{setting.key()}.json"


def model_id(lm: CalibrationModel) -> str:
    """``name@dtype``: the calibration cache folder of a model (different dtypes retrieve differently)."""
    return f"{lm.pretrained_name}@{str(lm.model.dtype).replace('torch.', '')}"


def _finished(partial: Path) -> list[dict[str, Any]]:
    """The per-prompt records an interrupted calibration left (a torn last line is dropped)."""
    records = []
    if partial.is_file():
        for line in partial.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if record.get("doc") != len(records):
                break
            records.append(record)
    return records


def two_passes(lm: CalibrationModel, docs: list[dict], max_new_tokens: int, desc: str, progress: Callable | None,
               targets: Callable[[dict], tuple[list[int], dict[str, Any]]], partial: Path) -> list[dict[str, Any]]:
    """Decode every calibration prompt unmasked and dynamically masked after one shared prefill (the model's
    decode batch size of prompts at a time).

    ``targets(doc)`` gives the prompt ids and the engine's tracing arguments (needle or supporting-fact
    indices). Returns one record per prompt: the unmasked pass's per-step ``heads`` and Eq. 2
    ``scores`` (None without them) and the dynamic pass's heads ``masked`` per step. Each record is
    appended to ``partial`` once its batch is done, so an interrupted calibration resumes after the last
    finished batch.
    """
    from ..models.engine import DecodeRequest, DynamicMask, Unmasked

    records = _finished(partial)
    if len(records) > len(docs):
        records = []
    todo = list(enumerate(docs))[len(records):]
    if records:
        desc += f" (resumed after {len(records)})"
    iterator = progress(todo, desc=desc, unit="sample") if progress else todo
    partial.parent.mkdir(parents=True, exist_ok=True)
    size = lm.decode_batch_size()
    pending: list[DecodeRequest] = []
    with open(partial, "a" if records else "w", encoding="utf-8") as fh:
        def flush() -> None:  # one batch of prompts, then one whole line per prompt, in order
            for none, dynamic in lm.engine.generate_batch(pending, batch_size=size):
                record = {"doc": len(records), "heads": [[list(h) for h in step.heads] for step in none.steps],
                          "scores": [step.scores for step in none.steps] if none.steps and none.steps[0].scores is not None else None,
                          "masked": [len(step.gated) for step in dynamic.steps]}
                fh.write(json.dumps(record) + "\n")
                records.append(record)
            fh.flush()
            pending.clear()

        for index, doc in iterator:
            ids, tracing = targets(doc)
            pending.append(DecodeRequest(ids, max_new_tokens, [Unmasked(), DynamicMask()],
                                         eos_token_ids=lm.eos_ids(), **tracing))
            if len(pending) == size or index == len(docs) - 1:
                flush()
    return records


def result(setting: Any, model: str, ranking: list, samples: int, steps: int, masked_counts: list[int]) -> StaticHeads:
    """A :class:`StaticHeads` from a ranking and the dynamic pass's masked-head counts."""
    mean_masked, mean_positive = masked_means(masked_counts)
    plain = json.loads(json.dumps(asdict(setting)))  # as the cache file holds it (lists, not tuples)
    return StaticHeads(model=model, kind=setting.kind, task=setting.task, setting=plain, ranking=ranking, samples=samples,
                       steps=steps, masked_per_step=mean_masked, masked_per_masked_step=mean_positive,
                       matched_n=matched_head_count(masked_counts) if masked_counts else None)


def masked_counts(records: list[dict[str, Any]]) -> list[int]:
    """Heads the dynamic pass masked, at every step of every calibration prompt."""
    return [count for record in records for count in record["masked"]]


def registered(setting_class: type, setting_from: Callable[[dict[str, Any]], Any],
               calibrate: Callable[[Any, Any, str, Path, Callable | None], StaticHeads], reserved_seed: int | None = None) -> Calibration:
    """The :class:`Calibration` a task registers for its setting class's ``kind`` (retrieval score) and ``task``:
    ``setting_from(options)`` turns the model's ``calib_*`` options into the setting,
    ``calibrate(lm, setting, model, partial, progress)`` computes it; the result is cached per (model, dtype,
    setting) and computed once."""
    def static_heads(lm: CalibrationModel, options: dict[str, Any], progress: Callable | None = None) -> StaticHeads:
        setting = setting_from(options)
        model = model_id(lm)
        return load_or_calibrate(setting, model, lambda partial: calibrate(lm, setting, model, partial, progress))

    return Calibration(setting_class.kind, static_heads, reserved_seed, setting_class.task)


def load_or_calibrate(setting: Any, model: str, calibrate: Callable[[Path], StaticHeads]) -> StaticHeads:
    """The cached calibration of ``model`` under ``setting``; when missing, ``calibrate(partial)`` computes it
    (resuming from the per-prompt records in ``partial``), and it is cached and ``partial`` removed."""
    path = cache_path(model, setting)
    if path.is_file():
        return load_static_heads(path)
    partial = path.with_name(path.stem + ".partial.jsonl")
    static = calibrate(partial)
    write_atomic(path, static.to_json())
    partial.unlink(missing_ok=True)
    static.path, static.computed = path, True
    return static
