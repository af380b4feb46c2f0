"""Section 5: in-context dynamic RAG, where the model sees its context only through retrieved windows.

The paper adapts DRAGIN to retrieval *inside* the prompt. Everything outside the context span (chat
preamble, question, instruction, generated text) and the first ``rag_sink_tokens`` positions stay
visible; context positions are hidden by the attention mask unless a retrieval revealed them.

Algorithm 1 (per answer): draft with the context hidden; RIND (:mod:`dynheads.models.rag.rind`) scores the
draft's words from the rows the decoder already records (entropy of each step, last-layer attention);
on a need, keep the draft up to the start of the flagged sentence, retrieve, and regenerate with the
retrieved windows visible. What happens next is ``RagSettings.algorithm``:

* ``paper`` (default; the paper's Algorithm 1 as written): the whole regeneration is appended (line 12)
  and the windows stay visible for the next draft; the context is hidden again only after a draft
  passes RIND (line 15);
* ``dragin`` (DRAGIN's code): only the regeneration's first sentence is kept (``get_top_sentence``) and
  the next draft starts with the context hidden again.

Algorithm 2 (retrieve): run the current position once with the whole context visible, choose k heads by
strategy (:mod:`dynheads.models.rag.strategies`), average their last-row attention over the context, and turn the top positions into windows
(:mod:`dynheads.models.rag.windows`).

Why it is cheap: the context's KV cache is prefilled once per example (its keys and values never
depend on what later tokens may see) and *forked* without copying for every strategy and round; only
the short suffix (question, instruction, generated text) is recomputed under each visibility mask.
Decoding is deterministic, so a draft or retrieval pass that several strategies share (the first
draft is common to all of them) is computed once per example and reused.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...metrics.heads import Head
from .rind import DEFAULT_RIND_THRESHOLD, STOPWORD_RULES, entropy, first_need, later_attention, rind_words, sentence_of_tokens, sentence_start
from .windows import (DEFAULT_CLUSTER_GAP, DEFAULT_TOP_POSITIONS, DEFAULT_WINDOW, Window, attention_windows,
                               coverage, runs, top_indices)
from ..engine.batch import DecodeBatch
from ..engine import DecodingError, TraceEngine
from .strategies import HeadSource, Strategy

ALGORITHMS = ("paper", "dragin")


@dataclass(frozen=True)
class RagSettings:
    """Choices the paper leaves open (README, "Section 5"), all exposed as ``rag_*`` model arguments."""

    heads: int = 5
    threshold: float = DEFAULT_RIND_THRESHOLD
    top_positions: int = DEFAULT_TOP_POSITIONS
    cluster_gap: int = DEFAULT_CLUSTER_GAP
    window: int = DEFAULT_WINDOW
    max_retrievals: int = 3
    sink_tokens: int = 4
    algorithm: str = "paper"
    stopwords: str = "trigger"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"dynheads: rag_algorithm={self.algorithm!r}; choose paper (Algorithm 1 as the paper writes it) "
                             "or dragin (DRAGIN's code: first regenerated sentence, context hidden again)")
        if self.stopwords not in STOPWORD_RULES:
            raise ValueError(f"dynheads: rag_stopwords={self.stopwords!r}; choose trigger (DRAGIN's code: any word may "
                             "trigger) or skip (DRAGIN's paper: stop words never trigger)")
        if min(self.heads, self.top_positions, self.window) < 1 or min(self.cluster_gap, self.max_retrievals, self.sink_tokens) < 0:
            raise ValueError("dynheads: rag_heads, rag_top_positions and rag_window must be >= 1; rag_cluster_gap, "
                             "rag_max_retrievals and rag_sink_tokens >= 0 (e.g. rag_heads=5,rag_window=48)")
        if not self.threshold >= 0:
            raise ValueError(f"dynheads: rag_threshold={self.threshold} must be >= 0 (DRAGIN uses 1.2-1.4 on HotpotQA)")


@dataclass
class Retrieval:
    """One retrieval of an answer: where, why (the RIND trigger), which heads, what became visible."""

    step: int
    trigger: dict[str, Any]
    heads: list[Head]
    windows: list[Window]
    visible_tokens: int
    precision: float | None
    recall: float | None
    top_positions: list[int] = field(default_factory=list)  # Algorithm 2's top context positions, best first
    kept: int | None = None  # tokens of the regeneration that the answer kept

    def record(self) -> dict[str, Any]:
        """The trace's retrieval log entry: enough to replay the answer (``models/verify/rag.py``)."""
        return {"step": self.step, "trigger": self.trigger, "heads": [list(h) for h in self.heads],
                "windows": [list(w) for w in self.windows], "visible_tokens": self.visible_tokens,
                "precision": self.precision, "recall": self.recall, "top_positions": self.top_positions,
                "kept": self.kept}


