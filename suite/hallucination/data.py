"""The traced answers the hallucination detectors read, labelled: NIAH documents in the model's transition zone,
decoded by this study (:func:`niah_answers`), and the HotpotQA answers of Claim 3's train examples and of the
evaluation examples (:func:`hotpotqa_answers`, no new decoding). Since ``TRACE_FORMAT`` 5 the traces hold each
step's entropy, greedy-token probability, attention on the context and on the target.
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
from ...traces import read_mass, read_lines, read_vectors, task_files
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
    and greedy-token probability, and the sidecar's attention masses on the context and on the target.

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
    for name, since in (("context_mass", 3), ("target_mass", 5)):
        if name not in (line.get("vectors") or {}):
            raise ValueError(f"dynheads: {where} has no {name} in its sidecar (written before TRACE_FORMAT {since}, or "
                             "without hidden=true); delete the cell folder and rerun")


def traced_answer(line: dict[str, Any], path: Path, heads: int, decode: Callable[[list[int]], str],
                  span: tuple[int, int], label: bool, cell: tuple, reference: str | None = None,
                  extra_labels: dict[str, bool] | None = None, depth: float | None = None,
                  stratum: int | None = None) -> TracedAnswer:
    """One trace line as a :class:`TracedAnswer`: its answer steps from ``span`` (the task's answer in the
    response), and with ``reference`` (the NIAH UUID) its token labels."""
    require_signals(line, path)
    steps = line["steps"]
    hidden, _ = read_vectors(path, line)
    mass, target = read_mass(path, line, "context_mass"), read_mass(path, line, "target_mass")
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
        target_mass=np.asarray(target, dtype=np.float32),
        response_header=int(line["vectors"]["context_mass"].get("response_header", 0)), depth=depth, stratum=stratum,
        hidden=np.asarray(hidden, dtype=np.float32), entropy=np.array([s["entropy"] for s in steps]),
        token_prob=np.array([s["token_prob"] for s in steps]),
        step_labels=copy_labels(response, ends, span, reference) if reference is not None else {},
        extra_labels=extra_labels or {})


def decoder(suite: ModelSuite) -> Callable[[list[int]], str]:
    """Token ids to text as the model's answers were decoded (special tokens skipped, as lm-eval's ``hf`` does)."""
    return lambda ids: suite.lm.tok_decode(ids)


def transition_cells(suite: ModelSuite) -> tuple[list[dict[str, Any]], dict[Path, tuple[float, int]]]:
    """The study's own NIAH documents, unmasked with hidden states, in the (length, depth) cells of the profile's
    ``niah`` block: lengths where the model's answers fail often (its transition zone, chosen from a measured pilot,
    docs/hallucination.md), documents seeded apart from every other stage's (seed + 3)."""
    from ..niah.stages import cell_key, niah_cell

    n = suite.profile["hallucination"]["niah"]
    runner = suite.runner("hallucination_niah")
    cells, folders = [], {}
    wanted = [(int(L), float(d)) for L in n["lengths"] for d in n["depths"]]
    for L, d in suite.progress(wanted, desc=f"{suite.name} hallucination: transition-zone NIAH cells", unit="cell"):
        cells.append(niah_cell(runner, L, d, int(n["runs"]), ["none"], None, hidden=True, seed=suite.seed + 3))
        folders[runner.folder / f"{cell_key(L, d)}.traces"] = (d, L)
    return cells, folders


def niah_answers(suite: ModelSuite) -> list[TracedAnswer]:
    """The transition-zone NIAH generations: hallucinated when the response lacks the UUID (``acc`` 0); token labels
    from :func:`~dynheads.metrics.hallucination.copy_labels` against the UUID; cell = (depth, length); stratum =
    length."""
    cells, folders = transition_cells(suite)
    heads, decode = suite.lm.engine.num_heads, decoder(suite)
    answers = []
    for cell, (folder, where) in zip(cells, folders.items()):
        samples = {s["doc_id"]: s for s in cell["samples"]}
        for line, path in unmasked_lines(folder, "niah_uuid"):
            sample = samples[line["doc_id"]]
            answers.append(traced_answer(line, path, heads, decode, niah_task.answer_span(line["response"]),
                                         not sample["conditions"]["none"]["acc"], tuple(where), reference=sample["uuid"],
                                         depth=float(where[0]), stratum=int(where[1])))
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


def gold_answers(suite: ModelSuite) -> tuple[list[TracedAnswer], list[TracedAnswer], dict[str, int]]:
    """HotpotQA answered from the gold paragraphs only, decoded by this study (train examples to fit, dev examples to
    test), labelled by faithfulness: hallucinated when more than a quarter of the words the extracted answer adds to
    its question are not in the context the model was given (:func:`~dynheads.metrics.qa.supported_by`). Answers that
    add no word (yes / no, empty, a restated question) get no label and are left out; their counts come back per
    side."""
    from ...metrics.qa import supported_by
    from ..hotpotqa.stages import chunks

    g = suite.profile["hallucination"]["gold"]
    runner = suite.runner("hallucination_hotpotqa")
    heads, decode = suite.lm.engine.num_heads, decoder(suite)
    sides: list[list[TracedAnswer]] = [[], []]
    left_out = {"train": 0, "dev": 0}
    for side, split, n in ((0, "train", int(g["train_n"])), (1, "dev", int(g["dev_n"]))):
        setting = {"split": split, "source": None, "chunk": g["chunk"], "paragraphs": "gold"}
        cells = chunks(runner, setting, n, ["none"], None, suite.progress,
                       f"{suite.name} hallucination: HotpotQA {split} answers from gold paragraphs", hidden=True)
        contexts = hotpotqa_task.context_texts(split=split, n=n, paragraphs="gold") if n else {}  # one read per split
        for cell in cells:
            samples = {s["doc_id"]: s for s in cell["samples"]}
            folder = runner.folder / f"{split}_{cell['start']:05d}.traces"
            for line, path in unmasked_lines(folder, "hotpotqa_sf"):
                sample = samples[line["doc_id"]]
                question, context = contexts[sample["id"]]
                supported = supported_by(hotpotqa_task.extract_answer(line["response"]), context, question)
                if supported is None:
                    left_out[split] += 1
                    continue
                sides[side].append(traced_answer(line, path, heads, decode, hotpotqa_task.answer_span(line["response"]),
                                                 not supported, (side,)))
    return sides[0], sides[1], left_out
