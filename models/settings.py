"""The ``dynheads`` model arguments, parsed and validated once into a frozen :class:`ModelSettings`.

Why one place: lm-eval hands every ``--model_args`` value over as text (or as a bool / int), and a bad
one must fail in one clear line *before* the slow model load. Everything that can be checked without
the model is checked here; what needs the model (head indices, a probe's width) is checked by
:meth:`ModelSettings.check_model` right after loading. ``run_suite`` reconfigures a loaded model per
cell with :meth:`ModelSettings.replace_run`, validated the same way.
"""

from __future__ import annotations

import warnings

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..traces import HIDDEN_DTYPES
from .engine import Condition, DecodingError
from .kv import DEFAULT_SINK, DEFAULT_WINDOW, KV_STRATEGIES, KVError, KVPolicy
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


def parse_kv_strategies(text: Any) -> tuple[tuple[str, int | float | None], ...]:
    """``"full+static+dynamic@0.1"`` to (strategy, budget) pairs (budget None: ``kv_budget``); ``None`` / ``""`` / ``off`` =
    no KV compression. A budget after ``@`` lets one run sweep budgets over one shared prefill."""
    if text is None or str(text).strip() in ("", "off", "false"):
        return ()
    items = []
    for item in plus_list(text):
        name, at, budget = item.partition("@")
        if name not in KV_STRATEGIES:
            raise ValueError(f"dynheads: kv={text!r}: unknown strategy {name!r}; choose among {', '.join(KV_STRATEGIES)} "
                             "joined by +, each with an optional budget after @, e.g. kv=full+static@0.25+dynamic@0.25")
        items.append((name, parse_kv_budget(budget) if at else None))
    if len(set(items)) != len(items):
        raise ValueError(f"dynheads: kv={text!r} names a strategy twice; give each once")
    return tuple(items)


DEFAULT_KV_BUDGET = 0.25


def kv_budget_argument(kv_budget: Any, kv_heads: Any) -> Any:
    """``kv_budget``, or the deprecated ``kv_heads`` (the old name of the same budget: it never counted heads only)
    with a one-line warning; both given is one clear error."""
    if kv_heads is None:
        return DEFAULT_KV_BUDGET if kv_budget is None else kv_budget
    if kv_budget is not None:
        raise ValueError("dynheads: kv_heads is the deprecated name of kv_budget; give kv_budget only")
    warnings.warn("dynheads: kv_heads is deprecated; use kv_budget (units kept whole: a count or a share)", FutureWarning,
                  stacklevel=3)
    return kv_heads


