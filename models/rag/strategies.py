"""Section 5's strategies as objects: the two questions Algorithm 1 asks of each one.

Why objects: Algorithm 1 (:mod:`dynheads.models.rag.algorithm`) is one loop for every strategy. What differs is
(1) whether the strategy runs the loop at all (``full`` reads the whole context and ``none`` never sees it, each in
one pass) and (2) at a retrieval, which windows it reveals (``oracle``: the supporting facts; the head strategies:
the windows of the heads they choose, from the probe, the static calibration or a seeded draw). Each strategy is a
class answering those two questions, so the loop has no branch on a strategy's name and a new strategy is a new
class (registered in :data:`RAG_STRATEGY_CLASSES`). Names are :class:`~dynheads.spec.ConditionSpec` names
(``rag:dynamic:10``).

Why not a decode-loop condition (:mod:`dynheads.models.engine.conditions`): a retrieval happens *between* decodes
of Algorithm 1 (trigger, retrieve, regenerate); each decode it asks for is an ordinary masked pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from ...metrics.heads import Head, random_heads
from ...spec import RAG_STRATEGIES, ConditionSpec, SpecError
from ..engine import DecodingError
from .windows import Window



class ContextExample(Protocol):
    """What a retrieval reads of the example it runs on (:class:`~dynheads.models.rag.algorithm.ContextExample`);
    a protocol, so that this module does not import the algorithm that imports it."""

    ids: Sequence[int]

    def inspect(self, generated: Sequence[int]) -> tuple[list[torch.Tensor], np.ndarray]: ...

    def head_windows(self, rows: list[torch.Tensor], heads: Sequence[Head], query: int) -> tuple[list[Window], list[int]]: ...

    def oracle_windows(self) -> list[Window]: ...


@dataclass(frozen=True)
class HeadSource:
    """What the head strategies may read from the model, and nothing else.

    ``predict``: the Eq. 2 probe's predicted score per head (flat ``layer * num_heads + head``) for one hidden
    state; ``static_heads``: the calibrated Eq. 2 heads, best first (a callable, so that the calibration is loaded
    only when a strategy asks); ``seed_key``: the run's seed and the document's key (seeded random draws);
    ``default_k``: the settings' ``rag_heads``. Either callable may be ``None`` when no strategy of the run needs it.
    """

    num_layers: int
    num_heads: int
    default_k: int
    seed_key: str
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    static_heads: Callable[[], Sequence[Head]] | None = None


@dataclass(frozen=True)
class Strategy:
    """A Section 5 strategy and its head count ``k`` (``None``: the settings' ``rag_heads``).

    Build one with :meth:`parse` (``"dynamic:10"``) or :func:`rag_strategy`; the subclass answers Algorithm 1."""

    k: int | None = None
    name: ClassVar[str] = ""
    retrieves: ClassVar[bool] = True  # False: one pass over the whole answer under ``whole_answer_view``
    whole_answer_view: ClassVar[tuple[Window, ...] | None] = None  # None: the whole context visible; (): none of it
    drafts: ClassVar[int] = 0  # drafts a one-pass strategy counts (``none``'s pass is a draft that is never checked)
    needs_probe: ClassVar[bool] = False
    needs_static: ClassVar[bool] = False

    def __post_init__(self) -> None:
        try:
            self.spec  # noqa: B018 -- validates the head count against the strategy
        except SpecError as exc:
            raise DecodingError(str(exc)) from None

    @classmethod
    def parse(cls, text: str) -> "Strategy":
        try:
            return cls.from_spec(ConditionSpec.parse(text, family="rag"))
        except SpecError as exc:
            raise DecodingError(str(exc)) from None

    @staticmethod
    def from_spec(spec: ConditionSpec) -> "Strategy":
        return rag_strategy(spec.strategy, spec.k)

    @property
    def spec(self) -> ConditionSpec:
        return ConditionSpec("rag", self.name, self.k)

    @property
    def label(self) -> str:
        """The name inside the family (``dynamic:10``); the trace's condition is ``spec.name`` (``rag:dynamic:10``)."""
        return self.spec.label

    def retrieve(self, example: ContextExample, generated: Sequence[int], index: int,
                 source: HeadSource) -> tuple[list[Head], list[Window], list[int]]:
        """Heads, windows and top positions of retrieval number ``index`` after ``generated`` (Algorithm 2)."""
        raise NotImplementedError(f"{type(self).__name__} does not retrieve")


class FullContext(Strategy):
    """``full``: the plain answer, the whole context visible (no retrieval)."""
    name = "full"
    retrieves = False


class NoContext(Strategy):
    """``none``: the context hidden for the whole answer (a draft never checked)."""
    name = "none"
    retrieves = False
    whole_answer_view = ()
    drafts = 1


class OracleWindows(Strategy):
    """``oracle``: each retrieval reveals the gold supporting facts (no heads, no top positions)."""
    name = "oracle"

    def retrieve(self, example, generated, index, source):
        return [], example.oracle_windows(), []


class HeadWindows(Strategy):
    """A strategy that chooses k heads at each retrieval and reveals the windows of their attention."""

    def retrieve(self, example, generated, index, source):
        missing = [what for need, have, what in ((self.needs_probe, source.predict, "the HotpotQA probe (probe=PATH)"),
                                                 (self.needs_static, source.static_heads,
                                                  "the Eq. 2 calibration (static_heads=auto or PATH)"))
                   if need and have is None]
        if missing:
            raise DecodingError(f"dynheads: rag={self.name} needs {missing[0]}")
        rows, hidden = example.inspect(generated)
        heads = self.heads(index, hidden, source, self.k or source.default_k)
        return heads, *example.head_windows(rows, heads, query=len(example.ids) + len(generated) - 1)

    def heads(self, index: int, hidden: np.ndarray, source: HeadSource, k: int) -> list[Head]:
        raise NotImplementedError


class ProbeHeads(HeadWindows):
    """``dynamic``: the top-k of the Eq. 2 probe's predicted scores for this step's hidden state."""
    name = "dynamic"
    needs_probe = True

    def heads(self, index, hidden, source, k):
        scores = np.asarray(source.predict(hidden))
        return [(int(i) // source.num_heads, int(i) % source.num_heads) for i in np.argsort(-scores, kind="stable")[:k]]


class StaticHeads(HeadWindows):
    """``static``: the top-k calibrated Eq. 2 heads, the same at every retrieval."""
    name = "static"
    needs_static = True

    def heads(self, index, hidden, source, k):
        return list(source.static_heads()[:k])


class RedrawnRandomHeads(HeadWindows):
    """``dynamic_random``: k random heads drawn anew at every retrieval (seeded per document and retrieval)."""
    name = "dynamic_random"

    def draw(self, index: int) -> str:
        """What seeds retrieval ``index``'s draw besides the document and k."""
        return str(index)

    def heads(self, index, hidden, source, k):
        return random_heads(k, source.num_layers, source.num_heads, f"{source.seed_key}-{k}-{self.draw(index)}")


class FixedRandomHeads(RedrawnRandomHeads):
    """``fixed_random``: one draw of k random heads per answer (seeded per document)."""
    name = "fixed_random"

    def draw(self, index: int) -> str:
        return "fixed"


RAG_STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (ProbeHeads, StaticHeads, RedrawnRandomHeads, FixedRandomHeads, NoContext, FullContext,
                              OracleWindows)}
assert tuple(RAG_STRATEGY_CLASSES) == RAG_STRATEGIES, "one class per strategy the spec names, in its order"


def rag_strategy(name: str, k: int | None = None) -> Strategy:
    """The strategy object for a name the spec knows (``"static"``, 10)."""
    if name not in RAG_STRATEGY_CLASSES:
        raise DecodingError(str(SpecError(f"dynheads: unknown RAG strategy {name!r}; choose from "
                                          f"{', '.join(RAG_STRATEGIES)}")))
    return RAG_STRATEGY_CLASSES[name](k)
