"""The trace file, a public contract: one module writes, reads and versions it, sidecar included.

With ``trace_dir=DIR`` the ``dynheads`` model appends one JSON line per request and condition to
``DIR/<task>.jsonl`` (format in the README, "Trace files"). Under lm-eval's data parallelism
(``accelerate launch -m lm_eval``) every rank writes its own file, ``DIR/<task>.rank<R>.jsonl``, so
lines from several processes never interleave; :func:`read_task` reads them all. With ``hidden=true``
each line also points at a block of the binary sidecar ``<task>[.rank<R>].vectors.bin``.

The sidecar: Claim 3's probes read one hidden vector (576 floats for SmolLM2, 4096 for an 8B model) per
decode step, over up to ~10^5 steps; as JSON floats that would be slow to write, huge, and read back as
Python lists. So each line says where its block lies:

    "vectors": {"file": "niah_uuid.vectors.bin", "offset": 1234, "steps": T, "model": "smollm2",
                "hidden": {"dim": 576, "dtype": "float16"}, "scores": {"dim": 270, "dtype": "float32"}}

At ``offset`` bytes into ``file``: ``T x hidden.dim`` little-endian values of ``hidden.dtype`` (row-major:
step, then feature), then ``T x scores.dim`` little-endian float32 (step, then ``layer * heads + head``),
then the per-head attention masses of :data:`MASSES`, each present ``T x dim`` float32 block in that order and the
same layout: ``"context_mass"`` (``TRACE_FORMAT`` 3), each head's attention on the prompt less its last
``response_header`` tokens (``TRACE_FORMAT`` 5; 0 before), the numerator of Lookback Lens's lookback ratio, and
``"target_mass"`` (``TRACE_FORMAT`` 5), each head's attention on the document's target (the needle, or the supporting
facts), a retrieval signal that needs no token match.
Both come from the step's *first* pass (ungated under none / dynamic, the gated pass under static /
random): the hidden state after the final norm (what the LM head reads), and the Eq. 1 indicators
(1 for the heads in ``steps[t].heads``) or, on Eq. 2 traces, the Eq. 2 scores.

Why a module of its own, at the bottom of the house (json and numpy only): the model layer writes
traces; the probes, the verifier, the suite's cells and ``compare_runs`` read them. One definition of
the format keeps them in step, and :data:`TRACE_FORMAT` versions it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ConditionSpec

# Version of what the engine decodes and records (tokens, head sets, Eq. 2 scores, trace lines). Bump it
# when a change alters any of them: run_suite keys its cached cells on it, so old cells are recomputed.
TRACE_FORMAT = 6  # 2: lines name their document (doc_key); NIAH haystack windows per document
# 3: traced steps record entropy and token_prob; the sidecar adds each step's attention mass on the prompt
# 4: a line names its condition in "condition" (was "mask"; read_lines reads the old key as the new one); a kv:
#    line whose heads kept whole never change writes them once, as kv.full
# 5: the sidecar adds each step's attention mass on the target (target_mass); context_mass leaves out the prompt's
#    response header (its length in the block's "response_header")
# 6: traced steps record where each retrieval head looked (steps[t].attended, prompt-relative key positions)
MASSES = ("context_mass", "target_mass")  # the sidecar's per-step [layers * heads] attention masses, in file order
HIDDEN_DTYPES = ("float16", "float32")
# How a line's heads were found: Eq. 1 copy-paste (needle documents; heads are indicators) or Eq. 2
# reasoning (supporting-fact documents; every head has a score). Probes and calibrations are per kind.
COPY_PASTE = "copy_paste"
REASONING = "reasoning"


# ------------------------------------------------------------------------------------------ lines
def generation_line(task: str, doc_id: Any, generation: Any, text: str, target: Sequence[int] | None,
                    score: Any = None, doc_key: str | None = None, kv: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line for one traced generation (an engine ``Generation``).

    ``target``: the prompt's needle (Eq. 1) or supporting-fact (Eq. 2) token indices; ``score``: the Eq. 2
    settings (``sink_tokens``, ``local_window``, ``threshold``) when the generation was scored by Eq. 2;
    ``doc_key``: the document's content hash, so that a probe can record which documents it was fitted on;
    ``kv``: a ``kv:`` line's streaming view (sink, window, granularity), what a verifier needs to rebuild each
    step's per-head masks. The heads kept whole are written per step (``kv_full``) where the choice changes between
    steps, and once as ``kv.full`` where it does not (:func:`kv_full`).
    """
    steps = []
    for s in generation.steps:
        step: dict[str, Any] = {"token_id": s.token_id, "heads": [list(h) for h in s.heads]}
        if s.attended is not None:
            step["attended"] = list(s.attended)
        if generation.condition != "none":
            step["gated"] = [list(h) for h in s.gated]
        if s.heads_after or s.ungated_token_id is not None:
            step["heads_after"] = [list(h) for h in s.heads_after]
        if s.scores is not None:
            step["scores"] = s.scores
        if s.entropy is not None:
            step["entropy"], step["token_prob"] = round(s.entropy, 6), round(s.token_prob, 6)
        if s.kv_full is not None:  # KV compression: heads kept whole, measured shares kept (query heads, KV heads)
            step["kv_full"] = [list(h) for h in s.kv_full]
            step["kv_kept"] = [round(v, 6) for v in s.kv_kept]
        steps.append(step)
    fixed_choice = kv is not None and steps and all(step.get("kv_full") == steps[0].get("kv_full") for step in steps)
    if fixed_choice:  # one choice for the whole generation (full, streaming, static, random): written once, in "kv"
        kv = {**kv, "full": steps[0]["kv_full"]}
        for step in steps:
            del step["kv_full"]
    reasoning = score is not None and target is not None
    record = {"task": task, "doc_id": doc_id, **({"doc_key": doc_key} if doc_key else {}), "condition": generation.condition,
              "response": text,
              "input_ids": generation.prompt_ids, "needle_token_indices": [] if reasoning else list(target or []),
              "steps": steps}
    if reasoning:
        record["support_token_indices"] = list(target)
        record["reasoning"] = {"sink_tokens": score.sink_tokens, "local_window": score.local_window,
                               "threshold": score.threshold}
    if kv is not None:
        record["kv"] = dict(kv)
    return record


