"""The ``dynheads`` model's ``rag=`` requests: one context prefill, every strategy, trace lines and measures.

Why apart from :mod:`dynheads.models.harness.lm`: the RAG branch needs the document's context span, a head
chooser per strategy (probe, static calibration, seeded random draws) and its own trace record; the
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
from ...metrics.heads import Head, random_heads
from . import step_registry
from ..engine import DecodingError
from .prompts import PreparedRequest
from ...util import file_digest
from ..rag.algorithm import ContextExample, HeadChooser, RagAnswer, RagSettings, Strategy
from ..rag.measures import measures
from .context import RagModel
from .loaded_probe import LoadedProbe

PROBE_COMMAND = "python run_suite.py --stages hotpotqa_probes (writes results/<model>/hotpotqa_probes.pt)"


def check_requirements(strategies: Sequence[Strategy], probe: LoadedProbe | None, static_source: str) -> None:
    """One clear line for a strategy whose probe or calibration is missing, naming the command that makes it."""
    names = {s.name for s in strategies}
    if "dynamic" in names:
        if probe is None:
            raise ValueError(f"dynheads: rag=dynamic predicts each step's heads with the HotpotQA probe of Claim 3; give "
                             f"probe=PATH, made by {PROBE_COMMAND}")
        if probe.meta.get("kind") != REASONING:
            raise ValueError(f"dynheads: rag=dynamic needs a HotpotQA (Eq. 2) probe, but probe={probe.path!r} was trained on "
                             f"{probe.meta.get('kind')} documents; make one with {PROBE_COMMAND}")
    if "static" in names and static_source == "off":
        raise ValueError("dynheads: rag=static uses the Eq. 2 static-head calibration; set static_heads=auto (computed "
                         "once and cached, or python run_suite.py --stages calibrate_hotpotqa) or static_heads=PATH")


def head_chooser(lm: RagModel, sample_key: str) -> HeadChooser:
    """Heads per strategy: the probe's top-k predicted Eq. 2 scores, the top-k static reasoning heads, or seeded
    random draws (new at each retrieval, or one draw per answer)."""
    engine = lm.engine

    def choose(strategy: Strategy, index: int, hidden: np.ndarray) -> list[Head]:
        k = strategy.k or lm.settings.rag.heads
        if strategy.name == "dynamic":
            scores = np.asarray(lm.rag_probe.estimator.predict(hidden[None].astype(np.float32))[0])
            return [(int(i) // engine.num_heads, int(i) % engine.num_heads) for i in np.argsort(-scores, kind="stable")[:k]]
        if strategy.name == "static":
            return list(lm.static(REASONING).heads[:k])
        draw = f"-{index}" if strategy.name == "dynamic_random" else "-fixed"
        return random_heads(k, engine.num_layers, engine.num_heads, f"{lm.settings.seed}-{sample_key}-{k}{draw}")

    return choose


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
    choose = head_chooser(lm, sample_key)
    return example, example.answer_many(lm.settings.rag_strategies, max_gen, choose, on_answer=on_answer)


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
    texts = [lm.text(a.token_ids, p.until) for a in answers]
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
    if any(s.name == "dynamic" for s in parsed):
        out["probe"] = file_digest(lm.rag_probe.path)
    static = [s for s in parsed if s.name == "static"]
    if static:
        k = max(s.k or lm.settings.rag.heads for s in static)
        out["static_heads"] = [list(h) for h in lm.static(REASONING).heads[:k]]
    return out


def settings_record(settings: RagSettings) -> dict[str, Any]:
    """The settings as a plain dict (recorded in cell keys and in ``rag.json``)."""
    return dataclasses.asdict(settings)
