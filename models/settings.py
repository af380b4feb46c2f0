"""The ``dynheads`` model arguments, parsed and validated once into a frozen :class:`ModelSettings`.

Why one place: lm-eval hands every ``--model_args`` value over as text (or as a bool / int), and a bad
one must fail in one clear line *before* the slow model load. Everything that can be checked without
the model is checked here; what needs the model (head indices, a probe's width) is checked by
:meth:`ModelSettings.check_model` right after loading. ``run_suite`` reconfigures a loaded model per
cell with :meth:`ModelSettings.replace_run`, validated the same way.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..traces import HIDDEN_DTYPES
from .engine import Condition, DecodingError
from .scores import ReasoningScore
from .rag.algorithm import RagSettings, Strategy

CALIBRATION_ARGS = ("calib_lengths", "calib_depths", "calib_runs", "calib_examples")


def plus_list(text: Any, cast: Callable[[str], Any] = str) -> list:
    """``"a+b+c"`` to ``[cast(a), cast(b), cast(c)]``: lm-eval splits ``--model_args`` on commas, so lists inside
    one argument are joined with ``+`` (commas and spaces are accepted too); empty items are dropped."""
    return [cast(x) for x in str(text).replace(",", "+").replace(" ", "+").split("+") if x]


def flag(name: str, value: Any) -> bool:
    """A boolean model argument (lm-eval may pass ``True`` or the text ``true``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"dynheads: {name}={value!r} is not true or false")


def number_list(name: str, text: Any, cast: type) -> tuple:
    """A ``+``-joined list of numbers (``calib_lengths=500+1000``); one clear line if it is not one."""
    try:
        values = tuple(plus_list(text, cast))
    except ValueError:
        values = ()
    if not values:
        raise ValueError(f"dynheads: cannot read {name}={text!r}; join numbers with '+', e.g. {name}=500+1000")
    return values


def parse_head_list(text: str) -> list[tuple[int, int]]:
    """``"12:3+14:7"`` to ``[(12, 3), (14, 7)]``."""
    heads = []
    for item in plus_list(text):
        try:
            layer, head = item.split(":")
            heads.append((int(layer), int(head)))
        except ValueError:
            raise ValueError(f"dynheads: cannot read head {item!r} in heads={text!r}; write heads as LAYER:HEAD joined by '+', e.g. heads=12:3+14:7") from None
    return heads


def parse_conditions(mask: Any) -> tuple[Condition, ...]:
    """``mask=none+dynamic:5`` to conditions; one clear line for a bad one."""
    names = plus_list(mask)
    if not names:
        raise ValueError("dynheads: empty mask; choose mask=none, dynamic, dynamic:K, static or random (join several with +)")
    try:
        return tuple(Condition.parse(name) for name in names)
    except DecodingError as exc:
        raise ValueError(str(exc)) from None


def parse_strategies(text: str | None) -> tuple[Strategy, ...]:
    """``"dynamic+static:10"`` to strategies; ``None`` / ``""`` / ``off`` = RAG off."""
    if text is None or str(text).strip() in ("", "off", "false"):
        return ()
    try:
        strategies = tuple(Strategy.parse(x) for x in plus_list(text))
    except DecodingError as exc:
        raise ValueError(str(exc)) from None
    labels = [s.label for s in strategies]
    if len(set(labels)) != len(labels):
        raise ValueError(f"dynheads: rag={text!r} names a strategy twice; give each once")
    return strategies


