"""The public step API: rows that decode in lockstep over prompt prefills that are held once.

Why this shape: every experiment of the paper continues a few prompts under several conditions (none /
dynamic / static / random, the k of the progressive ablation, the RAG strategies), and batched decoding
is what makes that affordable. A row is one continuation; a *group* is one distinct prompt. Each group's
prompt (all but its last token) is prefilled once, on its own, then held once for all its rows:

* **shared prefixes** -- the cache layer :class:`SharedPrefixLayer` keeps the prefills of a batch's groups
  as one left-padded ``[groups, kv, P, d]`` tensor and only each row's own continuation (its *suffix*,
  at most the new tokens) per row. A step gathers ``prefix[group] ++ suffix`` for the attention call
  and lets it go, so memory is one prefill per distinct prompt plus what the rows add (the gather is
  transient, one layer at a time; a plain ``DynamicLayer`` concatenates the whole cache every step too).
* **left padding, prefill unpadded** -- prompts of different lengths are aligned on their last token.
  Each prefill runs alone, so its keys and values are bit-identical to a one-row run; padding exists only
  in the decode steps, as zero keys masked out (never NaN), and every row gets its true position ids.
* **every layer holds the whole sequence** -- sliding-window layers are restricted by the attention mask
  transformers builds for them rather than by truncating their cache, so a recorded row always covers
  every key (``rows[layer][r]`` is ``[heads, P + steps]`` in the batch's padded coordinates).
* **per-row re-runs and exits** -- :meth:`DecodeBatch.rerun` replaces the newest position of chosen rows
  only (the dynamic condition's gated second pass), running just those rows; :meth:`DecodeBatch.select`
  lets rows that stopped leave and frees prefills no remaining row needs.
* **forks** -- :meth:`DecodeBatch.fork` continues a batch without copying anything: cache layers only
  ever replace their tensors, never write into them.

Each call to :meth:`DecodeBatch.step` takes, per row, its gates, its visibility and what to record; the
attention hook's state (:mod:`dynheads.models.engine.attention`) is set and cleared inside the call.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin

from .attention import StreamView, traced_pass
from ...util import kv_geometry, text_config


class SharedPrefixLayer(CacheLayerMixin):
    """One layer's cache: the groups' prefills (shared, left-padded) and each row's own suffix."""

    is_sliding = False
    is_croppable = True

    def __init__(self, prefix_keys: torch.Tensor, prefix_values: torch.Tensor, group: torch.Tensor) -> None:
        super().__init__()
        self.prefix_keys, self.prefix_values = prefix_keys, prefix_values
        rows, kv, dim = group.shape[0], prefix_keys.shape[1], prefix_keys.shape[3]
        self.keys = prefix_keys.new_zeros(rows, kv, 0, dim)
        self.values = prefix_values.new_zeros(rows, kv, 0, prefix_values.shape[3])
        self.device = prefix_keys.device
        self.is_initialized = True
        self.set_group(group)

    def set_group(self, group: torch.Tensor) -> None:
        """Which prefix each row continues; decided once here, not at every step (a device sync on GPUs)."""
        self.group = group
        self.one_to_one = (self.prefix_keys.shape[0] == group.shape[0]
                           and bool((group == torch.arange(group.shape[0], device=group.device)).all()))

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:  # pragma: no cover
        pass  # built initialised

    def _prefix(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.one_to_one else tensor.index_select(0, self.group)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        return (torch.cat([self._prefix(self.prefix_keys), self.keys], dim=-2),
                torch.cat([self._prefix(self.prefix_values), self.values], dim=-2))

    def get_seq_length(self) -> int:
        return self.prefix_keys.shape[-2] + self.keys.shape[-2]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0:
            self.keys = self.keys[..., :tokens_to_remove, :]
            self.values = self.values[..., :tokens_to_remove, :]


class Streaming(NamedTuple):
    """Streaming heads of one step (head-level KV compression): ``heads`` boolean ``[rows, layers, heads]`` (True: the
    head sees only the first ``sink`` positions and the last ``window`` ones; False: the whole context)."""

    heads: torch.Tensor
    sink: int
    window: int


@dataclass
class StepOutput:
    """What one step returns for the rows it ran.

    ``logits``: ``[rows, vocab]`` at the last fed position. ``rows``: per recorded layer, float32
    ``[rows, heads, keys]`` last-row attention in the batch's padded coordinates (key ``j`` of row ``r``
    is absolute position ``j - pad[r]``). ``hidden``: ``[rows, hidden]`` final hidden state (after the
    final norm) of the last position, float32 on the CPU, when asked for. ``kv_kept``: with ``stream``,
    ``[rows, 2]`` float64 on the CPU: the share of (head, key) pairs the last position attended to over all
    layers, counted per query head and per KV head (a KV head holds what any of its query heads reads), out of
    what it would attend to unrestricted, counted from the masks the attention applied.
    """

    logits: torch.Tensor
    rows: dict[int, torch.Tensor]
    hidden: torch.Tensor | None = None
    kv_kept: torch.Tensor | None = None


class DecodeBatch:
    """Rows continuing prompts in lockstep; see the module docstring.

    ``prompts``: the distinct prompts (token ids). ``rows_of``: for each row, the index of the prompt it
    continues. The last token of every prompt is not prefilled: the first :meth:`step` feeds it, so
    every generated token comes from a step that can be recorded, gated and re-run alike.
    """

    def __init__(self, model: torch.nn.Module, prompts: Sequence[Sequence[int]], rows_of: Sequence[int]) -> None:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("dynheads: every prompt of a batch needs at least one token")
        if not rows_of or not all(0 <= g < len(prompts) for g in rows_of):
            raise ValueError(f"dynheads: rows_of must name prompts 0..{len(prompts) - 1}, got {list(rows_of)}")
        self.model = model
        device = next(model.parameters()).device
        self.device = device
        prefills = [self._prefill(list(p)) for p in prompts]
        held = [len(p) - 1 for p in prompts]
        width = max(held)
        layers = []
        for layer in range(len(prefills[0])):
            keys = [kv[layer][0] for kv in prefills]
            values = [kv[layer][1] for kv in prefills]
            layers.append((_left_pad(keys, width), _left_pad(values, width)))
        del prefills
        self.group = torch.tensor(list(rows_of), dtype=torch.long, device=device)
        self.pad_of_group = torch.tensor([width - h for h in held], dtype=torch.long, device=device)
        self.length = torch.tensor([held[g] for g in rows_of], dtype=torch.long, device=device)  # real tokens held
        self.padded = width > min(held)
        self.key_pos: torch.Tensor | None = None  # [rows, width] true position of every key slot, once rows have gaps
        self.cache = Cache(layers=[SharedPrefixLayer(k, v, self.group) for k, v in layers])

    # -- construction ------------------------------------------------------------------------------
    def _prefill(self, prompt: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of all but the prompt's last token, one ``[1, kv, n - 1, d]`` pair per layer."""
        cache = DynamicCache()  # no config: every layer keeps the whole sequence (see the module docstring)
        if len(prompt) > 1:
            with traced_pass():
                self.model(input_ids=torch.tensor([prompt[:-1]], device=self.device), cache=cache, use_cache=True,
                           logits_to_keep=1)
            return [(layer.keys, layer.values) for layer in cache.layers]
        cfg = text_config(self.model)
        heads, dim = kv_geometry(cfg)
        dtype = next(self.model.parameters()).dtype
        empty = torch.zeros(1, heads, 0, dim, dtype=dtype, device=self.device)
        return [(empty, empty)] * cfg.num_hidden_layers

    # -- geometry --------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return int(self.group.shape[0])

    @property
    def width(self) -> int:
        """Positions every row holds in padded coordinates (prefix width plus the steps so far)."""
        return self.cache.layers[0].get_seq_length()

    @property
    def pad(self) -> torch.Tensor:
        """``[rows]`` left padding of each row: padded index ``j`` is absolute position ``j - pad``."""
        return self.pad_of_group[self.group]

    def _attention_mask(self, pad: torch.Tensor, total: int) -> torch.Tensor | None:
        if not self.padded:
            return None  # nothing padded: plain causal, exactly as a one-row run
        return torch.arange(total, device=self.device)[None, :] >= pad[:, None]

    def _padded_visibility(self, visible: Sequence[torch.Tensor | None], pad: torch.Tensor, total: int,
                           key_pos: torch.Tensor | None = None) -> torch.Tensor | None:
        """Per-row absolute-position visibility to one ``[rows, total]`` padded tensor (``None``: all visible).
        ``key_pos``: the true position of every slot (rows with gaps); padding slots stay 'visible' (the
        position mask already hides them from every other query)."""
        if all(v is None for v in visible):
            return None
        out = torch.ones(len(visible), total, dtype=torch.bool, device=self.device)
        for r, v in enumerate(visible):
            if v is None:
                continue
            v = v.to(self.device)
            if key_pos is not None:
                slots = key_pos[r]
                inside = (slots >= 0) & (slots < v.shape[0])
                out[r, inside] = v[slots[inside]]
                continue
            p = int(pad[r])
            n = min(v.shape[0], total - p)
            out[r, p : p + n] = v[:n]
        return out

    def _key_positions(self) -> torch.Tensor:
        """``[rows, width]``: true position of every key slot (-1 for padding)."""
        if self.key_pos is not None:
            return self.key_pos
        slots = torch.arange(self.width, device=self.device)[None, :] - self.pad[:, None]
        return torch.where(slots >= 0, slots, torch.full_like(slots, -1))

    # -- stepping ----------------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor, *, keep: torch.Tensor | None = None, record: bool | frozenset[int] = False,
             visible: Sequence[torch.Tensor | None] | None = None, hidden: bool = False,
             stream: Streaming | None = None) -> StepOutput:
        """Feed ``tokens`` (``[rows, q]``) to every row at once.

        ``keep``: float ``[rows, layers, heads]`` of 1 (keep) / 0 (gate), or ``None``. ``record``: every layer's
        last-row attention (``True``) or those of a set of layers. ``visible``: per row, a boolean tensor over
        its absolute positions (at least up to the last fed one) or ``None`` for everything causal. ``stream``:
        heads restricted to sinks + a recent window (:class:`Streaming`); the output then reports ``kv_kept``.
        """
        return self._run(self.cache, self.group, self.length, tokens, keep, record, visible, hidden, advance=True,
                         stream=stream)

    def feed(self, chunks: Sequence[Sequence[int]], *, visible: Sequence[torch.Tensor | None] | None = None,
             record: bool | frozenset[int] = False) -> StepOutput:
        """Feed each row its own tokens, of any lengths (Section 5 recomputes suffixes that differ per row).

        Shorter chunks are left-padded inside the sequence; from here on the batch masks by true positions
        (:func:`~dynheads.models.engine.attention.position_mask`), so padding is seen by no real query and sliding
        windows count true distances. ``logits`` / ``rows`` are those of each chunk's last token (of the
        padding, for an empty chunk).
        """
        if len(chunks) != self.rows or not any(len(c) for c in chunks):
            raise ValueError(f"dynheads: feed needs one token list per row ({self.rows} rows), not all empty")
        width = max(len(c) for c in chunks)
        tokens = torch.zeros(self.rows, width, dtype=torch.long, device=self.device)
        query_pos = torch.full((self.rows, width), -1, dtype=torch.long, device=self.device)
        for r, chunk in enumerate(chunks):
            gap = width - len(chunk)
            tokens[r, gap:] = torch.tensor(list(chunk), dtype=torch.long, device=self.device)
            query_pos[r, gap:] = int(self.length[r]) + torch.arange(len(chunk), device=self.device)
        key_pos = self._key_positions()
        self.key_pos = key_pos  # from here on: masks from true positions
        out = self._run(self.cache, self.group, self.length, tokens, None, record, visible, False, advance=False,
                        query_pos=query_pos)
        self.length = self.length + torch.tensor([len(c) for c in chunks], dtype=torch.long, device=self.device)
        return out

    def rerun(self, rows: Sequence[int], tokens: torch.Tensor, *, keep: torch.Tensor | None = None,
              record: bool | frozenset[int] = False, visible: Sequence[torch.Tensor | None] | None = None,
              hidden: bool = False, stream: Streaming | None = None) -> StepOutput:
        """Run the newest single-token step again for ``rows`` only (others keep theirs), e.g. with heads gated.

        The chosen rows' newest position is replaced by the re-run's; the returned output covers those rows in
        the given order.
        """
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        sub = Cache(layers=[self._sub_layer(layer, index, drop_last=True) for layer in self.cache.layers])
        key_pos = None if self.key_pos is None else self.key_pos[index][:, :-1]
        out = self._run(sub, self.group[index], self.length[index] - 1, tokens, keep, record, visible, hidden, advance=False,
                        key_pos=key_pos, stream=stream)
        for layer, part in zip(self.cache.layers, sub.layers):
            layer.keys = layer.keys.index_copy(0, index, part.keys)
            layer.values = layer.values.index_copy(0, index, part.values)
        return out

    def _sub_layer(self, layer: SharedPrefixLayer, index: torch.Tensor, drop_last: bool) -> SharedPrefixLayer:
        sub = copy.copy(layer)
        end = layer.keys.shape[-2] - int(drop_last)
        sub.set_group(layer.group[index])
        sub.keys = layer.keys.index_select(0, index)[..., :end, :]
        sub.values = layer.values.index_select(0, index)[..., :end, :]
        return sub

    def _run(self, cache: Cache, group: torch.Tensor, length: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor | None,
             record: bool | frozenset[int], visible: Sequence[torch.Tensor | None] | None, hidden: bool,
             advance: bool, key_pos: torch.Tensor | None = None, query_pos: torch.Tensor | None = None,
             stream: Streaming | None = None) -> StepOutput:
        tokens = tokens.to(self.device)
        if tokens.dim() != 2 or tokens.shape[0] != group.shape[0]:
            raise ValueError(f"dynheads: tokens must be [{group.shape[0]}, q], got {list(tokens.shape)}")
        q = tokens.shape[1]
        pad = self.pad_of_group[group]
        total = cache.layers[0].get_seq_length() + q
        if query_pos is None:
            query_pos = length[:, None] + torch.arange(q, device=self.device)[None, :]
        if key_pos is None and cache is self.cache:
            key_pos = self.key_pos
        positions = None
        if key_pos is not None:  # rows with gaps: masks from true positions (see feed)
            key_pos = torch.cat([key_pos, query_pos], dim=1)
            positions = (query_pos, key_pos)
        keep_by_layer = {}
        if keep is not None:
            for layer in (keep < 1).any(dim=(0, 2)).nonzero().flatten().tolist():
                keep_by_layer[int(layer)] = keep[:, layer, :].to(self.device, torch.float32)
        vis = None if visible is None else self._padded_visibility(visible, pad, total, key_pos)
        mask = None if positions is not None else self._attention_mask(pad, total)
        view = None
        if stream is not None:
            slots = torch.arange(total, device=self.device)[None, :] - pad[:, None]
            true_pos = key_pos if key_pos is not None else torch.where(slots >= 0, slots, torch.full_like(slots, -1))
            heads = stream.heads.to(self.device, torch.bool)
            view = StreamView({int(layer): heads[:, layer] for layer in heads.any(dim=(0, 2)).nonzero().flatten().tolist()},
                              stream.sink, stream.window, query_pos, true_pos)
        with traced_pass(record=record, keep=keep_by_layer, visible=vis, positions=positions, stream=view) as probe:
            out = self.model(input_ids=tokens, attention_mask=mask, position_ids=query_pos.clamp(min=0),
                             cache=cache, use_cache=True, logits_to_keep=1, **({"output_hidden_states": True} if hidden else {}))
            rows = dict(probe.rows)
        kv_kept = None if view is None else _kept_shares(view)
        if key_pos is not None and cache is self.cache:
            self.key_pos = key_pos
        if advance:
            self.length = self.length + q
        return StepOutput(logits=out.logits[:, -1, :], rows=rows,
                          hidden=out.hidden_states[-1][:, -1, :].float().cpu() if hidden else None, kv_kept=kv_kept)

    # -- rows entering and leaving -----------------------------------------------------------------
    def select(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in this order): rows that stopped leave without disturbing the others, and the
        prefills no remaining row continues are freed (with the left padding they no longer need)."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        if len(index) == 0:
            raise ValueError("dynheads: a batch needs at least one row; drop the batch instead")
        used, group = torch.unique(self.group[index], sorted=True, return_inverse=True)
        trim = int(self.pad_of_group[used].min())
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
            if len(used) < layer.prefix_keys.shape[0] or trim:
                layer.prefix_keys = layer.prefix_keys.index_select(0, used)[..., trim:, :]
                layer.prefix_values = layer.prefix_values.index_select(0, used)[..., trim:, :]
            layer.set_group(group)
        self.group, self.length = group, self.length[index]
        if self.key_pos is not None:
            self.key_pos = self.key_pos[index][:, trim:]
        self.pad_of_group = self.pad_of_group[used] - trim
        self.padded = bool((self.pad_of_group > 0).any())

    def retain(self, staying: Sequence[int], labels: Sequence[Any]) -> list[Any]:
        """Keep the rows at ``staying`` (positions among the current rows) and return their ``labels``: the
        decoding loops' way of letting stopped rows leave."""
        if len(staying) < self.rows:
            self.select(staying)
        return [labels[a] for a in staying]

    def fork(self) -> "DecodeBatch":
        """A batch that continues this one from here, sharing every tensor (nothing is copied)."""
        forked = copy.copy(self)
        forked.cache = Cache(layers=[copy.copy(layer) for layer in self.cache.layers])
        return forked


def _kept_shares(view: StreamView) -> torch.Tensor:
    """``[rows, 2]``: keys attended over all layers and heads (per query head, per KV head) out of the unrestricted count."""
    layers = sorted(view.kept)
    heads, groups = view.kept[layers[0]].shape[1], view.kept_groups[layers[0]].shape[1]
    full = sum(view.visible_keys[layer].double() for layer in layers)
    by_head = sum(view.kept[layer].double().sum(dim=-1) for layer in layers) / (full * heads)
    by_group = sum(view.kept_groups[layer].double().sum(dim=-1) for layer in layers) / (full * groups)
    return torch.stack([by_head, by_group], dim=1).cpu()


def _left_pad(tensors: list[torch.Tensor], width: int) -> torch.Tensor:
    """``[1, kv, n_i, d]`` tensors to one ``[len, kv, width, d]`` tensor, right-aligned, zeros on the left."""
    if len(tensors) == 1 and tensors[0].shape[-2] == width:
        return tensors[0]
    first = tensors[0]
    out = first.new_zeros(len(tensors), first.shape[1], width, first.shape[3])
    for i, t in enumerate(tensors):
        if t.shape[-2]:
            out[i, :, width - t.shape[-2] :] = t[0]
    return out
