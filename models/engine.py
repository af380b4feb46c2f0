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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from ..metrics.retrieval import Head, argmax_key_positions, copy_paste_mask, mask_to_heads
from .attention import PROBE, install

MASK_MODES = ("none", "dynamic", "static", "random")


class DecodingError(ValueError):
    """Bad input to the decoding engine; the message names the problem and the fix."""


@dataclass
class Step:
    """One decode step. ``heads``: Eq. 1 set of the ungated pass; ``gated``: heads silenced for the emitted token."""

    token_id: int
    heads: list[Head] = field(default_factory=list)
    ungated_token_id: int | None = None
    gated: list[Head] = field(default_factory=list)


@dataclass
class Generation:
    prompt_ids: list[int]
    steps: list[Step]

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
    * ``static`` / ``random`` -- the fixed ``gate_heads`` are gated at every step (an ungated pass
      precedes the gated one only when tracing, to report the Eq. 1 heads).
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

    def _forward(self, token_ids: torch.Tensor, cache: DynamicCache, record: bool, keep: dict[int, torch.Tensor]) -> torch.Tensor:
        PROBE.record, PROBE.keep, PROBE.rows = record, keep, {}
        try:
            out = self.model(input_ids=token_ids, cache=cache, use_cache=True, logits_to_keep=1)
        finally:
            PROBE.record, PROBE.keep = False, {}
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
    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        needle_indices: Sequence[int] | None = None,
        mask: str = "none",
        gate_heads: Iterable[Head] | None = None,
        eos_token_ids: Iterable[int] = (),
        stop: Callable[[list[int]], bool] | None = None,
    ) -> Generation:
        """Greedy decoding of up to ``max_new_tokens`` tokens after ``prompt_ids`` (see class docstring).

        Stops after an EOS token (which is kept in the steps) or when ``stop(generated_ids)`` is true.
        """
        if mask not in MASK_MODES:
            raise DecodingError(f"dynheads: unknown mask mode {mask!r}; choose one of {', '.join(MASK_MODES)}")
        prompt_ids = list(prompt_ids)
        n = len(prompt_ids)
        if n == 0:
            raise DecodingError("dynheads: empty prompt; give at least one token")
        if self.max_positions is not None and n + max_new_tokens > self.max_positions:
            raise DecodingError(
                f"dynheads: prompt of {n} tokens + {max_new_tokens} new tokens exceeds this model's "
                f"{self.max_positions} positions; use a shorter context (smaller task length) or fewer new tokens"
            )
        traced = needle_indices is not None
        if mask == "dynamic" and not traced:
            raise DecodingError("dynheads: mask=dynamic needs the needle token indices to find each step's heads")
        fixed_gate = None
        if mask in ("static", "random"):
            fixed_gate = self.gate_mask(gate_heads or [])
        fixed_heads = mask_to_heads(fixed_gate) if fixed_gate is not None else []
        fixed_keep = self._keep_from_mask(fixed_gate) if fixed_gate is not None else {}

        device = self.device
        seq = torch.zeros(1, n + max_new_tokens, dtype=torch.long, device=device)
        seq[0, :n] = torch.tensor(prompt_ids, device=device)
        needle = torch.zeros_like(seq, dtype=torch.bool)
        if traced:
            bad = [i for i in needle_indices if not 0 <= i < n]
            if bad or not needle_indices:
                raise DecodingError(
                    f"dynheads: needle token indices {bad or '[]'} are outside the {n}-token prompt; "
                    "the needle was lost (truncated?) -- shorten the context or raise max_length"
                )
            needle[0, list(needle_indices)] = True
        eos = set(eos_token_ids)

        cache = self._new_cache()
        if n > 1:
            self._forward(seq[:, : n - 1], cache, record=False, keep={})
            cache.crop(0)
        steps: list[Step] = []
        generated: list[int] = []
        for t in range(max_new_tokens):
            pos = n - 1 + t  # position of the query token fed at this step
            current = seq[:, pos : pos + 1]
            step_heads: list[Head] = []
            ungated_token: int | None = None
            gated: list[Head] = []
            if traced:
                logits = self._forward(current, cache, record=True, keep={})
                token = logits.argmax(dim=-1)
                rows = [PROBE.rows[layer] for layer in range(self.num_layers)]
                positions = argmax_key_positions(rows, pos + 1)
                hit = copy_paste_mask(positions, seq[:, : pos + 1], needle[:, : pos + 1], token)[0]
                PROBE.rows = {}
                step_heads = mask_to_heads(hit)
                ungated_token = int(token.item())
                keep = self._keep_from_mask(hit) if mask == "dynamic" else fixed_keep
                gated = step_heads if mask == "dynamic" else fixed_heads
                if keep:
                    cache.crop(-1)
                    logits = self._forward(current, cache, record=False, keep=keep)
                    token = logits.argmax(dim=-1)
                token_id = int(token.item())
            else:
                logits = self._forward(current, cache, record=False, keep=fixed_keep)
                token_id = int(logits.argmax(dim=-1).item())
                gated = fixed_heads
            cache.crop(0)
            steps.append(Step(token_id=token_id, heads=step_heads, ungated_token_id=ungated_token, gated=gated))
            generated.append(token_id)
            if pos + 1 < seq.shape[1]:
                seq[0, pos + 1] = token_id
            if token_id in eos or (stop is not None and stop(generated)):
                break
        return Generation(prompt_ids=prompt_ids, steps=steps)
