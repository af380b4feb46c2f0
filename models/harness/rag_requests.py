"""The ``dynheads`` model's ``rag=`` requests: one context prefill, every strategy, trace lines and measures.

Why apart from :mod:`dynheads.models.harness.lm`: the RAG branch needs the document's context span, a head
source for the strategies (probe, static calibration, seeded random draws) and its own trace record; the
lm-eval model only hands it the encoded request.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from ... import traces
from ...traces import REASONING
from . import step_registry
from ..engine import DecodingError
from .prompts import PreparedRequest
from ...util import file_digest
from ..rag.algorithm import ContextExample, RagAnswer, RagSettings
from ..rag.strategies import HeadSource, Strategy
from ..rag.measures import measures
from .context import RagModel
from .loaded_probe import LoadedProbe

PROBE_COMMAND = "python run_suite.py --stages hotpotqa_probes (writes results/<model>/hotpotqa_probes.pt)"


def check_requirements(strategies: Sequence[Strategy], probe: LoadedProbe | None, static_source: str) -> None:
    """One clear line for a strategy whose probe or calibration is missing, naming the command that makes it."""
    for strategy in strategies:
        if strategy.needs_probe:
            if probe is None:
                raise ValueError(f"dynheads: rag={strategy.name} predicts each step's heads with the HotpotQA probe of "
                                 f"Claim 3; give probe=PATH, made by {PROBE_COMMAND}")
            if probe.meta.get("kind") != REASONING:
                raise ValueError(f"dynheads: rag={strategy.name} needs a HotpotQA (Eq. 2) probe, but probe={probe.path!r} "
                                 f"was trained on {probe.meta.get('kind')} documents; make one with {PROBE_COMMAND}")
        if strategy.needs_static and static_source == "off":
            raise ValueError(f"dynheads: rag={strategy.name} uses the Eq. 2 static-head calibration; set static_heads=auto "
                             "(computed once and cached, or python run_suite.py --stages calibrate_hotpotqa) or "
                             "static_heads=PATH")


def head_source(lm: RagModel, sample_key: str) -> HeadSource:
    """What the head strategies read from the model for one document: the probe's predicted Eq. 2 scores, the
    static reasoning heads (loaded on first use), and the seed of the random draws."""
    probe = lm.rag_probe

    def predict(hidden: np.ndarray) -> np.ndarray:
        return np.asarray(probe.estimator.predict(hidden[None].astype(np.float32))[0])

    return HeadSource(lm.engine.num_layers, lm.engine.num_heads, lm.settings.rag.heads, f"{lm.settings.seed}-{sample_key}",
                      predict=predict if probe is not None else None,
                      static_heads=lambda: lm.static(REASONING).heads)


def answer_all(lm: RagModel, ids: list[int], context: Sequence[int], support: Sequence[int], max_gen: int, eos: set[int],
               stop: Callable[[list[int]], bool], sample_key: str,
               on_answer: Callable[[str], None] | None = None) -> tuple[ContextExample, list[RagAnswer]]:
    """Every configured strategy's answer to one prompt, after one context prefill; the strategies' drafts and
    regenerations decode as rows of one batch per round (:meth:`ContextExample.answer_many`)."""
    tokenizer = lm.tokenizer

    @functools.lru_cache(maxsize=None)  # RIND and the sentence checks decode the same tokens again and again
    def token_text(token: int) -> str:
        return tokenizer.decode([token], skip_special_tokens=True)

    example = ContextExample(lm.engine, ids, context, support, lm.settings.rag, eos, stop, token_text=token_text)
    return example, example.answer_many(lm.settings.rag_strategies, max_gen, head_source(lm, sample_key),
                                        on_answer=on_answer)


def answer_request(lm: RagModel, p: PreparedRequest, quiet: bool = False) -> str:
    """Every ``rag=`` strategy's answer to one prepared request of the lm-eval model (one context prefill); the
    first strategy's measures go to ``process_results``, every answer to the trace file. Returns the first text."""
    prompt = p.prompt
    if prompt.context is None:
        raise DecodingError("dynheads: rag= needs documents that mark their context span (context_char_span in the "
                            "prompt), e.g. --tasks hotpotqa_sf")
    with tqdm(total=len(lm.settings.rag_strategies), desc="  RAG strategies of this request", unit="strategy", leave=False,
              disable=quiet) as bar:
        example, answers = answer_all(lm, prompt.ids, prompt.context, prompt.support or [], p.max_gen, p.eos_ids, p.stop,
                                      str(p.sample_key), on_answer=lambda label: (bar.set_postfix_str(label), bar.update(1)))
    texts = [lm.text(a.token_ids, p.until, p.line_stops) for a in answers]
    if isinstance(p.doc, dict):
        step_registry.remember(p.doc, {"rag": measures(answers[0])})
    trace_file = lm.trace_file(p.task)
    if trace_file is not None:
        decoding = {"max_new_tokens": p.max_gen, "eos_token_ids": sorted(p.eos_ids), "until": list(p.until)}
        traces.append_lines(trace_file, [traces.rag_line(p.task, p.doc_id, prompt.ids, a.strategy, a.token_ids, t,
                                                         trace_rag(a, example, decoding)) for a, t in zip(answers, texts)])
    return texts[0]


def trace_rag(answer: RagAnswer, example: ContextExample, decoding: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``rag`` field of an answer's trace line: measures, context span, supporting tokens, every retrieval
    (step, trigger with the draft's RIND scores, heads, top positions, windows, regenerated tokens kept), and what
    a replay needs besides (the RAG settings; ``decoding``: the token budget, EOS ids and stop strings)."""
    return {**measures(answer), "context_token_span": list(example.context), "support_token_indices": example.support,
            "retrieval_log": [r.record() for r in answer.retrievals], "settings": settings_record(example.settings),
            **({"decoding": decoding} if decoding else {})}


def rag_identity(lm: RagModel, strategies: Sequence[str]) -> dict[str, Any]:
    """What decides the windows of these RAG strategies beyond the model: the settings, the probe (its file
    digest) where dynamic chooses heads, the static heads where static does."""
    parsed = [Strategy.parse(s) for s in strategies]
    out: dict[str, Any] = {"settings": settings_record(lm.settings.rag)}
    if any(s.needs_probe for s in parsed):
        out["probe"] = file_digest(lm.rag_probe.path)
    static = [s for s in parsed if s.needs_static]
    if static:
        k = max(s.k or lm.settings.rag.heads for s in static)
        out["static_heads"] = [list(h) for h in lm.static(REASONING).heads[:k]]
    return out


def settings_record(settings: RagSettings) -> dict[str, Any]:
    """The settings as a plain dict (recorded in cell keys and in ``rag.json``)."""
    return dataclasses.asdict(settings)
