"""The ``dynheads`` model's ``rag=`` requests: one context prefill, every strategy, trace lines and measures.

Why apart from :mod:`dynheads.models.lm`: the RAG branch needs the document's context span, a head
chooser per strategy (probe, static calibration, seeded random draws) and its own trace record; the
lm-eval model only hands it the encoded request.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..metrics.retrieval import Head
from .engine import DecodingError
from .rag import ContextExample, HeadChooser, RagAnswer, RagSettings, Strategy, random_heads

PROBE_COMMAND = "python run_suite.py --stages hotpotqa_probes (writes results/<model>/hotpotqa_probes.pt)"


def parse_strategies(text: str | None) -> list[Strategy]:
    """``"dynamic+static:10"`` to strategies; ``None`` / ``""`` = RAG off."""
    if text is None or str(text).strip() in ("", "off", "false"):
        return []
    names = [x for x in str(text).split("+") if x.strip()]
    try:
        strategies = [Strategy.parse(x) for x in names]
    except DecodingError as exc:
        raise ValueError(str(exc)) from None
    labels = [s.label for s in strategies]
    if len(set(labels)) != len(labels):
        raise ValueError(f"dynheads: rag={text!r} names a strategy twice; give each once")
    return strategies


def check_requirements(strategies: Sequence[Strategy], probe_meta: dict[str, Any] | None, probe_path: str,
                       static_source: str) -> None:
    """One clear line for a strategy whose probe or calibration is missing, naming the command that makes it."""
    names = {s.name for s in strategies}
    if "dynamic" in names:
        if probe_meta is None:
            raise ValueError(f"dynheads: rag=dynamic predicts each step's heads with the HotpotQA probe of Claim 3; give "
                             f"probe=PATH, made by {PROBE_COMMAND}")
        if probe_meta.get("kind") != "hotpotqa":
            raise ValueError(f"dynheads: rag=dynamic needs a HotpotQA (Eq. 2) probe, but probe={probe_path!r} was trained on "
                             f"{probe_meta.get('kind')} documents; make one with {PROBE_COMMAND}")
    if "static" in names and static_source == "off":
        raise ValueError("dynheads: rag=static uses the Eq. 2 static-head calibration; set static_heads=auto (computed "
                         "once and cached, or python run_suite.py --stages calibrate_hotpotqa) or static_heads=PATH")


def head_chooser(lm: Any, sample_key: str) -> HeadChooser:
    """Heads per strategy: the probe's top-k predicted Eq. 2 scores, the top-k static reasoning heads, or seeded
    random draws (new at each retrieval, or one draw per answer)."""
    engine = lm.engine

    def choose(strategy: Strategy, index: int, hidden: np.ndarray) -> list[Head]:
        k = strategy.k or lm.rag_settings.heads
        if strategy.name == "dynamic":
            scores = np.asarray(lm.rag_probe.predict(hidden[None].astype(np.float32))[0])
            return [(int(i) // engine.num_heads, int(i) % engine.num_heads) for i in np.argsort(-scores, kind="stable")[:k]]
        if strategy.name == "static":
            return list(lm.static("hotpotqa").heads[:k])
        draw = f"-{index}" if strategy.name == "dynamic_random" else "-fixed"
        return random_heads(k, engine.num_layers, engine.num_heads, f"{lm.seed}-{sample_key}-{k}{draw}")

    return choose


def measures(answer: RagAnswer) -> dict[str, Any]:
    """Per answer: retrievals, and per retrieval the visible tokens and the windows' precision / recall."""
    return {"retrievals": len(answer.retrievals), "drafts": answer.drafts,
            "visible_tokens": [r.visible_tokens for r in answer.retrievals],
            "precision": [r.precision for r in answer.retrievals], "recall": [r.recall for r in answer.retrievals]}


def rag_record(task: str, doc_id: Any, prompt_ids: list[int], answer: RagAnswer, text: str, example: ContextExample) -> dict[str, Any]:
    """One trace line: the answer's tokens and every retrieval (step, trigger with the draft's RIND scores, heads, windows)."""
    return {"task": task, "doc_id": doc_id, "mask": f"rag:{answer.strategy}", "response": text, "input_ids": prompt_ids,
            "steps": [{"token_id": t} for t in answer.token_ids],
            "rag": {**measures(answer), "context_token_span": list(example.context),
                    "support_token_indices": example.support, "retrieval_log": [r.record() for r in answer.retrievals]}}


def answer_all(lm: Any, ids: list[int], context: Sequence[int], support: Sequence[int], max_gen: int, eos: set[int],
               stop: Callable[[list[int]], bool], sample_key: str,
               on_answer: Callable[[str], None] | None = None) -> tuple[ContextExample, list[RagAnswer]]:
    """Every configured strategy's answer to one prompt, after one context prefill; the strategies' drafts and
    regenerations decode as rows of one batch per round (:meth:`ContextExample.answer_many`)."""
    tokenizer = lm.tokenizer

    @functools.lru_cache(maxsize=None)  # RIND and the sentence checks decode the same tokens again and again
    def token_text(token: int) -> str:
        return tokenizer.decode([token], skip_special_tokens=True)

    example = ContextExample(lm.engine, ids, context, support, lm.rag_settings, eos, stop, token_text=token_text)
    choose = head_chooser(lm, sample_key)
    return example, example.answer_many(lm.rag_strategies, max_gen, choose, on_answer=on_answer)


def settings_record(settings: RagSettings) -> dict[str, Any]:
    """The settings as a plain dict (recorded in cell keys and in ``rag.json``)."""
    return dataclasses.asdict(settings)
