"""Greedy step-wise decoding that reads Eq. 1 heads at every step and can re-run a step with heads gated.

Why a custom loop rather than ``model.generate``: the ablations of the paper need, at one step, an
ungated pass (to find that step's retrieval heads) followed by a gated re-run of *the same step*.
With a KV cache this costs one extra single-token forward: the ungated pass appends one position to
the cache, ``cache.crop(-1)`` removes it, and the gated pass appends it again. The prompt is never
recomputed.

Layout of a generation: the prompt minus its last token is prefilled without recording (so prefill
stays plain sdpa); then every step, including the first, feeds exactly one token, so every step can
be recorded and re-run in the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from ..metrics.reasoning import DEFAULT_LOCAL_WINDOW, DEFAULT_SINK_TOKENS, DEFAULT_THRESHOLD, reasoning_scores
from ..metrics.retrieval import Head, argmax_key_positions, copy_paste_mask, mask_to_heads
from .attention import PROBE, install

MASK_MODES = ("none", "dynamic", "static", "random")
ACCEPTED_MASKS = ("choose one of none, dynamic, dynamic:K (gate the K strongest, e.g. dynamic:5), static, random, "
                  "or several joined by + (one shared prefill, e.g. none+dynamic+static)")
# Version of what the engine decodes and records (tokens, head sets, Eq. 2 scores, trace lines). Bump it
# when a change alters any of them: run_suite keys its cached cells on it, so old cells are recomputed.
TRACE_FORMAT = 1


class DecodingError(ValueError):
    """Bad input to the decoding engine; the message names the problem and the fix."""


@dataclass(frozen=True)
class Condition:
    """One masking condition of a generation.

    ``mask``: none | dynamic | static | random. ``gate_heads``: the fixed heads of static/random.
    ``top_k``: for dynamic, gate at most the k Eq. 1 heads with the highest attention probability on
    the copied token (the progressive ablation of Appendix A.2); ``None`` gates them all.
    Written ``"dynamic"``, ``"dynamic:5"``, ``"static"``... (:meth:`parse`, :attr:`name`).
    """

    mask: str = "none"
    gate_heads: tuple[Head, ...] = ()
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.mask not in MASK_MODES:
            raise DecodingError(f"dynheads: unknown mask mode {self.mask!r}; {ACCEPTED_MASKS}")
        if self.top_k is not None and (self.mask != "dynamic" or self.top_k < 0):
            raise DecodingError(f"dynheads: a head count k (mask {self.mask}:{self.top_k}) needs mask dynamic and k >= 0, e.g. dynamic:5")

    @property
    def name(self) -> str:
        return self.mask if self.top_k is None else f"{self.mask}:{self.top_k}"

    @classmethod
    def parse(cls, text: str, gate_heads: Iterable[Head] = ()) -> "Condition":
        """``"dynamic:5"`` -> ``Condition("dynamic", top_k=5)``; one clear error for anything else."""
        mask, _, k = str(text).strip().partition(":")
        if k:
            try:
                top_k = int(k)
            except ValueError:
                raise DecodingError(f"dynheads: cannot read mask condition {text!r}; {ACCEPTED_MASKS}") from None
        else:
            top_k = None
        return cls(mask, tuple(gate_heads), top_k)


@dataclass(frozen=True)
class ReasoningScore:
    """Settings of the Eq. 2 reasoning retrieval score (see :mod:`dynheads.metrics.reasoning`)."""

    sink_tokens: int = DEFAULT_SINK_TOKENS
    local_window: int = DEFAULT_LOCAL_WINDOW
    threshold: float = DEFAULT_THRESHOLD


@dataclass
class Step:
    """One decode step.

    ``heads``: Eq. 1 set (Eq. 2 set when the generation is scored by a :class:`ReasoningScore`) of the
    step's first pass (ungated for none/dynamic; under static/random the only pass, run with the fixed
    heads gated). ``gated``: heads silenced for the emitted token.
    ``heads_after``: the same kind of set for the dynamic re-run with ``gated`` silenced (H' of Appendix A.2; empty
    when the step was not re-run). ``ungated_token_id``: the discarded token of a re-run step.
    """

    token_id: int
    heads: list[Head] = field(default_factory=list)
    ungated_token_id: int | None = None
    gated: list[Head] = field(default_factory=list)
    heads_after: list[Head] = field(default_factory=list)
    scores: list[list[float]] | None = None  # Eq. 2 only: [layer][head] score of the first pass
    hidden: torch.Tensor | None = None  # with record_hidden: the first pass's final hidden state (float32, CPU)


@dataclass
class Generation:
    prompt_ids: list[int]
    steps: list[Step]
    condition: str = "none"

    @property
    def token_ids(self) -> list[int]:
        return [s.token_id for s in self.steps]


def text_config(model: torch.nn.Module):
    """The decoder config (multimodal models nest it)."""
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


class TraceEngine:
    """Step-wise greedy decoder over a Hugging Face causal LM with head tracing and gating.

    ``mask`` modes of :meth:`generate`:

    * ``none``    -- plain greedy decoding (traced when ``needle_indices`` are given);
    * ``dynamic`` -- per step: ungated pass, Eq. 1 heads found, those heads gated, step re-run;
    * ``dynamic:k`` -- as dynamic, but only the k heads with the most attention on the copied token;
    * ``static`` / ``random`` -- the fixed ``gate_heads`` are gated at every step, in a single pass
      (traced heads are those of that gated pass).

    :meth:`generate_many` runs several conditions after one shared prefill.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        install(model)
        self.model = model.eval()
        cfg = text_config(model)
        self.num_layers: int = cfg.num_hidden_layers
        self.num_heads: int = cfg.num_attention_heads
        self.max_positions: int | None = getattr(cfg, "max_position_embeddings", None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- low level -------------------------------------------------------------------------------
    def _new_cache(self) -> DynamicCache:
        cache = DynamicCache(config=self.model.config)
        for layer in getattr(cache, "layers", []):
            if getattr(layer, "is_sliding", False) and hasattr(layer, "activate_past_recording"):
                layer.activate_past_recording()  # lets crop(-1) roll back a sliding-window layer
        return cache

    def fork(self, cache: DynamicCache) -> DynamicCache:
        """A cache that continues ``cache`` without copying its tensors.

        Why it is safe: cache layers only ever *replace* their key/value tensors (``torch.cat``, slicing),
        never write into them, so a shallow copy of each layer can grow, be cropped or slide its window
        while the original keeps the prefix it had. Section 5 forks one context prefill per strategy and
        per retrieval round instead of recomputing or deep-copying it.
        """
        forked = copy.copy(cache)
        forked.layers = [copy.copy(layer) for layer in cache.layers]
        return forked

    def _forward(self, token_ids: torch.Tensor, cache: DynamicCache, record: bool | frozenset[int], keep: dict[int, torch.Tensor],
                 hidden: bool = False, visible: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Last-position logits; with ``hidden`` also the last position's final hidden state (after the
        final norm: the last entry of ``output_hidden_states``, the vector the LM head reads).
        ``visible``: boolean over every position up to the last fed one; hidden keys get no attention."""
        PROBE.record, PROBE.keep, PROBE.rows, PROBE.visible = record, keep, {}, visible
        try:
            out = self.model(input_ids=token_ids, cache=cache, use_cache=True, logits_to_keep=1,
                             **({"output_hidden_states": True} if hidden else {}))
        finally:
            PROBE.record, PROBE.keep, PROBE.visible = False, {}, None
        if hidden:
            return out.logits[:, -1, :], out.hidden_states[-1][0, -1, :].float().cpu()
        return out.logits[:, -1, :]

    def _keep_from_mask(self, gate: torch.Tensor) -> dict[int, torch.Tensor]:
        """``[layers, heads]`` boolean gate to the probe's per-layer keep vectors (only gated layers)."""
        keep_all = (~gate).to(torch.float32)
        return {int(l): keep_all[l : l + 1] for l in gate.any(dim=1).nonzero().flatten().tolist()}

    def gate_mask(self, heads: Iterable[Head]) -> torch.Tensor:
        """Boolean ``[layers, heads]`` tensor for a head list, validating every index."""
        gate = torch.zeros(self.num_layers, self.num_heads, dtype=torch.bool, device=self.device)
        for layer, head in heads:
            if not (0 <= layer < self.num_layers and 0 <= head < self.num_heads):
                raise DecodingError(
                    f"dynheads: head ({layer}, {head}) does not exist; this model has "
                    f"{self.num_layers} layers x {self.num_heads} heads (0-based)"
                )
            gate[layer, head] = True
        return gate

    # -- decoding --------------------------------------------------------------------------------
    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        needle_indices: Sequence[int] | None = None,
        mask: str = "none",
        gate_heads: Iterable[Head] | None = None,
        top_k: int | None = None,
        support_indices: Sequence[int] | None = None,
        reasoning: ReasoningScore | None = None,
        eos_token_ids: Iterable[int] = (),
        stop: Callable[[list[int]], bool] | None = None,
        record_hidden: bool = False,
    ) -> Generation:
        """Greedy decoding of up to ``max_new_tokens`` tokens after ``prompt_ids`` under one condition.

        Stops after an EOS token (which is kept in the steps) or when ``stop(generated_ids)`` is true.
        """
        condition = Condition(mask, tuple(gate_heads or ()), top_k)
        return self.generate_many(prompt_ids, max_new_tokens, [condition], needle_indices=needle_indices,
                                  support_indices=support_indices, reasoning=reasoning,
                                  eos_token_ids=eos_token_ids, stop=stop, record_hidden=record_hidden)[0]

    @torch.inference_mode()
    def generate_many(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        conditions: Sequence[Condition],
        *,
        needle_indices: Sequence[int] | None = None,
        support_indices: Sequence[int] | None = None,
        reasoning: ReasoningScore | None = None,
        eos_token_ids: Iterable[int] = (),
        stop: Callable[[list[int]], bool] | None = None,
        on_step: Callable[[str, int, bool], None] | None = None,
        record_hidden: bool = False,
    ) -> list[Generation]:
        """One greedy generation per condition, all continuing one shared prefill of the prompt.

        Why shared: the conditions of an ablation differ only from the first generated token on, so the
        prompt's KV cache is computed once and copied for each condition; the comparison is then exact
        (identical prefill numerics) and an N-condition grid costs one prefill instead of N.
        ``on_step(condition, steps, finished)`` is called after every decode step and when a condition ends
        (progress bars). ``record_hidden``: keep each step's first-pass final hidden state (``Step.hidden``),
        read from the same forward pass.
        """
        conditions = [c if isinstance(c, Condition) else Condition.parse(c) for c in conditions]
        if not conditions:
            raise DecodingError("dynheads: no mask condition given; pass at least one, e.g. 'none'")
        prompt_ids = list(prompt_ids)
        n = len(prompt_ids)
        if n == 0:
            raise DecodingError("dynheads: empty prompt; give at least one token")
        if self.max_positions is not None and n + max_new_tokens > self.max_positions:
            raise DecodingError(
                f"dynheads: prompt of {n} tokens + {max_new_tokens} new tokens exceeds this model's "
                f"{self.max_positions} positions; use a shorter context (smaller task length) or fewer new tokens"
            )
        if needle_indices is not None and support_indices is not None:
            raise DecodingError("dynheads: give needle_indices (Eq. 1) or support_indices (Eq. 2), not both")
        target = needle_indices if support_indices is None else support_indices
        what = "needle" if support_indices is None else "supporting-fact"
        traced = target is not None
        if traced:
            bad = [i for i in target if not 0 <= i < n]
            if bad or not target:
                raise DecodingError(
                    f"dynheads: {what} token indices {bad or '[]'} are outside the {n}-token prompt; "
                    f"the {'needle was' if what == 'needle' else 'supporting facts were'} lost (truncated?) -- "
                    "shorten the context or raise max_length"
                )
        scoring = (reasoning or ReasoningScore()) if support_indices is not None else None
        for condition in conditions:
            if condition.mask == "dynamic" and not traced:
                raise DecodingError("dynheads: mask=dynamic needs needle or supporting-fact token indices to find each step's heads")
            self.gate_mask(condition.gate_heads)  # validates indices before any compute

        device = self.device
        seq = torch.zeros(1, n + max_new_tokens, dtype=torch.long, device=device)
        seq[0, :n] = torch.tensor(prompt_ids, device=device)
        needle = torch.zeros_like(seq, dtype=torch.bool)
        if traced:
            needle[0, list(target)] = True
        prefilled = self._new_cache()
        if n > 1:
            self._forward(seq[:, : n - 1], prefilled, record=False, keep={})
            prefilled.crop(0)
        generations = []
        for i, condition in enumerate(conditions):
            cache = prefilled if i == len(conditions) - 1 else copy.deepcopy(prefilled)
            steps = self._decode(cache, seq.clone(), needle if traced else None, n, max_new_tokens, condition,
                                 set(eos_token_ids), stop, scoring, on_step, record_hidden)
            if on_step is not None:
                on_step(condition.name, len(steps), True)
            generations.append(Generation(prompt_ids=prompt_ids, steps=steps, condition=condition.name))
        return generations

    def _detect(
        self, seq: torch.Tensor, target: torch.Tensor, pos: int, token: torch.Tensor, scoring: ReasoningScore | None,
        need_strength: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Retrieval heads ``[layers, heads]`` of the pass just run, and each head's strength.

        Eq. 1 (``scoring`` None): copy-paste heads; strength = peak attention probability (the weight
        on the copied token for a retrieval head), computed only when ``need_strength`` (a top-k
        selection), since this runs at every decode step. Eq. 2: heads whose reasoning score exceeds
        the threshold; strength = the score.
        """
        rows = [PROBE.rows[layer] for layer in range(self.num_layers)]
        PROBE.rows = {}
        if scoring is not None:
            scores = reasoning_scores(rows, pos + 1, target[:, : pos + 1], scoring.sink_tokens, scoring.local_window)[0]
            return scores > scoring.threshold, scores
        positions = argmax_key_positions(rows, pos + 1)
        hit = copy_paste_mask(positions, seq[:, : pos + 1], target[:, : pos + 1], token)[0]
        peak = torch.stack([row.amax(dim=-1) for row in rows], dim=1)[0] if need_strength else None
        return hit, peak

    def _decode(
        self,
        cache: DynamicCache,
        seq: torch.Tensor,
        needle: torch.Tensor | None,
        n: int,
        max_new_tokens: int,
        condition: Condition,
        eos: set[int],
        stop: Callable[[list[int]], bool] | None,
        scoring: ReasoningScore | None = None,
        on_step: Callable[[str, int, bool], None] | None = None,
        record_hidden: bool = False,
    ) -> list[Step]:
        traced = needle is not None
        fixed_heads = sorted(set(condition.gate_heads)) if condition.mask in ("static", "random") else []
        fixed_keep = self._keep_from_mask(self.gate_mask(fixed_heads)) if fixed_heads else {}
        steps: list[Step] = []
        generated: list[int] = []
        for t in range(max_new_tokens):
            pos = n - 1 + t  # position of the query token fed at this step
            current = seq[:, pos : pos + 1]
            step = Step(token_id=-1, gated=list(fixed_heads))
            if record_hidden:
                logits, step.hidden = self._forward(current, cache, record=traced, keep=fixed_keep, hidden=True)
            else:
                logits = self._forward(current, cache, record=traced, keep=fixed_keep)
            token = logits.argmax(dim=-1)
            if traced:
                hit, peak = self._detect(seq, needle, pos, token, scoring, need_strength=condition.top_k is not None)
                step.heads = mask_to_heads(hit)
                if scoring is not None:
                    step.scores = [[round(float(v), 5) for v in row] for row in peak.tolist()]
                if condition.mask == "dynamic" and step.heads:
                    gate = hit
                    if condition.top_k is not None and len(step.heads) > condition.top_k:
                        # keep the k strongest heads: most attention on the copied token (Appendix A.2), or highest Eq. 2 score
                        scores = torch.where(hit, peak, torch.full_like(peak, -1.0)).flatten()
                        chosen = torch.topk(scores, condition.top_k).indices
                        gate = torch.zeros_like(hit).flatten()
                        gate[chosen] = True
                        gate = gate.reshape(hit.shape)
                    step.gated = mask_to_heads(gate)
                    if step.gated:
                        step.ungated_token_id = int(token.item())
                        cache.crop(-1)
                        logits = self._forward(current, cache, record=True, keep=self._keep_from_mask(gate))
                        token = logits.argmax(dim=-1)
                        step.heads_after = mask_to_heads(self._detect(seq, needle, pos, token, scoring)[0])
            step.token_id = int(token.item())
            cache.crop(0)
            steps.append(step)
            generated.append(step.token_id)
            if on_step is not None:
                on_step(condition.name, len(steps), False)
            if pos + 1 < seq.shape[1]:
                seq[0, pos + 1] = step.token_id
            if step.token_id in eos or (stop is not None and stop(generated)):
                break
        return steps
