"""Head-level KV compression as a decoding condition: which heads keep the whole context at each decode step.

Why: the paper's first proposed direction. Static schemes (DuoAttention, RazorAttention, HeadKV) give the full KV
cache only to the heads that retrieve *on average*; every other head is a *streaming head* that keeps the first
``sink`` positions and the last ``window`` ones. If retrieval heads are dynamic, a per-step choice (a probe that
reads the previous step's hidden state) should do better at the same budget. This module decides, per step and
per row, which heads are streaming; :class:`~dynheads.models.engine.attention.StreamView` enforces it in the attention
mask and counts what every head and KV group kept. It simulates the restriction (the cache is still held whole),
which is what comparing selection rules needs; a real implementation would drop the keys instead.

Strategies (``kv=``):

* ``full``      -- no restriction (the reference);
* ``streaming`` -- every head streaming (StreamingLLM);
* ``static``    -- the top of the calibrated static ranking keeps the context (DuoAttention / RazorAttention style);
* ``dynamic``   -- the units a probe predicts for step t from step t - 1's final hidden state (a temporal-offset-1
  probe: the choice is made before step t runs); the first step, which has no previous step, uses the static ranking;
* ``probe_mean`` -- the control of ``dynamic`` that keeps its ranking but drops the per-step input: one fixed ranking
  by the same probe's mean predicted score over its training steps, so dynamic - probe_mean isolates choosing per step
  from ranking units better than the static calibration does;
* ``frozen``    -- the other control of ``dynamic``: its choice made once (at step 1, from step 0's hidden state), then
  kept for the generation, so dynamic - frozen isolates choosing *per step* from choosing a better set for the document;
* ``observed``  -- two passes per step: an unrestricted pass finds the step's own Eq. 1 / Eq. 2 heads (strongest
  first), the static ranking fills the rest of the budget, and the step is re-run restricted. Not an upper bound: it
  knows which heads retrieve at this step, not which units the answer needs (it can and does score below dynamic);
  named ``oracle`` before (still read, with a FutureWarning);
* ``random``    -- seeded random units, fixed for the generation;
* ``redrawn``   -- the per-step control of ``random``: random units drawn again at every step (seeded per step).

What fills the budget: ``static`` keeps the top of the calibrated ranking; ``dynamic`` the top of the probe's scores
for this step (all units are ranked, so the probe fills the whole budget, not only its predicted retrieval heads);
``observed`` the step's retrieval heads, then the static ranking. Memory (:attr:`KVCompression.resident_whole`): a
fixed choice may drop the streaming heads' middle keys after the prefill; a per-step choice must keep every unit's
whole cache resident (any unit may be chosen at the next step) and saves only what each step reads.

Each strategy is a condition class (:class:`KVCompression` and its subclasses, registered in :data:`KV_CONDITIONS`):
the decode loop asks it for the streaming heads of each pass and never names a strategy, so a new control is a new
class here.

``granularity``: ``kv`` (default, as DuoAttention: memory is saved per KV head, so whole KV groups are selected;
a group's score is the best score of its query heads) or ``head`` (query heads; a KV head is then needed whenever
any of its query heads is selected, which the measured KV-head share reports).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...metrics.heads import Head
from ...metrics.retrieval import mask_to_heads
from .conditions import ConditionRun, DecodeCondition, DecodingError, FixedView, Geometry, Pass, Reading
from ...spec import KV_BUDGETED as BUDGETED, KV_STRATEGIES, ConditionSpec
GRANULARITIES = ("kv", "head")
DEFAULT_SINK = 4
DEFAULT_WINDOW = 64
ACCEPTED_KV = ("choose kv= among full, streaming, static, dynamic, probe_mean, frozen, observed, random, redrawn (join "
               "several with +), with "
               "kv_budget=N (units kept whole) or a fraction such as 0.25, kv_sink, kv_window and kv_granularity=kv|head")

Predictor = Callable[[torch.Tensor], torch.Tensor]  # [rows, hidden] float32 -> [rows, layers * heads] scores


class KVError(ValueError):
    """A KV-compression setting that cannot work; the message names the problem and the fix."""


@dataclass(frozen=True)
class KVPolicy:
    """One KV-compression condition (see the module docstring).

    ``budget``: units kept whole, a count (``int``) or a share of all units (``float`` in (0, 1]); resolved against
    the model by :meth:`units`. ``ranking``: the static ranking (best first) that ``static`` takes its heads from and
    ``dynamic`` / ``observed`` fill with. ``seed``: the text ``random`` draws from. ``predictor``: ``dynamic``'s probe;
    ``probe_mean``: that probe's mean predicted score per head over its training steps (``probe_mean``'s ranking).
    """

    strategy: str = "full"
    budget: int | float = 0
    sink: int = DEFAULT_SINK
    window: int = DEFAULT_WINDOW
    granularity: str = "kv"
    ranking: tuple[Head, ...] = field(default=(), compare=False)
    seed: str = field(default="0", compare=False)
    predictor: Predictor | None = field(default=None, compare=False, repr=False)
    probe_mean: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in KV_STRATEGIES:
            raise KVError(f"dynheads: unknown kv strategy {self.strategy!r}; {ACCEPTED_KV}")
        if self.granularity not in GRANULARITIES:
            raise KVError(f"dynheads: kv_granularity={self.granularity!r}; choose kv (whole KV groups, as DuoAttention) or head")
        if self.sink < 0 or self.window < 1:
            raise KVError(f"dynheads: kv_sink={self.sink}, kv_window={self.window}; need kv_sink >= 0 and kv_window >= 1, e.g. kv_sink=4,kv_window=64")
        bad = isinstance(self.budget, bool) or self.budget < 0 or (isinstance(self.budget, float) and self.budget > 1)
        if bad:
            raise KVError(f"dynheads: kv_budget={self.budget!r}; give a count N >= 0 or a fraction in (0, 1], e.g. kv_budget=0.25")

    @property
    def spec(self) -> ConditionSpec:
        return ConditionSpec("kv", self.strategy, budget=self.budget if self.strategy in BUDGETED else None)

    @property
    def name(self) -> str:
        """The condition's name in traces and tables, e.g. ``kv:static@0.25`` or ``kv:streaming``."""
        return self.spec.name

    def units(self, layers: int, heads: int, kv_heads: int) -> int:
        """How many units (KV groups or query heads) keep the whole context."""
        if self.strategy == "full":
            return self.total_units(layers, heads, kv_heads)
        if self.strategy == "streaming":
            return 0
        total = self.total_units(layers, heads, kv_heads)
        count = math.floor(self.budget * total + 0.5) if isinstance(self.budget, float) else int(self.budget)  # half up
        if count > total:
            raise KVError(f"dynheads: kv_budget={self.budget} asks for {count} {self.unit_name} but the model has {total}; "
                          f"give at most {total} or a fraction")
        return count

    def total_units(self, layers: int, heads: int, kv_heads: int) -> int:
        return layers * (kv_heads if self.granularity == "kv" else heads)

    @property
    def unit_name(self) -> str:
        return "KV heads" if self.granularity == "kv" else "query heads"