def parse_kv_budget(value: Any) -> int | float:
    """``kv_budget``: a count (``8``) or a share of all units (``0.25``); one clear line otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        budget: int | float = value
    else:
        text = str(value).strip()
        try:
            budget = int(text) if text.isdigit() else float(text)
        except ValueError:
            raise ValueError(f"dynheads: kv_budget={value!r}; give a count N or a fraction such as 0.25") from None
    if isinstance(budget, float) and not 0 < budget <= 1:
        raise ValueError(f"dynheads: kv_budget={value!r}; a fraction must lie in (0, 1], a count must be an integer")
    return budget


@dataclass(frozen=True)
class KVSettings:
    """The ``kv_*`` arguments: the budget of units kept whole, the streaming heads' view and the selection unit."""

    budget: int | float = 0.25
    sink: int = DEFAULT_SINK
    window: int = DEFAULT_WINDOW
    granularity: str = "kv"
    probe: str = ""  # kv=dynamic: a probe trained at temporal offset 1

    def policy(self, strategy: str, budget: int | float | None = None, **kw: Any) -> KVPolicy:
        """The condition of ``strategy`` at ``budget`` (None: this ``kv_budget``)."""
        return KVPolicy(strategy, self.budget if budget is None else budget, self.sink, self.window, self.granularity, **kw)

    def trace_fields(self) -> dict[str, Any]:
        """What a ``kv:`` trace line records so that a verifier can rebuild each step's per-head masks."""
        return {"sink": self.sink, "window": self.window, "granularity": self.granularity}


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
    kv_strategies: tuple[tuple[str, int | float | None], ...] = ()  # kv=: (strategy, budget or None) per condition
    kv: KVSettings = KVSettings()

    @classmethod
    def parse(cls, mask: Any = "none", heads: Any = None, static_heads: Any = "auto", calib_lengths: Any = None,
              calib_depths: Any = None, calib_runs: Any = None, calib_examples: Any = None, trace_dir: Any = None,
              seed: Any = 0, sink_tokens: Any = None, local_window: Any = None, reasoning_threshold: Any = None,
              hidden: Any = False, hidden_dtype: Any = "float16", probe: Any = None, rag: Any = None,
              rag_heads: Any = 5, rag_threshold: Any = None, rag_top_positions: Any = None, rag_cluster_gap: Any = None,
              rag_window: Any = None, rag_max_retrievals: Any = None, rag_algorithm: Any = None,
              rag_stopwords: Any = None, hallucination: Any = "off", kv: Any = None, kv_budget: Any = None,
              kv_sink: Any = DEFAULT_SINK, kv_window: Any = DEFAULT_WINDOW, kv_granularity: Any = "kv",
              kv_probe: Any = None, kv_heads: Any = None) -> "ModelSettings":
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
        if kv_probe and not Path(str(kv_probe)).is_file():
            raise ValueError(f"dynheads: kv_probe={kv_probe!r} is not a file; give a probe saved by run_suite.py --stages kv")
        try:
            kv_settings = KVSettings(parse_kv_budget(kv_budget_argument(kv_budget, kv_heads)), int(kv_sink), int(kv_window), str(kv_granularity),
                                     str(kv_probe) if kv_probe else "")
            kv_settings.policy("static")  # sink, window, granularity checked now
        except KVError as exc:
            raise ValueError(str(exc)) from None
        fixed = cls(static_source=source, calibration=calibration, seed=int(seed), reasoning=reasoning,
                    hidden_dtype=str(hidden_dtype), probe=str(probe) if probe else "", rag=rag_settings,
                    hallucination=detector in ("absence", "true"), kv=kv_settings)
        return fixed.replace_run(mask=mask, heads=heads, trace_dir=trace_dir, hidden=flag("hidden", hidden), rag=rag, kv=kv)

    def replace_run(self, mask: Any = "none", heads: Any = None, trace_dir: str | os.PathLike | None = None,
                    hidden: bool | None = None, rag: str | None = None, kv: str | None = None) -> "ModelSettings":
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
        kv_strategies = parse_kv_strategies(kv)
        if kv_strategies and (str(mask) != "none" or strategies or record_hidden):
            raise ValueError("dynheads: kv= compresses the unmasked model's KV cache on its own; use it with mask=none, "
                             "without rag= and hidden=true")
        names = {name for name, _ in kv_strategies}
        if "dynamic" in names and not self.kv.probe:
            raise ValueError("dynheads: kv=dynamic predicts each step's heads from the previous step's hidden state; give "
                             "kv_probe=PATH (a temporal-offset-1 probe, saved by run_suite.py --stages kv)")
        if names & {"static", "dynamic", "oracle"} and self.static_source == "off":
            raise ValueError("dynheads: kv=static/dynamic/oracle rank heads by the static calibration; set static_heads=auto or a file")
        return dataclasses.replace(self, conditions=conditions, heads=heads, trace_dir=Path(trace_dir) if trace_dir else None,
                                   record_hidden=record_hidden, rag_strategies=strategies, kv_strategies=kv_strategies)

    def kv_label(self) -> str:
        """The KV conditions' names joined by + (their ``mask`` in trace lines), or ``""`` without ``kv=``."""
        return "+".join(self.kv.policy(name, budget).name for name, budget in self.kv_strategies)

    def check_model(self, total_heads: int, gate_mask: Callable[[list], Any]) -> None:
        """What needs the loaded model: a head count within its heads, head indices that exist."""
        if isinstance(self.heads, int) and not 0 <= self.heads <= total_heads:
            raise ValueError(f"dynheads: heads={self.heads} requested but the model has {total_heads} heads")
        if isinstance(self.heads, str):
            gate_mask(parse_head_list(self.heads))  # validates indices now, not mid-run