@dataclass(frozen=True)
class ModelSettings:
    """Everything the ``dynheads`` model does beyond what ``HFLM`` loads (README, "Model arguments").

    The *run* part (``conditions``, ``heads``, ``trace_dir``, ``record_hidden``, ``rag_strategies``) may
    change between lm-eval runs on one loaded model (:meth:`replace_run`); the rest is fixed at load.
    """

    conditions: tuple[Condition, ...] = (Condition("none"),)
    heads: int | str | None = None  # a count N, an explicit head list "L:H+L:H", or None (the calibrated N)
    static_source: str = "auto"  # auto | off | a calibration / head-list JSON path
    calibration: dict[str, Any] = field(default_factory=dict)  # calib_* overrides (None = the task's default)
    trace_dir: Path | None = None
    seed: int = 0
    reasoning: ReasoningScore = ReasoningScore()
    record_hidden: bool = False
    hidden_dtype: str = "float16"
    probe: str = ""  # path of a probe for the probe metrics (and rag=dynamic)
    rag_strategies: tuple[Strategy, ...] = ()
    rag: RagSettings = RagSettings()
    hallucination: bool = False  # hallucination=absence: the no-training detector's score and AUROC in the task table

    @classmethod
    def parse(cls, mask: Any = "none", heads: Any = None, static_heads: Any = "auto", calib_lengths: Any = None,
              calib_depths: Any = None, calib_runs: Any = None, calib_examples: Any = None, trace_dir: Any = None,
              seed: Any = 0, sink_tokens: Any = None, local_window: Any = None, reasoning_threshold: Any = None,
              hidden: Any = False, hidden_dtype: Any = "float16", probe: Any = None, rag: Any = None,
              rag_heads: Any = 5, rag_threshold: Any = None, rag_top_positions: Any = None, rag_cluster_gap: Any = None,
              rag_window: Any = None, rag_max_retrievals: Any = None, rag_algorithm: Any = None,
              rag_stopwords: Any = None, hallucination: Any = "off") -> "ModelSettings":
        """The settings of these model arguments (lm-eval's spelling and types); one clear line for a bad one."""
        given = {"heads": rag_heads, "threshold": rag_threshold, "top_positions": rag_top_positions,
                 "cluster_gap": rag_cluster_gap, "window": rag_window, "max_retrievals": rag_max_retrievals,
                 "sink_tokens": sink_tokens, "algorithm": rag_algorithm, "stopwords": rag_stopwords}
        kinds = {"threshold": float, "algorithm": str, "stopwords": str}
        try:
            rag_settings = RagSettings(**{k: kinds.get(k, int)(v) for k, v in given.items() if v is not None})
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc) if str(exc).startswith("dynheads") else f"dynheads: cannot read the rag_* arguments ({exc})") from None
        if hidden_dtype not in HIDDEN_DTYPES:
            raise ValueError(f"dynheads: hidden_dtype={hidden_dtype!r}; choose {' or '.join(HIDDEN_DTYPES)}")
        base = ReasoningScore()
        reasoning = ReasoningScore(
            sink_tokens=int(sink_tokens) if sink_tokens is not None else base.sink_tokens,
            local_window=int(local_window) if local_window is not None else base.local_window,
            threshold=float(reasoning_threshold) if reasoning_threshold is not None else base.threshold,
        )
        if reasoning.sink_tokens < 0 or reasoning.local_window < 0 or not 0 <= reasoning.threshold <= 1:
            raise ValueError("dynheads: sink_tokens and local_window must be >= 0 and reasoning_threshold in [0, 1], e.g. sink_tokens=4,local_window=32,reasoning_threshold=0.5")
        source = "auto" if static_heads in (None, "", "auto") else str(static_heads)
        if source not in ("auto", "off") and not Path(source).is_file():
            raise ValueError(f"dynheads: static_heads={source!r} is not a file; give a calibration JSON path, auto or off")
        calibration = {
            "lengths": number_list("calib_lengths", calib_lengths, int) if calib_lengths is not None else None,
            "depths": number_list("calib_depths", calib_depths, float) if calib_depths is not None else None,
            "runs": int(calib_runs) if calib_runs is not None else None,
            "examples": int(calib_examples) if calib_examples is not None else None,
        }
        if calibration["examples"] is not None and calibration["examples"] < 1:
            raise ValueError(f"dynheads: calib_examples={calib_examples!r} must be a positive number of HotpotQA train examples, e.g. calib_examples=20")
        detector = str(hallucination).strip().lower()
        if detector not in ("absence", "true", "off", "false", "none", ""):
            raise ValueError(f"dynheads: hallucination={hallucination!r}; choose absence (the retrieval-head absence score and "
                             "its AUROC in the task's table) or off")
        fixed = cls(static_source=source, calibration=calibration, seed=int(seed), reasoning=reasoning,
                    hidden_dtype=str(hidden_dtype), probe=str(probe) if probe else "", rag=rag_settings,
                    hallucination=detector in ("absence", "true"))
        return fixed.replace_run(mask=mask, heads=heads, trace_dir=trace_dir, hidden=flag("hidden", hidden), rag=rag)

    def replace_run(self, mask: Any = "none", heads: Any = None, trace_dir: str | os.PathLike | None = None,
                    hidden: bool | None = None, rag: str | None = None) -> "ModelSettings":
        """These settings with another run part (``hidden`` None keeps the current one); validated first."""
        conditions = parse_conditions(mask)
        if isinstance(heads, bool) or not (heads is None or isinstance(heads, (int, str))):
            raise ValueError(f"dynheads: heads={heads!r} must be a count N or a list L:H+L:H")
        if isinstance(heads, str):
            if heads.strip().isdigit():
                heads = int(heads)
            else:
                parse_head_list(heads)
        masks = {c.mask for c in conditions}
        if "static" in masks and "random" in masks and isinstance(heads, str):
            raise ValueError("dynheads: an explicit head list (heads=L:H+...) cannot serve static and random together; give heads=N or omit it")
        if "random" in masks and isinstance(heads, str):
            raise ValueError("dynheads: mask=random needs heads=N (a count) or no heads (the calibrated matched N)")
        if masks & {"static", "random"} and heads is None and self.static_source == "off":
            raise ValueError("dynheads: mask=static/random without heads=N needs the calibration; set heads=N or static_heads=auto")
        record_hidden = self.record_hidden if hidden is None else bool(hidden)
        if record_hidden and not trace_dir:
            raise ValueError("dynheads: hidden=true records hidden states into the trace's sidecar; give trace_dir=DIR too")
        strategies = parse_strategies(rag)
        if strategies and str(mask) != "none":
            raise ValueError(f"dynheads: rag={rag!r} decides what the model sees by itself; use it with mask=none (drop mask={mask!r})")
        if strategies and record_hidden:
            raise ValueError("dynheads: hidden=true records unmasked traces; run it without rag=")
        return dataclasses.replace(self, conditions=conditions, heads=heads, trace_dir=Path(trace_dir) if trace_dir else None,
                                   record_hidden=record_hidden, rag_strategies=strategies)

    def check_model(self, total_heads: int, gate_mask: Callable[[list], Any]) -> None:
        """What needs the loaded model: a head count within its heads, head indices that exist."""
        if isinstance(self.heads, int) and not 0 <= self.heads <= total_heads:
            raise ValueError(f"dynheads: heads={self.heads} requested but the model has {total_heads} heads")
        if isinstance(self.heads, str):
            gate_mask(parse_head_list(self.heads))  # validates indices now, not mid-run