def static_scores(ranking: Sequence[Head], layers: int, heads: int) -> torch.Tensor:
    """``[layers, heads]`` scores in (0, 1] from a ranking, best first (heads the ranking omits score 0)."""
    scores = torch.zeros(layers, heads)
    for rank, (layer, head) in enumerate(ranking):
        scores[layer, head] = 1.0 - rank / (len(ranking) + 1)
    return scores


def random_scores(layers: int, heads: int, seed: str) -> torch.Tensor:
    """``[layers, heads]`` uniform scores from a generator seeded with the text ``seed`` (a reproducible draw)."""
    rng = random.Random(str(seed))
    return torch.tensor([[rng.random() for _ in range(heads)] for _ in range(layers)])


def select(scores: torch.Tensor, units: int, kv_heads: int, granularity: str) -> torch.Tensor:
    """Boolean ``[layers, heads]``: the ``units`` best query heads, or (``kv``) every query head of the ``units`` best KV
    groups, a group scoring as its best query head. Ties go to the lower index (a stable sort), so a choice is
    reproducible."""
    layers, heads = scores.shape
    if granularity == "kv":
        grouped = scores.reshape(layers, kv_heads, heads // kv_heads).amax(dim=-1).flatten()
    else:
        grouped = scores.flatten()
    chosen = torch.zeros(grouped.shape[0], dtype=torch.bool)
    chosen[torch.sort(grouped, descending=True, stable=True).indices[:units]] = True
    if granularity == "kv":
        return chosen.reshape(layers, kv_heads, 1).expand(layers, kv_heads, heads // kv_heads).reshape(layers, heads)
    return chosen.reshape(layers, heads)


def observed_scores(hit: torch.Tensor, strength: torch.Tensor | None, fallback: torch.Tensor) -> torch.Tensor:
    """``observed``'s ranking of one step: its retrieval heads first (strongest first), then the ``fallback`` (static)
    order. ``hit`` ``[layers, heads]`` boolean, ``strength`` in [0, 1] (peak attention or Eq. 2 score)."""
    strength = torch.zeros_like(fallback) if strength is None else strength.float().cpu()
    return torch.where(hit.cpu(), 2.0 + strength, fallback)


# ------------------------------------------------------------------------------------------ conditions
def choose(policy: KVPolicy, engine: Geometry, scores: torch.Tensor) -> torch.Tensor:
    """``[layers, heads]`` True for the heads that keep the whole context under ``policy`` given unit ``scores``."""
    units = policy.units(engine.num_layers, engine.num_heads, engine.num_kv_heads)
    return select(scores.float().cpu().reshape(engine.num_layers, engine.num_heads), units, engine.num_kv_heads,
                  policy.granularity)


def kept_whole(full: torch.Tensor) -> Pass:
    """The first-pass view that restricts every head outside ``full`` (converted to a head list once per choice)."""
    return Pass(streaming=~full, kept_whole=tuple(mask_to_heads(full)))


@dataclass(frozen=True)
class KVCompression(DecodeCondition):
    """A KV-compression condition: unmasked decoding whose streaming heads see only ``sink`` + ``window`` positions.

    The base keeps the top of the static ranking whole at every step (``static``); subclasses change
    :meth:`fixed_choice` (a choice made once per generation) or :meth:`start` (a choice made per step)."""

    policy: KVPolicy = KVPolicy()
    needs_ranking = True
    resident_whole: ClassVar[bool] = False  # a real implementation must keep every unit's whole cache resident
    unrestricted_pass: ClassVar[bool] = False  # each step also runs once with nothing restricted (reads the whole cache)

    @property
    def spec(self) -> ConditionSpec:
        return self.policy.spec

    @property
    def view(self) -> tuple[int, int] | None:
        return self.policy.sink, self.policy.window

    def check(self, engine: Geometry, traced: bool) -> None:
        self.policy.units(engine.num_layers, engine.num_heads, engine.num_kv_heads)  # a budget beyond the model fails here
        super().check(engine, traced)
        if self.needs_ranking and not self.policy.ranking:
            raise DecodingError(f"dynheads: kv={self.policy.strategy} needs the static-head ranking; set static_heads=auto or a file")
        engine.gate_mask(self.policy.ranking)

    def ranked(self, engine: Geometry) -> torch.Tensor:
        """The static ranking as ``[layers, heads]`` scores (what ``static`` keeps and the others fill with)."""
        return static_scores(self.policy.ranking, engine.num_layers, engine.num_heads)

    def fixed_choice(self, engine: Geometry) -> torch.Tensor:
        """The heads kept whole when the choice does not depend on the step."""
        return choose(self.policy, engine, self.ranked(engine))

    def start(self, engine: Geometry) -> ConditionRun:
        return FixedView(kept_whole(self.fixed_choice(engine)))


@dataclass(frozen=True)
class FullKV(KVCompression):
    """``full``: every head keeps the whole context (the reference)."""

    needs_ranking = False

    def fixed_choice(self, engine: Geometry) -> torch.Tensor:
        return torch.ones(engine.num_layers, engine.num_heads, dtype=torch.bool)


@dataclass(frozen=True)
class StreamingKV(KVCompression):
    """``streaming``: every head streaming (StreamingLLM)."""

    needs_ranking = False

    def fixed_choice(self, engine: Geometry) -> torch.Tensor:
        return torch.zeros(engine.num_layers, engine.num_heads, dtype=torch.bool)


@dataclass(frozen=True)
class RandomKV(KVCompression):
    """``random``: seeded random units, fixed for the generation."""

    needs_ranking = False

    def fixed_choice(self, engine: Geometry) -> torch.Tensor:
        return choose(self.policy, engine, random_scores(engine.num_layers, engine.num_heads, self.policy.seed))


@dataclass(frozen=True)
class PredictedKV(KVCompression):
    """``dynamic``: the units the offset-1 probe predicts for step t from step t - 1's final hidden state; the first
    step, which has no previous step, keeps the static choice."""

    needs_hidden = True
    resident_whole = True

    def check(self, engine: Geometry, traced: bool) -> None:
        super().check(engine, traced)
        if self.policy.predictor is None:
            raise DecodingError("dynheads: kv=dynamic needs a probe trained at temporal offset 1; give kv_probe=PATH")

    def start(self, engine: Geometry) -> ConditionRun:
        return _PredictedRun(self.policy, engine, kept_whole(self.fixed_choice(engine)))


class _PredictedRun(ConditionRun):
    """``choices``: how many times the probe chooses (None: at every step that has a previous one)."""

    def __init__(self, policy: KVPolicy, engine: Geometry, first: Pass, choices: int | None = None) -> None:
        self.policy, self.engine, self.view, self.choices = policy, engine, first, choices
        self.previous_hidden: torch.Tensor | None = None

    def first_pass(self) -> Pass:
        if self.previous_hidden is not None and (self.choices is None or self.choices > 0):
            scores = self.policy.predictor(self.previous_hidden[None])[0]
            self.view = kept_whole(choose(self.policy, self.engine, scores))
            self.choices = None if self.choices is None else self.choices - 1
        return self.view

    def second_pass(self, reading: Reading) -> Pass | None:
        self.previous_hidden = reading.hidden
        return None


@dataclass(frozen=True)
class ObservedKV(KVCompression):
    """``observed``: an unrestricted first pass finds the step's own retrieval heads (strongest first), the static
    ranking fills the rest of the budget, and the step is re-run restricted to that choice (not an upper bound)."""

    needs_target = True
    needs_strength = True
    resident_whole = True
    unrestricted_pass = True

    def start(self, engine: Geometry) -> ConditionRun:
        return _ObservedRun(self.policy, engine, self.ranked(engine))


class _ObservedRun(ConditionRun):
    def __init__(self, policy: KVPolicy, engine: Geometry, ranked: torch.Tensor) -> None:
        self.policy, self.engine, self.ranked = policy, engine, ranked

    def second_pass(self, reading: Reading) -> Pass | None:
        return kept_whole(choose(self.policy, self.engine, observed_scores(reading.hit, reading.strength, self.ranked)))


@dataclass(frozen=True)
class ProbeMeanKV(KVCompression):
    """``probe_mean``: the offset-1 probe's mean predicted score per unit over its training steps, as one ranking fixed
    for every document and step (``dynamic``'s probe without its per-step input)."""

    needs_ranking = False

    def check(self, engine: Geometry, traced: bool) -> None:
        super().check(engine, traced)
        if len(self.policy.probe_mean) != engine.num_layers * engine.num_heads:
            raise DecodingError("dynheads: kv=probe_mean needs the offset-1 probe's mean training prediction (one score "
                                "per head); give kv_probe=PATH written by this version (run_suite.py --stages kv)")

    def fixed_choice(self, engine: Geometry) -> torch.Tensor:
        return choose(self.policy, engine, torch.tensor(self.policy.probe_mean, dtype=torch.float32))


@dataclass(frozen=True)
class FrozenKV(PredictedKV):
    """``frozen``: :class:`PredictedKV`'s first probe choice (step 1, from step 0's hidden state) kept for the rest of
    the generation (step 0 keeps the static choice, as dynamic's does). Resident: the whole cache until step 1 chooses,
    so its peak is dynamic's."""

    def start(self, engine: Geometry) -> ConditionRun:
        return _PredictedRun(self.policy, engine, kept_whole(self.fixed_choice(engine)), choices=1)


@dataclass(frozen=True)
class RedrawnKV(KVCompression):
    """``redrawn``: random units drawn again at every step, from the document's seed and the step's index."""

    needs_ranking = False
    resident_whole = True

    def start(self, engine: Geometry) -> ConditionRun:
        return _RedrawnRun(self.policy, engine)


class _RedrawnRun(ConditionRun):
    def __init__(self, policy: KVPolicy, engine: Geometry) -> None:
        self.policy, self.engine, self.step = policy, engine, 0

    def first_pass(self) -> Pass:
        scores = random_scores(self.engine.num_layers, self.engine.num_heads, f"{self.policy.seed}-step{self.step}")
        self.step += 1
        return kept_whole(choose(self.policy, self.engine, scores))


KV_CONDITIONS: dict[str, type[KVCompression]] = {"full": FullKV, "streaming": StreamingKV, "static": KVCompression,
                                                 "dynamic": PredictedKV, "probe_mean": ProbeMeanKV, "frozen": FrozenKV,
                                                 "observed": ObservedKV, "random": RandomKV, "redrawn": RedrawnKV}
assert tuple(KV_CONDITIONS) == KV_STRATEGIES, "one class per strategy the spec names, in its order"


def kv_condition(policy: KVPolicy) -> KVCompression:
    """The condition class of ``policy``'s strategy."""
    return KV_CONDITIONS[policy.strategy](policy=policy)
