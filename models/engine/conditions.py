"""A decoding condition is an object: what the decode loop asks of every row, step by step.

Why objects: the paper's ablations (mask none / dynamic / static / random), the progressive ablation's
``dynamic:k`` and the head-level KV strategies differ only in what a row's attention may use at each pass
and whether a step is re-run. :class:`~dynheads.models.engine.trace_engine.TraceEngine` asks every row's condition the
same three questions -- the view of the first pass, whether to re-run (and with which view) after reading
what it found, and what to record -- so the loop has no per-strategy branch, and a new control is a new class.

A :class:`DecodeCondition` is a frozen description (hashable, named as in traces and tables); :meth:`start`
gives the per-row state (:class:`ConditionRun`) for one continuation, because some conditions remember the
previous step (the KV probe's hidden state) or fix a choice once per generation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch

from ...metrics.heads import Head
from ...metrics.retrieval import mask_to_heads
from ...spec import ACCEPTED, ConditionSpec, SpecError



class DecodingError(ValueError):
    """Bad input to the decoding engine; the message names the problem and the fix."""


class Geometry(Protocol):
    """What a condition needs of the engine: the model's shape and the head-list validator."""

    num_layers: int
    num_heads: int
    num_kv_heads: int

    def gate_mask(self, heads: Iterable[Head]) -> torch.Tensor: ...


@dataclass(frozen=True)
class Pass:
    """The view of one forward pass for one row.

    ``gates``: ``[layers, heads]`` True for the heads silenced (``None``: none); ``gated``: the same as a head list
    (recorded as the step's ``gated``). ``streaming``: ``[layers, heads]`` True for the heads that see only the
    attention sinks and a recent window (``None``: every head sees the whole context); ``kept_whole``: the other
    heads as a list (recorded as the step's ``kv_full`` by conditions that compress the KV cache).
    """

    gates: torch.Tensor | None = None
    gated: tuple[Head, ...] = ()
    streaming: torch.Tensor | None = None
    kept_whole: tuple[Head, ...] | None = None


UNRESTRICTED = Pass()


@dataclass(frozen=True)
class Reading:
    """What a row's first pass of a step found: the greedy token, and on traced rows the retrieval heads
    ``hit`` ``[layers, heads]`` with each head's ``strength`` (when a condition asked for it); ``hidden``: the
    final hidden state (when a condition or the request asked for it)."""

    token: int
    hit: torch.Tensor | None = None
    strength: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


class ConditionRun:
    """One row's condition while it decodes; the default is the unrestricted, never re-run pass."""

    def first_pass(self) -> Pass:
        """The view of the step's first pass."""
        return UNRESTRICTED

    def second_pass(self, reading: Reading) -> Pass | None:
        """After the first pass: the view to re-run the step with, or ``None`` to emit the first pass's token."""
        return None


@dataclass(frozen=True)
class DecodeCondition(ConditionRun):
    """A condition of a generation (base: plain greedy decoding, ``none``).

    Class attributes tell the loop what to compute for the batch: ``needs_target`` (the step's retrieval heads
    must be found), ``needs_strength`` (and how strongly each retrieves), ``needs_hidden`` (the final hidden
    state); ``view`` the (sink, window) of a KV-compressing condition's streaming heads (``None`` otherwise).
    """

    needs_target = False
    needs_strength = False
    needs_hidden = False

    @property
    def spec(self) -> ConditionSpec:
        return ConditionSpec("mask", "none")

    @property
    def name(self) -> str:
        """The condition's name in traces and tables (:attr:`ConditionSpec.name`)."""
        return self.spec.name

    @property
    def view(self) -> tuple[int, int] | None:
        return None

    def check(self, engine: Geometry, traced: bool) -> None:
        """One clear error for a condition this model or request cannot run, before any compute."""
        if self.needs_target and not traced:
            raise DecodingError(f"dynheads: {self.spec.family}={self.spec.label} needs target token indices (a needle or "
                                "supporting facts) to find each step's heads")

    def start(self, engine: Geometry) -> ConditionRun:
        """The per-row state of one continuation (stateless conditions are their own)."""
        return self