@dataclass
class RagAnswer:
    strategy: str
    token_ids: list[int]
    retrievals: list[Retrieval] = field(default_factory=list)
    drafts: int = 0


@dataclass
class Decoded:
    """A greedy continuation: its tokens, and (when recorded, for RIND) each step's entropy and each draft
    token's last-layer attention row over the draft tokens before it."""

    tokens: list[int]
    finished: bool
    entropies: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)


class ContextExample:
    """One prompt whose context span can be hidden, with its context prefilled once.

    ``context``: the token indices of the context span (contiguous); the prefix prefilled once runs up to
    its end. ``support``: the gold supporting-fact token indices (oracle windows, precision and recall).
    """

    def __init__(self, engine: TraceEngine, prompt_ids: Sequence[int], context: Sequence[int], support: Sequence[int],
                 settings: RagSettings, eos: set[int], stop: Callable[[list[int]], bool] | None,
                 token_text: Callable[[int], str]) -> None:
        context = sorted(set(int(i) for i in context))
        if not context or context[-1] - context[0] + 1 != len(context):
            raise DecodingError("dynheads: RAG needs one contiguous context span in the prompt (the task's context_char_span)")
        if context[-1] >= len(prompt_ids) - 1:
            raise DecodingError("dynheads: RAG needs the question after the context span; the prompt ends inside the context")
        self.engine, self.settings, self.eos, self.stop, self.token_text = engine, settings, eos, stop, token_text
        self.ids = list(prompt_ids)
        self.context = (max(context[0], settings.sink_tokens), context[-1] + 1)  # the sinks stay visible
        self.support = sorted(int(i) for i in support)
        self.prefix_len = self.context[1]
        with torch.inference_mode():  # a batch prefills all but its prompt's last token: here, the whole context
            self.prefix = engine.batch([self.ids[: self.prefix_len + 1]], [0])
        self._memo: dict[tuple, Any] = {}

    # -- decoding under a visibility -------------------------------------------------------------
    def _visible(self, length: int, windows: Sequence[Window] | None) -> torch.Tensor | None:
        """Visibility over ``length`` positions: ``None`` = all (plain causal); else the context hidden except ``windows``."""
        if windows is None:
            return None
        visible = torch.ones(length, dtype=torch.bool, device=self.engine.device)
        start, end = self.context
        visible[start:end] = False
        for s, e in windows:
            visible[max(s, start) : min(e, end)] = True
        return visible

    def decode(self, generated: Sequence[int], max_new: int, windows: Sequence[Window] | None, record: bool,
               one_sentence: bool = False) -> Decoded:
        """Greedy continuation of ``prompt + generated`` with the context visible only in ``windows``
        (``None``: all of it; ``[]``: none). ``one_sentence``: stop once a second sentence starts (a
        regeneration keeps only its first sentence, so decoding further would be thrown away).
        Memoised: every strategy that reaches the same state reuses it."""
        spec = DecodeSpec(tuple(generated), max_new, None if windows is None else tuple(windows), record, one_sentence)
        return self.decode_many([spec])[spec]

    def decode_many(self, specs: Sequence["DecodeSpec"]) -> dict["DecodeSpec", Decoded]:
        """Every spec's continuation; those not decoded before run together as rows of one batch (the context
        prefill shared, each row's suffix recomputed under its own visibility)."""
        todo = list(dict.fromkeys(spec for spec in specs if ("decode", spec) not in self._memo))
        if todo:
            for spec, decoded in zip(todo, self._decode_rows(todo)):
                self._memo[("decode", spec)] = decoded
        return {spec: self._memo[("decode", spec)] for spec in specs}

    def _second_sentence(self, tokens: list[int]) -> bool:
        texts = [self.token_text(t) for t in tokens]
        if not any(ch in "".join(texts[:-1]) for ch in ".!?\n"):
            return False  # no sentence can have ended yet: skip the splitter
        return sentence_of_tokens(texts)[-1] > 0

    @torch.inference_mode()
    def _decode_rows(self, specs: Sequence["DecodeSpec"]) -> list[Decoded]:
        """Greedy continuations of several states at once: rows of one batch over the shared context prefill,
        each row's suffix recomputed with its own length and visibility, then one token per row per step
        until each row stops (rows leave as they stop). With ``record`` a row's last token is fed once more
        only to read its attention row (RIND needs every draft token's row)."""
        last = self.engine.num_layers - 1
        visible = [self._visible(len(self.ids) + len(spec.generated) + spec.max_new, spec.windows) for spec in specs]
        batch, current = self._resume([spec.generated for spec in specs], visible)
        outs = [Decoded(tokens=[], finished=False) for _ in specs]
        pos = [len(self.ids) + len(spec.generated) - 1 for spec in specs]  # position of the token each row feeds next
        active = [r for r, spec in enumerate(specs) if spec.max_new > 0]
        if len(active) < len(specs):
            batch.select(active)
        record = frozenset({last}) if any(spec.record for spec in specs) else False
        while active:
            step = batch.step(torch.tensor([[current[r]] for r in active]), record=record,
                              visible=[None if visible[r] is None else visible[r][: pos[r] + 1] for r in active])
            staying = []
            for a, r in enumerate(active):
                spec, out = specs[r], outs[r]
                if spec.record and out.tokens:  # the query is the newest draft token: its row over draft tokens so far
                    out.rows.append(draft_row(step.rows[last][a], len(out.tokens)))
                if out.finished or len(out.tokens) == spec.max_new:
                    continue  # with record, the last token was fed once more only to read its row
                logits = step.logits[a : a + 1]
                token = int(logits.argmax(dim=-1).item())
                if spec.record:
                    out.entropies.append(entropy(logits))
                out.tokens.append(token)
                out.finished = token in self.eos or (self.stop is not None and self.stop(list(spec.generated) + out.tokens))
                if not spec.record and (out.finished or len(out.tokens) == spec.max_new
                                        or (spec.one_sentence and self._second_sentence(out.tokens))):
                    continue
                current[r], pos[r] = token, pos[r] + 1
                staying.append(a)
            if not staying:
                break
            active = batch.retain(staying, active)
        return outs

    def _resume(self, generated: Sequence[Sequence[int]], visible: Sequence[torch.Tensor | None]) -> tuple[DecodeBatch, list[int]]:
        """A fork of the context prefill with one row per state: its suffix (question, instruction, the
        state's ``generated``) recomputed under its ``visible``, all but the last token; returns the batch and
        those last tokens, which the caller feeds."""
        suffixes = [self.ids[self.prefix_len :] + list(g) for g in generated]
        batch = self.prefix.fork()
        if len(suffixes) > 1:
            batch.select([0] * len(suffixes))
        if any(len(suffix) > 1 for suffix in suffixes):
            ends = [self.prefix_len + len(suffix) - 1 for suffix in suffixes]
            batch.feed([suffix[:-1] for suffix in suffixes], visible=[None if v is None else v[:end] for v, end in zip(visible, ends)])
        return batch, [suffix[-1] for suffix in suffixes]

    @torch.inference_mode()
    def inspect(self, generated: Sequence[int]) -> tuple[list[torch.Tensor], np.ndarray]:
        """Algorithm 2, line 2-3: the current position run once with the whole context visible; every
        layer's last-row attention ``[heads, keys]`` and the final hidden state (what the probe reads)."""
        key = ("inspect", tuple(generated))
        if key not in self._memo:
            batch, current = self._resume([generated], [None])
            out = batch.step(torch.tensor([current]), record=True, hidden=True)
            rows = [out.rows[layer][0] for layer in range(self.engine.num_layers)]
            self._memo[key] = (rows, out.hidden[0].numpy())
        return self._memo[key]

    # -- Algorithm 2 -----------------------------------------------------------------------------
    def head_windows(self, rows: list[torch.Tensor], heads: Sequence[Head], query: int) -> tuple[list[Window], list[int]]:
        """The chosen heads' mean last-row attention over the context (``query``: the inspected position),
        turned into windows (Algorithm 2, lines 5-14); and the top positions they came from, best first."""
        start, end = self.context
        scores = np.zeros(end - start)
        for layer, head in heads:
            scores += context_slice(rows[layer][head].float().cpu().numpy(), query, start, end)
        scores /= max(1, len(heads))
        s = self.settings
        top = [start + int(i) for i in top_indices(scores, s.top_positions)]
        return attention_windows(scores, np.arange(start, end), s.top_positions, s.cluster_gap, s.window, (start, end)), top

    def oracle_windows(self) -> list[Window]:
        start, end = self.context
        return [(max(s, start), min(e, end)) for s, e in runs(self.support) if min(e, end) > max(s, start)]

    # -- Algorithm 1 -----------------------------------------------------------------------------
    def answer(self, strategy: Strategy, max_new: int, source: HeadSource) -> RagAnswer:
        """One answer under ``strategy``: ``full`` reads the whole context, ``none`` never sees it, the
        others follow Algorithm 1 with their own retrieval."""
        return self.answer_many([strategy], max_new, source)[0]

    def answer_many(self, strategies: Sequence[Strategy], max_new: int, source: HeadSource,
                    on_answer: Callable[[str], None] | None = None) -> list[RagAnswer]:
        """Every strategy's answer, Algorithm 1 advancing all of them together: in each round every strategy
        asks for its next continuation (a draft or a regeneration), and the distinct ones not decoded before
        run as rows of one batch. A strategy's answer is the one :meth:`answer` alone gives."""
        limit = self.engine.max_positions
        if limit is not None and len(self.ids) + max_new > limit:
            raise DecodingError(f"dynheads: prompt of {len(self.ids)} tokens + {max_new} new tokens exceeds this model's "
                                f"{limit} positions; use shorter examples or fewer new tokens")
        runs = [self._algorithm1(strategy, max_new, source) for strategy in strategies]
        answers: list[RagAnswer | None] = [None] * len(runs)
        pending: dict[int, DecodeSpec] = {}

        def advance(i: int, decoded: Decoded | None) -> None:
            try:
                pending[i] = next(runs[i]) if decoded is None else runs[i].send(decoded)
            except StopIteration as done:
                answers[i] = done.value
                pending.pop(i, None)
                if on_answer is not None:
                    on_answer(strategies[i].label)

        for i in range(len(runs)):
            advance(i, None)
        while pending:
            results = self.decode_many(list(pending.values()))
            for i, spec in list(pending.items()):
                advance(i, results[spec])
        return answers  # type: ignore[return-value]

    def _algorithm1(self, strategy: Strategy, max_new: int, source: HeadSource) -> Generator["DecodeSpec", Decoded, RagAnswer]:
        """Algorithm 1 for one strategy; yields each continuation it needs and is sent the decoded result."""
        if not strategy.retrieves:
            decoded = yield DecodeSpec((), max_new, strategy.whole_answer_view, False, False)
            return RagAnswer(strategy.label, decoded.tokens, drafts=strategy.drafts)
        out = RagAnswer(strategy.label, [])
        generated: list[int] = []
        paper = self.settings.algorithm == "paper"
        visible: tuple[Window, ...] = ()  # line 2: MaskAll(C)
        while len(generated) < max_new:
            draft = yield DecodeSpec(tuple(generated), max_new - len(generated), visible, True, False)
            out.drafts += 1
            texts = [self.token_text(t) for t in draft.tokens]
            words = rind_words(texts, draft.entropies, later_attention(draft.rows, len(draft.tokens)))
            need = (first_need(words, self.settings.threshold, self.settings.stopwords)
                    if len(out.retrievals) < self.settings.max_retrievals else None)
            if need is None:  # lines 14-15: a draft runs to its end, so nothing is drafted after it
                generated += draft.tokens
                break
            retract = sentence_start(words, need)
            trigger = {"word": need.text, "token": len(generated) + need.start,
                       "score": round(need.score, 4), "entropy": round(need.entropy, 4), "attention": round(need.attention, 4),
                       "draft": [[w.text, round(w.score, 4)] for w in words]}
            generated += draft.tokens[:retract]
            heads, windows, top = strategy.retrieve(self, generated, len(out.retrievals), source)
            out.retrievals.append(Retrieval(len(generated), trigger, heads, windows, **coverage(windows, self.support),
                                            top_positions=top))
            regenerated = yield DecodeSpec(tuple(generated), max_new - len(generated), tuple(windows), False, not paper)
            kept = len(regenerated.tokens) if paper else first_sentence(regenerated.tokens, self.token_text)
            out.retrievals[-1].kept = kept
            generated += regenerated.tokens[:kept]
            if paper:
                visible = tuple(windows)  # line 9: the windows stay visible until a draft passes RIND
            if regenerated.finished and kept == len(regenerated.tokens):
                break
        out.token_ids = generated
        return out


