"""What code outside ``lm.py`` may read of the loaded ``dynheads`` model: narrow, typed views of ``DynHeadsLM``.

Why protocols and not the class: the calibrations (``tasks/``), the per-request conditions and held-out checks, and
Section 5's requests each need a few of the wrapper's attributes; typing them as ``Any`` hid which, and typing them
as ``DynHeadsLM`` would tie each to all of lm-eval's ``HFLM``. Each protocol lists exactly what its functions read,
so a reader (and a type checker) sees the contract, and a test double needs nothing else. ``DynHeadsLM`` satisfies
all three; ``suite/`` drives the whole model and takes ``DynHeadsLM`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import torch

    from ..engine import TraceEngine
    from .prompts import PromptEncoder
    from .settings import ModelSettings
    from .loaded_probe import LoadedProbe
    from .static_heads import StaticHeads


@runtime_checkable
class CalibrationModel(Protocol):
    """What the static-head calibrations (``tasks/*/calibration.py``, ``tasks/calibration.py``) read."""

    pretrained_name: str
    model: torch.nn.Module
    engine: TraceEngine
    encoder: PromptEncoder
    tokenizer: Any

    def eos_ids(self) -> set[int]: ...

    def decode_batch_size(self) -> int: ...


@runtime_checkable
class ConditionModel(Protocol):
    """What choosing a request's conditions (``request_conditions.py``) and refusing held-out documents (``held_out.py``)
    read: the settings, the engine's shape, the static rankings and the loaded probes."""

    settings: ModelSettings
    engine: TraceEngine
    probe: LoadedProbe | None  # Claim 3's probe= (probe metrics)
    kv_probe: LoadedProbe | None  # kv=dynamic's offset-1 probe
    rag_probe: LoadedProbe | None  # the dynamic RAG strategy's probe

    def static(self, kind: str = ...) -> StaticHeads | None: ...

    def matched_count(self, kind: str = ...) -> int: ...


@runtime_checkable
class RagModel(ConditionModel, Protocol):
    """What Section 5's requests (``rag_requests.py``) read beyond :class:`ConditionModel`: the tokenizer, the
    answer text rule and the trace file."""

    tokenizer: Any

    def text(self, token_ids: list[int], until: list[str], line_stops: Sequence[str] = ()) -> str: ...

    def trace_file(self, task: str) -> Path | None: ...