@dataclass(frozen=True)
class Unmasked(DecodeCondition):
    """``none``: plain greedy decoding (traced when the request has a target)."""


@dataclass(frozen=True)
class DynamicMask(DecodeCondition):
    """``dynamic`` / ``dynamic:k``: per step an ungated pass finds the step's retrieval heads, which are gated in a
    re-run of the same step (all of them, or the ``top_k`` strongest: the progressive ablation of Appendix A.2)."""

    top_k: int | None = None
    needs_target = True

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 0:
            raise DecodingError(f"dynheads: mask dynamic:{self.top_k} needs k >= 0, e.g. dynamic:5")

    @property
    def needs_strength(self) -> bool:  # type: ignore[override]
        return self.top_k is not None

    @property
    def spec(self) -> ConditionSpec:
        return ConditionSpec("mask", "dynamic", k=self.top_k)

    def second_pass(self, reading: Reading) -> Pass | None:
        if reading.hit is None or not bool(reading.hit.any()):
            return None
        gate = strongest(reading.hit, reading.strength, self.top_k)
        gated = tuple(mask_to_heads(gate))
        return Pass(gates=gate, gated=gated) if gated else None


def strongest(hit: torch.Tensor, strength: torch.Tensor | None, top_k: int | None) -> torch.Tensor:
    """The heads a dynamic step gates: all of ``hit``, or its ``top_k`` strongest (most attention on the copied
    token, Appendix A.2; or highest Eq. 2 score)."""
    if top_k is None or int(hit.sum()) <= top_k:
        return hit
    scores = torch.where(hit, strength, torch.full_like(strength, -1.0)).flatten()
    gate = torch.zeros_like(hit).flatten()
    gate[torch.topk(scores, top_k).indices] = True
    return gate.reshape(hit.shape)


@dataclass(frozen=True)
class FixedMask(DecodeCondition):
    """``static`` / ``random``: the same ``heads`` gated at every step, in a single pass (the traced heads are those
    of that gated pass). Which heads is the experiment's choice (:mod:`dynheads.models.harness.request_conditions`)."""

    strategy: str = "static"
    heads: tuple[Head, ...] = ()

    def __post_init__(self) -> None:
        if self.strategy not in ("static", "random"):
            raise DecodingError(f"dynheads: a fixed mask is static or random, not {self.strategy!r}")

    @property
    def spec(self) -> ConditionSpec:
        return ConditionSpec("mask", self.strategy)

    def check(self, engine: Geometry, traced: bool) -> None:
        engine.gate_mask(self.heads)  # validates the indices before any compute

    def start(self, engine: Geometry) -> ConditionRun:
        heads = tuple(sorted(set(self.heads)))
        return FixedView(Pass(gates=engine.gate_mask(heads), gated=heads) if heads else UNRESTRICTED)


@dataclass(frozen=True)
class FixedView(ConditionRun):
    """A row whose every step runs one pass under the same view (fixed masks, fixed KV choices)."""

    view: Pass

    def first_pass(self) -> Pass:
        return self.view


def mask_condition(text: str | ConditionSpec, heads: Iterable[Head] = ()) -> DecodeCondition:
    """The masking condition a ``mask=`` name gives (``"dynamic:5"``; ``heads``: the fixed heads of static /
    random); one clear error for anything else."""
    try:
        spec = text if isinstance(text, ConditionSpec) else ConditionSpec.parse(str(text), family="mask")
    except SpecError as exc:
        raise DecodingError(str(exc)) from None
    if spec.family != "mask":
        raise DecodingError(f"dynheads: {spec.name} is not a mask condition; {ACCEPTED['mask']}")
    if spec.strategy == "none":
        return Unmasked()
    if spec.strategy == "dynamic":
        return DynamicMask(spec.k)
    return FixedMask(spec.strategy, tuple(heads))