@dataclass(frozen=True)
class DecodeSpec:
    """A continuation Algorithm 1 asks for: after ``generated``, up to ``max_new`` tokens with the context
    visible only in ``windows`` (``None``: all; ``()``: none); ``record`` for RIND; ``one_sentence`` stops
    a regeneration once its second sentence starts."""

    generated: tuple[int, ...]
    max_new: int
    windows: tuple[Window, ...] | None
    record: bool
    one_sentence: bool


def draft_row(row: torch.Tensor, n: int) -> np.ndarray:
    """``[heads, n]``: a right-aligned last-layer row read over its last ``n`` keys (the draft tokens so far);
    keys a sliding window dropped read 0."""
    held = row[:, max(0, row.shape[-1] - n) :].float().cpu().numpy()
    return np.pad(held, ((0, 0), (n - held.shape[-1], 0)))


def context_slice(row: np.ndarray, query: int, start: int, end: int) -> np.ndarray:
    """A key row right-aligned to position ``query`` read over positions ``start .. end - 1``; positions a
    sliding-window layer no longer holds read 0."""
    first_held = query + 1 - row.shape[-1]
    out = np.zeros(end - start)
    lo = max(start, first_held)
    if lo < end:
        out[lo - start :] = row[lo - first_held : end - first_held]
    return out


def first_sentence(tokens: Sequence[int], token_text: Callable[[int], str]) -> int:
    """How many tokens the first sentence of a regeneration takes (DRAGIN keeps only that sentence)."""
    if not tokens:
        return 0
    sentences = sentence_of_tokens([token_text(t) for t in tokens])
    return next((i for i, s in enumerate(sentences) if s > 0), len(tokens))
