"""Hooks into transformers' eager attention that independent replays share (``verify`` and its Section 5 part).

Why a module of its own: both replays find every layer's attention module and swap in masks they build from a trace
alone; keeping the hooks here lets ``verify`` and ``rag/replay`` use them without importing each other.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ...util import text_config


def attention_modules(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """Each decoder layer's attention module (the one holding ``o_proj``), by layer index."""
    return {int(m.layer_idx): m for m in model.modules() if hasattr(m, "o_proj") and hasattr(m, "layer_idx")}


@contextmanager
def layer_masks(model: torch.nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """While active, every attention module uses the additive mask stored under its layer index in the yielded dict
    (the caller fills it before each forward), whatever mask the model built."""
    masks: dict[int, torch.Tensor] = {}
    hooks = []
    for layer, module in attention_modules(model).items():
        def swap(_module: torch.nn.Module, args: tuple, kwargs: dict, layer: int = layer) -> tuple:
            return args, {**kwargs, "attention_mask": masks[layer]}

        hooks.append(module.register_forward_pre_hook(swap, with_kwargs=True))
    try:
        yield masks
    finally:
        for hook in hooks:
            hook.remove()


def layer_windows(model: torch.nn.Module) -> dict[int, int | None]:
    """Each layer's sliding window (None: full attention), as its attention module or the config declares it."""
    config = text_config(model)
    return {layer: module.sliding_window if hasattr(module, "sliding_window") else getattr(config, "sliding_window", None)
            for layer, module in attention_modules(model).items()}