def kv_full(record: dict[str, Any], step: dict[str, Any]) -> list[list[int]]:
    """The heads a ``kv:`` line's step kept whole: the step's own ``kv_full``, or the line's ``kv.full`` when the choice
    was the same at every step (:data:`TRACE_FORMAT` 4)."""
    return step["kv_full"] if "kv_full" in step else record["kv"]["full"]


def rag_line(task: str, doc_id: Any, prompt_ids: Sequence[int], strategy: str, token_ids: Sequence[int], text: str,
             rag: dict[str, Any]) -> dict[str, Any]:
    """One line for one Section 5 answer: ``condition`` is the strategy's name (``rag:dynamic:10``,
    :class:`~dynheads.spec.ConditionSpec`), steps carry token ids only, and ``rag`` holds the answer's measures,
    context span, supporting tokens and retrieval log."""
    return {"task": task, "doc_id": doc_id, "condition": ConditionSpec.parse(strategy, family="rag").name, "response": text, "input_ids": list(prompt_ids),
            "steps": [{"token_id": t} for t in token_ids], "rag": rag}


def score_kind(record: dict[str, Any]) -> str:
    """How a line's heads were found: :data:`REASONING` when it records Eq. 2 settings, else :data:`COPY_PASTE`."""
    return REASONING if "reasoning" in record else COPY_PASTE


# ------------------------------------------------------------------------------------------ files
def trace_path(folder: str | Path, task: str, rank: int = 0) -> Path:
    """The trace file of ``task`` written by process ``rank`` (rank 0: ``<task>.jsonl``)."""
    return Path(folder) / (f"{task}.jsonl" if rank == 0 else f"{task}.rank{rank}.jsonl")


def sidecar_path(trace_file: str | Path) -> Path:
    """The binary sidecar beside ``trace_file`` (``x.jsonl`` -> ``x.vectors.bin``)."""
    trace_file = Path(trace_file)
    return trace_file.with_name(trace_file.name[: -len(".jsonl")] + ".vectors.bin")


