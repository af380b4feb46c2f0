"""The traced answers the hallucination detectors read: the suite's unmasked cells with hidden states, labelled.

No new decoding: the NIAH generations are those of the grid and of Claim 3's probes (:func:`unmasked_cells`), the
HotpotQA answers those of Claim 3's train examples and of the evaluation examples (:func:`probe_answers`); since
``TRACE_FORMAT`` 3 their traces also hold each step's entropy, greedy-token probability and attention on the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...metrics.hallucination import copy_labels, scored_steps, token_ends
from ...probes.hallucination import TracedAnswer
from ...tasks.hotpotqa_sf import utils as hotpotqa_task
from ...tasks.niah_uuid import utils as niah_task
from ...traces import read_context_mass, read_lines, read_vectors, task_files
from ..model import ModelSuite

# what each traced step stores for the detectors (retrieval-head absence and rates, entropy, min_prob)
STEP_SIGNALS = ("heads", "entropy", "token_prob")


def unmasked_lines(folder: Path, task: str) -> Iterator[tuple[dict[str, Any], Path]]:
    """Every unmasked trace line of ``task`` in a cell's trace folder, with its file (the sidecar's anchor)."""
    for path in task_files(folder, task):
        for line in read_lines(path):
            if line["condition"] == "none":
                yield line, path


def require_signals(line: dict[str, Any], path: Path) -> None:
    """Raise one clear error when ``line`` lacks a signal the detectors read: each step's retrieval heads, entropy
    and greedy-token probability, and the sidecar's attention mass on the prompt.

    Why an error, not a default: a step without ``heads`` read as "no head fired" would make up the absence
    detector's score (in the conjecture's favour), a filled-in entropy or probability the baselines'; every unmasked
    traced step stores all of them since ``TRACE_FORMAT`` 3, so a missing one means the cell predates it (or was
    not traced) and must be decoded again."""
    where = f"the trace of document {line.get('doc_id')!r} in {path}"
    for name in STEP_SIGNALS:
        missing = [t for t, step in enumerate(line["steps"]) if step.get(name) is None]
        if missing:
            raise ValueError(f"dynheads: {where} has no per-step {name} (step {missing[0]} of {len(line['steps'])}; "
                             "written before TRACE_FORMAT 3, or not traced); delete the cell folder and rerun")
    if "context_mass" not in (line.get("vectors") or {}):
        raise ValueError(f"dynheads: {where} has no context_mass in its sidecar (written before TRACE_FORMAT 3, or "
                         "without hidden=true); delete the cell folder and rerun")


def traced_answer(line: dict[str, Any], path: Path, heads: int, decode: Callable[[list[int]], str],
                  span: tuple[int, int], label: bool, cell: tuple, reference: str | None = None,
                  extra_labels: dict[str, bool] | None = None) -> TracedAnswer:
    """One trace line as a :class:`TracedAnswer`: its answer steps from ``span`` (the task's answer in the
    response), and with ``reference`` (the NIAH UUID) its token labels."""
    require_signals(line, path)
    steps = line["steps"]
    hidden, _ = read_vectors(path, line)
    mass = read_context_mass(path, line)
    active = np.zeros((len(steps), mass.shape[1]), dtype=bool)
    for t, step in enumerate(steps):
        for layer, head in step["heads"]:
            active[t, layer * heads + head] = True
    response = line["response"]
    ends = token_ends(decode, [s["token_id"] for s in steps])
    chosen = scored_steps(ends, span)
    return TracedAnswer(
        group=line.get("doc_key") or f"{path}:{line['doc_id']}", cell=cell, label=bool(label), steps=chosen, active=active,
        context_mass=np.asarray(mass, dtype=np.float32), prompt_tokens=len(line["input_ids"]),
        hidden=np.asarray(hidden, dtype=np.float32), entropy=np.array([s["entropy"] for s in steps]),
        token_prob=np.array([s["token_prob"] for s in steps]),
        step_labels=copy_labels(response, ends, span, reference) if reference is not None else {},
        extra_labels=extra_labels or {})


def decoder(suite: ModelSuite) -> Callable[[list[int]], str]:
    """Token ids to text as the model's answers were decoded (special tokens skipped, as lm-eval's ``hf`` does)."""
    return lambda ids: suite.lm.tok_decode(ids)


def niah_answers(suite: ModelSuite) -> list[TracedAnswer]:
    """The unmasked NIAH generations: hallucinated when the response lacks the UUID (``acc`` 0); token labels from
    :func:`~dynheads.metrics.hallucination.copy_labels` against the UUID; cell = (depth, length)."""
    from ..niah.stages import unmasked_cells

    cells, folders = unmasked_cells(suite)
    heads, decode = suite.lm.engine.num_heads, decoder(suite)
    answers = []
    for cell, (folder, where) in zip(cells, folders.items()):
        samples = {s["doc_id"]: s for s in cell["samples"]}
        for line, path in unmasked_lines(folder, "niah_uuid"):
            sample = samples[line["doc_id"]]
            answers.append(traced_answer(line, path, heads, decode, niah_task.answer_span(line["response"]),
                                         not sample["conditions"]["none"]["acc"], tuple(where), reference=sample["uuid"]))
    return answers


def hotpotqa_answers(suite: ModelSuite, f1_threshold: float) -> tuple[list[TracedAnswer], list[TracedAnswer]]:
    """The unmasked HotpotQA answers of the train examples (to fit) and of the evaluation examples (to test):
    hallucinated when answer F1 < ``f1_threshold``; the second label ``em0``: exact match 0."""
    from ..hotpotqa.stages import probe_answers

    cells, train_folders, test_folders = probe_answers(suite)
    heads, decode = suite.lm.engine.num_heads, decoder(suite)
    parts: list[list[TracedAnswer]] = [[], []]
    for part, (cell, folder) in enumerate(zip(cells, [*train_folders, *test_folders])):
        samples = {s["doc_id"]: s for s in cell["samples"]}
        for line, path in unmasked_lines(folder, "hotpotqa_sf"):
            scores = samples[line["doc_id"]]["conditions"]["none"]
            answers = parts[int(part >= len(train_folders))]
            answers.append(traced_answer(line, path, heads, decode, hotpotqa_task.answer_span(line["response"]),
                                         scores["f1"] < f1_threshold, (part,), extra_labels={"em0": scores["em"] == 0}))
    return parts[0], parts[1]
