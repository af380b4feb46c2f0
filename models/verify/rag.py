"""Replay a Section 5 answer from its trace line with eager attention and masks built here (``verify``'s RAG part).

Why independent: the engine hides context keys inside its own sdpa wrapper and shares KV caches between
strategies. The replay runs transformers' *eager* attention with each layer's mask replaced (a forward pre-hook on
every attention module) by one built from the trace alone: causal, the layer's sliding window, and, for a query
after the context (question, instruction, generated text), only the context positions the recorded windows
reveal. Sinks stay visible because the recorded context span starts after them. From the retrieval log it rebuilds
which tokens were decoded under which visibility:

* a draft starts with the context hidden (under ``rag_algorithm=paper`` a later draft keeps the previous
  retrieval's windows), decodes greedily until EOS, a stop string or the budget, and RIND either flags a word
  (the recorded trigger: word, score, and the answer retracted to its sentence's start) or passes it (the draft is
  the rest of the answer);
* a retrieval runs the retracted state once with the whole context visible; the recorded heads' mean attention
  over the context gives Algorithm 2's top positions and windows; the oracle's windows are the supporting runs;
* the regeneration decodes under the windows, and the answer keeps the recorded number of its tokens.

Compared per field: every answer token (``tokens``), each draft's RIND outcome (``triggers``), each retrieval's top
positions and windows. The heads themselves are taken from the trace (the probe's choice is not re-checked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..rag.rind import entropy, first_need, later_attention, rind_words, sentence_start
from ..rag.windows import attention_windows, runs, top_indices
from ..engine.eager_hooks import layer_masks, layer_windows
from ...spec import ConditionSpec

SCORE_TOLERANCE = 2e-3  # the trace rounds RIND scores to 4 decimals; float32 sdpa and eager differ in the 5th-6th
REQUIRED = ("context_token_span", "support_token_indices", "retrieval_log", "settings", "decoding")


class ReplayError(ValueError):
    """A trace line the replay cannot check (one line naming what is missing)."""


def missing_fields(record: dict[str, Any]) -> list[str]:
    """What a ``rag:`` line lacks for a replay (lines written before TRACE_FORMAT 3 lack the settings and log keys)."""
    rag = record.get("rag") or {}
    missing = [k for k in REQUIRED if k not in rag]
    missing += [f"retrieval_log[{i}].{k}" for i, r in enumerate(rag.get("retrieval_log", []))
                for k in ("kept", "top_positions") if k not in r]
    return missing


@dataclass
class Decoded:
    tokens: list[int]
    entropies: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # per draft token: last-layer row over the draft so far


class MaskedReplay:
    """Eager decoding of one prompt under a context visibility: ``None`` (all), or the context span hidden from
    every query at or after ``prefix_len`` except the given windows (``[]``: all hidden).

    Results are memoised: the strategies of one example share their first draft and usually their retrieval
    pass, as the engine shares them, so a replay of all of an example's lines decodes each state once."""

    def __init__(self, model: torch.nn.Module, prompt: Sequence[int], context: tuple[int, int]) -> None:
        self.model, self.prompt, self.context = model, list(prompt), context
        self._memo: dict[tuple, Any] = {}
        self.prefix_len = context[1]  # the engine prefills through the context with plain causal attention
        self.windows = layer_windows(model)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    def allowed(self, queries: torch.Tensor, keys: int, visible: Sequence[Sequence[int]] | None, window: int | None) -> torch.Tensor:
        """Boolean ``[len(queries), keys]``: which key positions each query position may attend to."""
        k = torch.arange(keys, device=self.device)[None, :]
        q = queries[:, None]
        ok = k <= q
        if window is not None:
            ok &= k > q - window
        if visible is not None:
            start, end = self.context
            shown = torch.zeros(keys, dtype=torch.bool, device=self.device)
            shown[:start] = True
            shown[end:] = True
            for s, e in visible:
                shown[max(s, start) : min(e, end)] = True
            ok &= shown[None, :] | (q < self.prefix_len)
        return ok

    def _forward(self, cache: Any, tokens: list[int], start: int, visible: Sequence[Sequence[int]] | None,
                 masks: dict[int, torch.Tensor], attentions: bool) -> Any:
        queries = torch.arange(start, start + len(tokens), device=self.device)
        low = torch.finfo(self.dtype).min
        by_window: dict[int | None, torch.Tensor] = {}  # layers with the same window share one mask
        for layer, window in self.windows.items():
            if window not in by_window:
                ok = self.allowed(queries, start + len(tokens), visible, window)
                by_window[window] = torch.where(ok, 0.0, low).to(self.dtype)[None, None]
            masks[layer] = by_window[window]
        return self.model(input_ids=torch.tensor([tokens], device=self.device), cache=cache, use_cache=True,
                          output_attentions=attentions)

    def _start(self, seq: list[int], visible: Sequence[Sequence[int]] | None, masks: dict[int, torch.Tensor]) -> Any:
        """A cache holding ``seq`` minus its last token, computed under ``visible``."""
        from transformers import DynamicCache

        cache = DynamicCache()  # no config: every layer keeps every key (the masks below apply the sliding windows)
        if len(seq) > 1:
            self._forward(cache, seq[:-1], 0, visible, masks, False)
        return cache

    @torch.no_grad()
    def decode(self, generated: Sequence[int], visible: Sequence[Sequence[int]] | None, *, forced: Sequence[int] | None = None,
               max_new: int = 0, eos: set[int] = frozenset(), stop: Callable[[list[int]], bool] | None = None,
               record: bool = False) -> Decoded:
        """Greedy tokens after ``prompt + generated`` until EOS, ``stop`` or ``max_new`` (with ``forced``: the argmax
        at each of those forced steps); with ``record``, RIND's inputs, as the engine's draft reads them: each step's
        entropy and, feeding every draft token back (the last once more), its last-layer row over the draft."""
        key = ("decode", tuple(generated), None if visible is None else tuple(map(tuple, visible)),
               None if forced is None else tuple(forced), max_new, frozenset(eos), stop is not None, record)
        if key not in self._memo:
            self._memo[key] = self._decode(generated, visible, forced, max_new, eos, stop, record)
        return self._memo[key]

    def _decode(self, generated: Sequence[int], visible: Sequence[Sequence[int]] | None, forced: Sequence[int] | None,
                max_new: int, eos: set[int], stop: Callable[[list[int]], bool] | None, record: bool) -> Decoded:
        seq = self.prompt + list(generated)
        budget = len(forced) if forced is not None else max_new
        out, finished = Decoded([]), False
        with layer_masks(self.model) as masks:
            cache = self._start(seq, visible, masks)
            feed, pos, first = seq[-1], len(seq) - 1, len(seq)
            while budget > 0:
                result = self._forward(cache, [feed], pos, visible, masks, record)
                if record and out.tokens:
                    out.rows.append(result.attentions[-1][0, :, 0, first : pos + 1].float().cpu().numpy())
                if out.tokens and (finished or len(out.tokens) == budget):
                    break
                logits = result.logits[0, -1]
                token = int(logits.argmax())
                out.tokens.append(token)
                if record:
                    out.entropies.append(entropy(logits))
                finished = forced is None and (token in eos or (stop is not None and stop(list(generated) + out.tokens)))
                if not record and (finished or len(out.tokens) == budget):
                    break
                feed, pos = (forced[len(out.tokens) - 1] if forced is not None else token), pos + 1
        return out

    @torch.no_grad()
    def inspect(self, generated: Sequence[int]) -> list[torch.Tensor]:
        """Every layer's last-row attention ``[heads, keys]`` at the current position, the whole context visible
        (Algorithm 2's pass)."""
        key = ("inspect", tuple(generated))
        if key not in self._memo:
            seq = self.prompt + list(generated)
            with layer_masks(self.model) as masks:
                cache = self._start(seq, None, masks)
                result = self._forward(cache, [seq[-1]], len(seq) - 1, None, masks, True)
            self._memo[key] = [a[0, :, 0, :].float() for a in result.attentions]
        return self._memo[key]


