"""An sdpa-based attention function that can read and gate individual heads.

Why: every result of the paper needs, at each decode step, the attention row of the last query
position for every head (to find retrieval heads) and the ability to silence chosen heads (to test
whether they matter). transformers 5.x lets a model call any function registered through
``AttentionInterface``; this module registers one that delegates the real work to the stock sdpa
kernel and adds two cheap extras:

* **recording** -- for the last query row only, ``softmax(q_last · Kᵀ · scale + mask_row)`` per query
  head, computed in float32. Memory is O(heads × context), never O(context²), so prefill stays as
  cheap as plain sdpa.
* **gating** -- the per-head attention output ``out[b, q, h, :]`` is multiplied by 0 for gated heads,
  which removes exactly that head's contribution before ``o_proj`` mixes heads.
* **hiding** -- key positions marked hidden in ``visible`` get no attention from any query of the pass
  (Section 5's in-context RAG shows the model only the retrieved windows of its context this way).
* **streaming heads** -- per head, keys outside the first ``sink`` positions and the last ``window`` ones
  get no attention (:class:`StreamView`; head-level KV compression, DuoAttention's streaming heads), and
  the keys every head and every KV group still sees are counted, so the KV fraction kept is measured from
  the very mask the kernel used.

State lives in one private module-level :class:`PassInstructions` (what the next forward pass records, gates
and hides; not a Claim 3 probe); :func:`traced_pass` sets it for the forward passes it wraps (the decoding
engine's step API, :mod:`dynheads.models.engine.batch`, is its one user) and resets it afterwards. When it is idle the function is plain sdpa plus one attribute check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from ...util import text_config

ATTN_IMPLEMENTATION = "dynheads_sdpa"


class UnsupportedAttentionError(ValueError):
    """The model uses an attention feature the trace engine cannot reproduce exactly."""


@dataclass
class PassInstructions:
    """What the attention function should do during the next forward pass.

    ``record``: store the last-row probabilities of every layer (or, given a set of layer indices, of
    those layers only: RIND reads just the last one) in ``rows[layer]`` as a float32
    tensor ``[batch, heads, keys]`` whose last key is the newest position (keys are right-aligned:
    a sliding-window layer sees only the most recent positions).
    ``keep``: per layer, a float tensor ``[batch, heads]`` of 1 (keep) / 0 (gate), or absent.
    ``visible``: a boolean tensor ``[batch, total]`` (or ``[total]`` for every row) over the positions
    ``0 .. total - 1`` of the sequence after this pass (False = no query may attend that key), or None
    (everything causal is visible).
    ``positions``: ``(query [batch, q], key [batch, total])`` true positions of the fed tokens and of every
    key slot (-1: padding), or None. Given, the attention builds each layer's mask from them itself
    (causal, sliding window, padding) instead of using the one transformers made: batches whose rows
    have padding *inside* the sequence (Section 5's rows with suffixes of different lengths) need true
    distances for sliding windows, which transformers' padded coordinates do not give.
    """

    record: bool | frozenset[int] = False
    keep: dict[int, torch.Tensor] = field(default_factory=dict)
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    visible: torch.Tensor | None = None
    positions: tuple[torch.Tensor, torch.Tensor] | None = None
    stream: "StreamView | None" = None

    def reset(self) -> None:
        self.record = False
        self.keep = {}
        self.rows = {}
        self.visible = None
        self.positions = None
        self.stream = None


@dataclass
class StreamView:
    """Which heads see only attention sinks plus a recent window during the next pass, and what each kept.

    ``heads``: per layer, a boolean ``[batch, heads]`` (True: a streaming head), only for layers with at least
    one; a head of another layer sees everything causal. ``sink`` / ``window``: a streaming head's query at
    true position ``q`` sees key positions ``p < sink`` and ``q - window < p <= q``. ``query_pos`` ``[batch, q]`` /
    ``key_pos`` ``[batch, total]``: true positions of the fed tokens and of every key slot (-1: padding).

    Filled by the pass, for the last query row of every layer: ``kept[layer]`` ``[batch, heads]`` keys each query
    head attends to, ``kept_groups[layer]`` ``[batch, kv_heads]`` keys any query head of each KV group attends to
    (what a KV head must hold), ``visible_keys[layer]`` ``[batch]`` keys a head attends to without the restriction.
    """

    heads: dict[int, torch.Tensor]
    sink: int
    window: int
    query_pos: torch.Tensor
    key_pos: torch.Tensor
    kept: dict[int, torch.Tensor] = field(default_factory=dict)
    kept_groups: dict[int, torch.Tensor] = field(default_factory=dict)
    visible_keys: dict[int, torch.Tensor] = field(default_factory=dict)

    def restrict(self, layer: int, mask: torch.Tensor, num_heads: int, num_kv: int) -> torch.Tensor:
        """``mask`` (boolean ``[b, 1 or H, q, keys]``, right-aligned keys) with this layer's streaming heads
        restricted, ``[b, H, q, keys]`` (the mask itself when the layer has none), after counting what its last row
        lets every head and KV group see."""
        kv_len = mask.shape[-1]
        self.visible_keys[layer] = mask[:, :, -1, :].sum(dim=-1).max(dim=1).values
        streaming = self.heads.get(layer)
        if streaming is not None:
            key_pos = self.key_pos[:, -kv_len:][:, None, :]
            query_pos = self.query_pos[:, :, None]
            view = (key_pos >= 0) & ((key_pos < self.sink) | (key_pos > query_pos - self.window))  # [b, q, keys]
            mask = mask & (view[:, None] | ~streaming[:, :, None, None].to(mask.device))
        last = mask[:, :, -1, :].expand(mask.shape[0], num_heads, kv_len)
        self.kept[layer] = last.sum(dim=-1)
        self.kept_groups[layer] = last.reshape(mask.shape[0], num_kv, num_heads // num_kv, kv_len).any(dim=2).sum(dim=-1)
        return mask


_PASS = PassInstructions()


@contextmanager
def traced_pass(record: bool | frozenset[int] = False, keep: dict[int, torch.Tensor] | None = None,
                visible: torch.Tensor | None = None,
                positions: tuple[torch.Tensor, torch.Tensor] | None = None,
                stream: StreamView | None = None) -> Iterator[PassInstructions]:
    """What the attention does during the forward passes inside the ``with`` block; the instructions it
    yields hold the recorded rows (read them inside the block). Resets the hook afterwards, errors included."""
    _PASS.record, _PASS.keep, _PASS.rows, _PASS.visible = record, dict(keep or {}), {}, visible
    _PASS.positions, _PASS.stream = positions, stream
    try:
        yield _PASS
    finally:
        _PASS.reset()


def last_row_probabilities(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    sliding_window: int | None,
) -> torch.Tensor:
    """Attention probabilities of the last query row, ``[batch, query_heads, keys]`` in float32.

    Handles GQA without materialising repeated keys (query heads are grouped onto their KV head the
    way ``repeat_kv`` orders them: query head ``h`` reads KV head ``h // group``), a boolean or
    additive 4-D mask, and a ``None`` mask (causal: the last row sees every key, except beyond a
    sliding window).
    """
    batch, num_heads, _, head_dim = query.shape
    num_kv = key.shape[1]
    kv_len = key.shape[2]
    group = num_heads // num_kv
    q_last = query[:, :, -1, :].float().reshape(batch, num_kv, group, head_dim)
    logits = torch.matmul(q_last, key.float().transpose(-1, -2)) * scaling  # [b, kv, group, keys]
    logits = logits.reshape(batch, num_heads, kv_len)
    if attention_mask is not None:
        mask_row = attention_mask[:, :, -1, :kv_len]  # [b, 1 or H, keys]
        if mask_row.dtype == torch.bool:
            logits = logits.masked_fill(~mask_row, float("-inf"))
        else:
            logits = logits + mask_row.float()
    elif sliding_window is not None and kv_len > sliding_window:
        logits[..., : kv_len - sliding_window] = float("-inf")
    return torch.softmax(logits, dim=-1)


def position_mask(query_pos: torch.Tensor, key_pos: torch.Tensor, sliding_window: int | None) -> torch.Tensor:
    """A boolean ``[b, 1, q, keys]`` causal (and sliding-window) mask from true positions; padding (-1) is
    seen by no query, and every fed token sees its own key, so a padding query never attends to nothing
    (which would make NaN keys and values for the next layer)."""
    q = query_pos[:, None, :, None]
    k = key_pos[:, None, None, :]
    allowed = (k >= 0) & (k <= q)
    if sliding_window is not None:
        allowed &= k > q - sliding_window
    fed = key_pos.shape[1] - query_pos.shape[1]  # the fed tokens are the last keys
    own = torch.arange(key_pos.shape[1], device=key_pos.device)[None, :] == (fed + torch.arange(query_pos.shape[1], device=key_pos.device))[:, None]
    return allowed | own[None, None]


def hide_keys(
    attention_mask: torch.Tensor | None,
    visible: torch.Tensor,
    query_len: int,
    kv_len: int,
    sliding_window: int | None,
) -> torch.Tensor:
    """A boolean ``[b, 1, q, keys]`` mask that also forbids the keys ``visible`` marks hidden.

    Keys are right-aligned (the last key is position ``len(visible) - 1``; a sliding-window layer holds
    only the newest keys). A ``None`` mask means causal, so the causal (and sliding-window) rule is
    built here; an additive float mask is read as allowed where it is finite.
    """
    visible = visible if visible.dim() == 2 else visible[None]
    total = visible.shape[1]
    keys = visible[:, total - kv_len :]
    return boolean_mask(attention_mask, query_len, kv_len, sliding_window, total, visible.device) & keys[:, None, None, :]


def boolean_mask(attention_mask: torch.Tensor | None, query_len: int, kv_len: int, sliding_window: int | None,
                 total: int, device: torch.device) -> torch.Tensor:
    """The attention mask as a boolean ``[b or 1, 1 or H, q, kv_len]`` (True: may attend). ``None`` means causal over
    ``total`` positions, right-aligned (and the sliding window); an additive float mask is allowed where finite."""
    if attention_mask is None:
        q_pos = torch.arange(total - query_len, total, device=device)[:, None]
        k_pos = torch.arange(total - kv_len, total, device=device)[None, :]
        allowed = k_pos <= q_pos
        if sliding_window is not None:
            allowed &= k_pos > q_pos - sliding_window
        return allowed[None, None]
    if attention_mask.dtype != torch.bool:
        attention_mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
    return attention_mask[..., :kv_len]


def dynheads_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """sdpa attention plus optional last-row recording and per-head gating (see module docstring)."""
    if kwargs.get("softcap") is not None:
        raise UnsupportedAttentionError(
            f"dynheads: layer {getattr(module, 'layer_idx', '?')} uses attention logit softcapping "
            f"(softcap={kwargs['softcap']}), which the sdpa-based trace engine cannot reproduce; "
            "use a model without attn_logit_softcapping (e.g. Gemma-3 rather than Gemma-2)"
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    instructions = _PASS
    if instructions.positions is not None:
        query_pos, key_pos = instructions.positions
        attention_mask = position_mask(query_pos, key_pos[:, -key.shape[2]:], kwargs.get("sliding_window"))
    if instructions.visible is not None:
        attention_mask = hide_keys(attention_mask, instructions.visible, query.shape[2], key.shape[2], kwargs.get("sliding_window"))
    if instructions.stream is not None:
        total = instructions.stream.key_pos.shape[1]
        base = boolean_mask(attention_mask, query.shape[2], key.shape[2], kwargs.get("sliding_window"), total, query.device)
        restricted = instructions.stream.restrict(module.layer_idx, base.expand(query.shape[0], *base.shape[1:]),
                                           query.shape[1], key.shape[1])
        if module.layer_idx in instructions.stream.heads:  # a layer without streaming heads keeps its mask untouched (bit-exact)
            attention_mask = restricted
    out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if instructions.record or instructions.keep:
        layer = module.layer_idx
        if instructions.record is True or (instructions.record and layer in instructions.record):
            instructions.rows[layer] = last_row_probabilities(query, key, attention_mask, scaling, kwargs.get("sliding_window"))
        keep = instructions.keep.get(layer)
        if keep is not None:
            out = out * keep[:, None, :, None].to(out.dtype)
    return out, None


_REGISTERED = False


def register() -> str:
    """Register the attention (and its mask function) with transformers; idempotent. Returns its name."""
    global _REGISTERED
    if not _REGISTERED:
        AttentionInterface.register(ATTN_IMPLEMENTATION, dynheads_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, sdpa_mask)
        _REGISTERED = True
    return ATTN_IMPLEMENTATION


def install(model: torch.nn.Module) -> None:
    """Switch ``model`` to the traced attention. Refuses softcapped models up front with one clear line."""
    config = text_config(model)
    softcap = getattr(config, "attn_logit_softcapping", None)
    if softcap is not None:
        raise UnsupportedAttentionError(
            f"dynheads: this {config.model_type} model uses attention logit softcapping (softcap={softcap}), "
            "which the sdpa-based trace engine cannot reproduce; choose a model without attn_logit_softcapping"
        )
    model.set_attn_implementation(register())