def append_lines(trace_file: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Append whole lines in one write: a reader never sees a half-written record."""
    trace_file = Path(trace_file)
    trace_file.parent.mkdir(parents=True, exist_ok=True)
    with open(trace_file, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records))


def read_lines(trace_file: str | Path) -> list[dict[str, Any]]:
    """Every line of one trace file."""
    return [upgraded(json.loads(text)) for text in Path(trace_file).read_text().splitlines() if text.strip()]


def upgraded(record: dict[str, Any]) -> dict[str, Any]:
    """A line as :data:`TRACE_FORMAT` 4 names it: lines written before it name their condition ``mask``."""
    if "condition" not in record and "mask" in record:
        record["condition"] = record.pop("mask")
    return record


def task_files(folder: str | Path, task: str) -> list[Path]:
    """``task``'s trace files in ``folder``: rank 0's, then the other ranks' in rank order."""
    folder = Path(folder)
    ranks = sorted(folder.glob(f"{task}.rank*.jsonl"), key=lambda p: int(p.name[len(task) + 5: -len(".jsonl")] or 0))
    return [p for p in [trace_path(folder, task)] if p.is_file()] + ranks


def read_task(folder: str | Path, task: str) -> list[dict[str, Any]]:
    """Every line that any process wrote for ``task`` in ``folder``."""
    return [record for path in task_files(folder, task) for record in read_lines(path)]


def remove_task(folder: str | Path, task: str) -> None:
    """Delete ``task``'s trace files and sidecars in ``folder`` (a cell that restarts from scratch)."""
    for path in task_files(folder, task):
        sidecar_path(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    sidecar_path(trace_path(folder, task)).unlink(missing_ok=True)


def trace_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.jsonl`` trace files named, or found in the folders named (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.rglob("*.jsonl"))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"dynheads: {str(path)!r} is neither a trace file nor a folder of them")
    return files


# ------------------------------------------------------------------------------------------ sidecar
def score_matrix(steps: list[Any], num_layers: int, num_heads: int) -> np.ndarray:
    """``[steps, layers * heads]`` float32: Eq. 2 scores where the steps carry them, else Eq. 1 indicators."""
    out = np.zeros((len(steps), num_layers * num_heads), dtype=np.float32)
    for t, step in enumerate(steps):
        if step.scores is not None:
            out[t] = np.asarray(step.scores, dtype=np.float32).reshape(-1)
        else:
            for layer, head in step.heads:
                out[t, layer * num_heads + head] = 1.0
    return out


def append_vectors(path: Path, hidden: np.ndarray, scores: np.ndarray, hidden_dtype: str = "float16",
                   model: str | None = None, masses: dict[str, np.ndarray] | None = None,
                   response_header: int = 0) -> dict[str, Any]:
    """Append one line's block to the sidecar ``path``; returns the reference to store in the trace line
    (``model`` names the model that wrote it, so a probe trained on it knows what it was trained on; ``masses``,
    each ``[steps, layers * heads]`` and named in :data:`MASSES`, are stored after the scores in that order;
    ``response_header``: the prompt tokens ``context_mass`` leaves out)."""
    if hidden_dtype not in HIDDEN_DTYPES:
        raise ValueError(f"dynheads: hidden_dtype={hidden_dtype!r}; choose float16 or float32")
    masses = masses or {}
    unknown = set(masses) - set(MASSES)
    if unknown:
        raise ValueError(f"dynheads: unknown sidecar mass {sorted(unknown)}; choose from {', '.join(MASSES)}")
    hidden = np.ascontiguousarray(hidden, dtype=np.dtype(hidden_dtype).newbyteorder("<"))
    scores = np.ascontiguousarray(scores, dtype=np.dtype("float32").newbyteorder("<"))
    named = [(name, np.ascontiguousarray(masses[name], dtype=np.dtype("float32").newbyteorder("<")))
             for name in MASSES if name in masses]
    blocks = [hidden, scores, *(block for _, block in named)]
    if any(b.ndim != 2 or len(b) != len(hidden) for b in blocks):
        raise ValueError(f"dynheads: sidecar blocks must be [steps, dim] with equal steps, got {[b.shape for b in blocks]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        offset = fh.seek(0, 2)
        fh.write(b"".join(b.tobytes() for b in blocks))
    ref = {"file": path.name, "offset": offset, "steps": len(hidden), "model": model,
           "hidden": {"dim": hidden.shape[1], "dtype": hidden_dtype}, "scores": {"dim": scores.shape[1], "dtype": "float32"}}
    for name, block in named:
        ref[name] = {"dim": block.shape[1], "dtype": "float32",
                     **({"response_header": int(response_header)} if name == "context_mass" else {})}
    return ref


def read_vectors(trace_file: str | Path, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(hidden [T, D], scores [T, L*H])`` arrays of one trace line (memory-mapped, not loaded whole)."""
    ref = record.get("vectors")
    if not ref:
        raise ValueError("dynheads: this trace line has no vectors; trace with the model argument hidden=true")
    path = Path(trace_file).parent / ref["file"]
    steps, h, s = ref["steps"], ref["hidden"], ref["scores"]
    hidden_type = np.dtype(h["dtype"]).newbyteorder("<")
    hidden = np.memmap(path, dtype=hidden_type, mode="r", offset=ref["offset"], shape=(steps, h["dim"]))
    scores_at = ref["offset"] + steps * h["dim"] * hidden_type.itemsize
    scores = np.memmap(path, dtype=np.dtype("float32").newbyteorder("<"), mode="r", offset=scores_at, shape=(steps, s["dim"]))
    return hidden, scores


def read_mass(trace_file: str | Path, record: dict[str, Any], name: str = "context_mass") -> np.ndarray:
    """``[T, L*H]`` float32: each step's attention mass ``name`` (one of :data:`MASSES`), per head (memory-mapped)."""
    ref = record.get("vectors") or {}
    if name not in ref:
        since = "TRACE_FORMAT 3" if name == "context_mass" else "TRACE_FORMAT 5"
        raise ValueError(f"dynheads: the trace line of document {record.get('doc_id')!r} has no {name} (written before "
                         f"{since}, or without hidden=true); trace it again with hidden=true")
    steps, h, s = ref["steps"], ref["hidden"], ref["scores"]
    at = ref["offset"] + steps * (h["dim"] * np.dtype(h["dtype"]).itemsize + s["dim"] * 4)
    at += sum(steps * ref[before]["dim"] * 4 for before in MASSES[: MASSES.index(name)] if before in ref)
    return np.memmap(Path(trace_file).parent / ref["file"], dtype=np.dtype("float32").newbyteorder("<"), mode="r",
                     offset=at, shape=(steps, ref[name]["dim"]))


def read_context_mass(trace_file: str | Path, record: dict[str, Any]) -> np.ndarray:
    """``[T, L*H]`` float32: each step's attention mass on the prompt less its response header, per head."""
    return read_mass(trace_file, record, "context_mass")


def mass_rows(generation: Any) -> dict[str, np.ndarray]:
    """Each :data:`MASSES` a traced generation recorded, ``[steps, layers * heads]`` float32 (none for an untraced
    generation)."""
    out = {}
    for name in MASSES:
        if generation.steps and all(getattr(s, name) is not None for s in generation.steps):
            out[name] = np.stack([np.asarray(getattr(s, name), dtype=np.float32).reshape(-1) for s in generation.steps])
    return out


def hidden_rows(generation: Any, width: int = 0) -> np.ndarray:
    """``[steps, hidden]`` float32 of a generation decoded with ``record_hidden`` (``[0, width]`` without steps)."""
    if any(s.hidden is None for s in generation.steps):
        raise ValueError("dynheads: this generation was decoded without record_hidden; no hidden states to store")
    if not generation.steps:
        return np.zeros((0, width), dtype=np.float32)
    return np.stack([np.asarray(s.hidden, dtype=np.float32) for s in generation.steps])


def write_generations(trace_file: Path, lines: Sequence[dict[str, Any]], generations: Sequence[Any],
                      hidden_dtype: str | None, model: str | None, num_layers: int, num_heads: int,
                      response_header: int = 0) -> None:
    """Append one request's lines; with ``hidden_dtype`` each generation's hidden states and head scores go to
    the sidecar first, so a line never points at bytes not yet written."""
    if hidden_dtype is not None:
        for line, generation in zip(lines, generations):
            scores = score_matrix(generation.steps, num_layers, num_heads)
            line["vectors"] = append_vectors(sidecar_path(trace_file), hidden_rows(generation), scores, hidden_dtype,
                                             model=model, masses=mass_rows(generation),
                                             response_header=response_header)
    append_lines(trace_file, lines)