def same(got: Sequence[int], want: Sequence[int]) -> list[bool]:
    """Position-wise agreement of two token lists (a missing or extra token disagrees)."""
    return [i < len(got) and i < len(want) and got[i] == want[i] for i in range(max(len(got), len(want)))]


def replay_answer(model: torch.nn.Module, record: dict[str, Any], token_text: Callable[[int], str],
                  text_of: Callable[[list[int]], str], replays: dict[tuple, MaskedReplay] | None = None) -> dict[str, list[bool]]:
    """Per field, one agreement flag per checked item of one ``rag:<strategy>`` trace line (see module docstring).

    ``token_text``: one token's text as RIND reads it (special tokens skipped); ``text_of``: the text the stop strings
    are searched in (the engine decodes the last 16 tokens); ``replays``: the replays of earlier lines by prompt and
    stop rule, so the lines of one example share their decodes. Raises :class:`ReplayError` for a line it cannot check.
    """
    missing = missing_fields(record)
    if missing:
        raise ReplayError(f"the {record.get('condition')} line of document {record.get('doc_id')!r} lacks {', '.join(missing)} "
                          "(written before TRACE_FORMAT 3); trace it again to verify it")
    rag, name = record["rag"], ConditionSpec.parse(record["condition"]).strategy
    settings, decoding = rag["settings"], rag["decoding"]
    answer = [step["token_id"] for step in record["steps"]]
    c0, c1 = rag["context_token_span"]
    eos, until, max_new = set(decoding["eos_token_ids"]), [u for u in decoding["until"] if u], decoding["max_new_tokens"]
    replays = {} if replays is None else replays
    where = (tuple(record["input_ids"]), c0, c1, tuple(sorted(eos)), tuple(until))
    replay = replays.setdefault(where, MaskedReplay(model, record["input_ids"], (c0, c1)))
    stop = (lambda generated: any(u in text_of(generated[-16:]) for u in until)) if until else None
    checks: dict[str, list[bool]] = {"tokens": [], "triggers": [], "top_positions": [], "windows": []}
    if name in ("full", "none"):
        got = replay.decode([], None if name == "full" else [], max_new=max_new, eos=eos, stop=stop)
        checks["tokens"] = same(got.tokens, answer)
        return checks
    start, visible, log = 0, [], rag["retrieval_log"]
    for index in range(len(log) + 1):
        if index == len(log) and start >= len(answer):
            break  # the last regeneration ended the answer: no final draft
        draft = replay.decode(answer[:start], visible, max_new=max_new - start, eos=eos, stop=stop, record=True)
        words = rind_words([token_text(t) for t in draft.tokens], draft.entropies, later_attention(draft.rows, len(draft.tokens)))
        need = first_need(words, settings["threshold"], settings["stopwords"]) if index < settings["max_retrievals"] else None
        if index == len(log):  # the final draft passes RIND and is the rest of the answer
            checks["triggers"].append(need is None)
            checks["tokens"] += same(draft.tokens, answer[start:])
            break
        retrieval, trigger = log[index], log[index]["trigger"]
        step = retrieval["step"]
        checks["triggers"].append(need is not None and need.text == trigger["word"] and start + need.start == trigger["token"]
                                  and abs(need.score - trigger["score"]) <= SCORE_TOLERANCE * max(1.0, abs(trigger["score"]))
                                  and start + sentence_start(words, need) == step)
        checks["tokens"] += same(draft.tokens[: step - start], answer[start:step])
        if name == "oracle":
            windows = [(max(s, c0), min(e, c1)) for s, e in runs(rag["support_token_indices"]) if min(e, c1) > max(s, c0)]
        else:
            rows = replay.inspect(answer[:step])
            scores = np.mean([rows[layer][head][c0:c1].cpu().numpy() for layer, head in retrieval["heads"]], axis=0)
            top = [c0 + int(i) for i in top_indices(scores, settings["top_positions"])]
            checks["top_positions"].append(sorted(top) == sorted(retrieval["top_positions"]))
            windows = attention_windows(scores, np.arange(c0, c1), settings["top_positions"], settings["cluster_gap"],
                                        settings["window"], (c0, c1))
        checks["windows"].append([list(w) for w in windows] == retrieval["windows"])
        kept = answer[step : step + retrieval["kept"]]
        checks["tokens"] += same(replay.decode(answer[:step], retrieval["windows"], forced=kept).tokens, kept)
        start = step + retrieval["kept"]
        visible = retrieval["windows"] if settings["algorithm"] == "paper" else []
    return checks
