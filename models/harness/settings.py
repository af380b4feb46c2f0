"""The ``dynheads`` model arguments, parsed and validated once into a frozen :class:`ModelSettings`.

Why one place: lm-eval hands every ``--model_args`` value over as text (or as a bool / int), and a bad
one must fail in one clear line *before* the slow model load. Each feature parses and checks its own
arguments (:class:`MaskSettings`, :class:`StaticSettings`, :class:`HiddenSettings`, Eq. 2's
:func:`parse_reasoning`, Section 5's :func:`parse_rag`, :class:`KVSettings`); what one feature forbids of
another is one table, :data:`EXCLUSIONS`, checked once. What needs the model (head indices, a probe's
width) is checked by :meth:`ModelSettings.check_model` right after loading. ``run_suite`` reconfigures a
loaded model per cell with :meth:`ModelSettings.replace_run`, validated the same way. Renamed arguments
(:data:`RENAMED`) are still accepted, with a one-line ``FutureWarning``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from ...traces import HIDDEN_DTYPES
from ..engine.kv import DEFAULT_SINK, DEFAULT_WINDOW, KV_CONDITIONS, KVError, KVPolicy
from ...spec import KV_PREDICTED, ConditionSpec, SpecError, budget_value
from ..engine.scores import ReasoningScore
from ..rag.algorithm import RagSettings
from ..rag.strategies import Strategy

CALIBRATION_ARGS = ("calib_lengths", "calib_depths", "calib_runs", "calib_examples")
DEFAULT_KV_BUDGET = 0.25


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


def parse_specs(text: Any, family: str) -> tuple[ConditionSpec, ...]:
    """A ``+``-joined list of one family's condition names (``mask=none+dynamic:5``, ``kv=full+static@0.1``) to
    specs; each name once; one clear line for a bad one."""
    try:
        specs = tuple(ConditionSpec.parse(name, family=family) for name in plus_list(text))
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    if len(set(specs)) != len(specs):
        raise ValueError(f"dynheads: {family}={text!r} names a condition twice; give each once")
    return specs


def parse_conditions(mask: Any) -> tuple[ConditionSpec, ...]:
    """``mask=none+dynamic:5`` to mask specs; one clear line for a bad one."""
    if not plus_list(mask):
        raise ValueError("dynheads: empty mask; choose mask=none, dynamic, dynamic:K, static or random (join several with +)")
    return parse_specs(mask, "mask")


def parse_strategies(text: str | None) -> tuple[Strategy, ...]:
    """``"dynamic+static:10"`` to strategies; ``None`` / ``""`` / ``off`` = RAG off."""
    if text is None or str(text).strip() in ("", "off", "false"):
        return ()
    return tuple(Strategy.from_spec(spec) for spec in parse_specs(text, "rag"))


def parse_kv_strategies(text: Any) -> tuple[tuple[str, int | float | None], ...]:
    """``"full+static+dynamic@0.1"`` to (strategy, budget) pairs (budget None: ``kv_budget``); ``None`` / ``""`` / ``off`` =
    no KV compression. A budget after ``@`` lets one run sweep budgets over one shared prefill."""
    if text is None or str(text).strip() in ("", "off", "false"):
        return ()
    return tuple((spec.strategy, spec.budget) for spec in parse_specs(text, "kv"))


def parse_kv_budget(value: Any) -> int | float:
    """``kv_budget``: a count (``8``) or a share of all units (``0.25``); one clear line otherwise."""
    try:
        return budget_value(str(value))
    except SpecError as exc:
        raise ValueError(str(exc)) from None


def number(name: str, value: Any, cast: type) -> Any:
    """One numeric argument; one clear line if it is not one."""
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise ValueError(f"dynheads: cannot read {name}={value!r} as {'an integer' if cast is int else 'a number'}") from None


# ------------------------------------------------------------------------------------------ renamed arguments
RENAMED = {  # old name: (new names it sets, why it was renamed)
    "kv_heads": (("kv_budget",), "units kept whole: a count or a share, not a number of heads"),
    "sink_tokens": (("reasoning_sink_tokens", "rag_sink_tokens"),
                    "Eq. 2's excluded sinks and the sinks RAG keeps visible are separate settings"),
}


def renamed(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with every renamed argument moved to its new name(s), one ``FutureWarning`` line each; old and new
    given together is one clear error."""
    args = dict(args)
    for old, (new, why) in RENAMED.items():
        if args.get(old) is None:
            args.pop(old, None)
            continue
        clash = [n for n in new if args.get(n) is not None]
        if clash:
            raise ValueError(f"dynheads: {old} is the old name of {' and '.join(new)}; give {clash[0]} only")
        warnings.warn(f"dynheads: {old} is deprecated; use {' and '.join(new)} ({why})", FutureWarning, stacklevel=4)
        value = args.pop(old)
        args.update({n: value for n in new})
    return args


# ------------------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class MaskSettings:
    """``mask=`` and ``heads=``: the masking conditions and how many (or which) heads static / random gate."""

    conditions: tuple[ConditionSpec, ...] = (ConditionSpec("mask", "none"),)
    heads: int | str | None = None  # a count N, an explicit head list "L:H+L:H", or None (the calibrated N)
    ARGS: ClassVar[tuple[str, ...]] = ("mask", "heads")

    @classmethod
    def parse(cls, mask: Any = "none", heads: Any = None) -> "MaskSettings":
        conditions = parse_conditions(mask)
        if isinstance(heads, bool) or not (heads is None or isinstance(heads, (int, str))):
            raise ValueError(f"dynheads: heads={heads!r} must be a count N or a list L:H+L:H")
        if isinstance(heads, str):
            if heads.strip().isdigit():
                heads = int(heads)
            else:
                parse_head_list(heads)
        strategies = {c.strategy for c in conditions}
        if "static" in strategies and "random" in strategies and isinstance(heads, str):
            raise ValueError("dynheads: an explicit head list (heads=L:H+...) cannot serve static and random together; give heads=N or omit it")
        if "random" in strategies and isinstance(heads, str):
            raise ValueError("dynheads: mask=random needs heads=N (a count) or no heads (the calibrated matched N)")
        return cls(conditions, heads)

    @property
    def strategies(self) -> set[str]:
        return {c.strategy for c in self.conditions}

    @property
    def unmasked(self) -> bool:
        """Only ``mask=none``: what RAG and KV compression run under."""
        return self.strategies == {"none"}


@dataclass(frozen=True)
class StaticSettings:
    """``static_heads=`` and ``calib_*``: where the static ranking comes from and the calibration's overrides."""

    source: str = "auto"  # auto | off | a calibration / head-list JSON path
    calibration: dict[str, Any] = field(default_factory=dict)  # calib_* overrides (None = the task's default)
    ARGS: ClassVar[tuple[str, ...]] = ("static_heads",) + CALIBRATION_ARGS

    @classmethod
    def parse(cls, static_heads: Any = "auto", calib_lengths: Any = None, calib_depths: Any = None, calib_runs: Any = None,
              calib_examples: Any = None) -> "StaticSettings":
        source = "auto" if static_heads in (None, "", "auto") else str(static_heads)
        if source not in ("auto", "off") and not Path(source).is_file():
            raise ValueError(f"dynheads: static_heads={source!r} is not a file; give a calibration JSON path, auto or off")
        calibration = {
            "lengths": number_list("calib_lengths", calib_lengths, int) if calib_lengths is not None else None,
            "depths": number_list("calib_depths", calib_depths, float) if calib_depths is not None else None,
            "runs": number("calib_runs", calib_runs, int) if calib_runs is not None else None,
            "examples": number("calib_examples", calib_examples, int) if calib_examples is not None else None,
        }
        if calibration["examples"] is not None and calibration["examples"] < 1:
            raise ValueError(f"dynheads: calib_examples={calib_examples!r} must be a positive number of HotpotQA train examples, e.g. calib_examples=20")
        return cls(source, calibration)


@dataclass(frozen=True)
class HiddenSettings:
    """``hidden=`` and ``hidden_dtype=``: record each step's final hidden state in the trace's sidecar (Claim 3)."""

    record: bool = False
    dtype: str = "float16"
    ARGS: ClassVar[tuple[str, ...]] = ("hidden", "hidden_dtype")

    @classmethod
    def parse(cls, hidden: Any = False, hidden_dtype: Any = "float16") -> "HiddenSettings":
        if hidden_dtype not in HIDDEN_DTYPES:
            raise ValueError(f"dynheads: hidden_dtype={hidden_dtype!r}; choose {' or '.join(HIDDEN_DTYPES)}")
        return cls(flag("hidden", hidden), str(hidden_dtype))


REASONING_ARGS = ("reasoning_sink_tokens", "local_window", "reasoning_threshold")


def parse_reasoning(reasoning_sink_tokens: Any = None, local_window: Any = None, reasoning_threshold: Any = None) -> ReasoningScore:
    """Eq. 2's settings: the sinks and the local window left out of its denominator, and the head threshold."""
    base = ReasoningScore()
    reasoning = ReasoningScore(
        sink_tokens=number("reasoning_sink_tokens", reasoning_sink_tokens, int) if reasoning_sink_tokens is not None else base.sink_tokens,
        local_window=number("local_window", local_window, int) if local_window is not None else base.local_window,
        threshold=number("reasoning_threshold", reasoning_threshold, float) if reasoning_threshold is not None else base.threshold,
    )
    if reasoning.sink_tokens < 0 or reasoning.local_window < 0 or not 0 <= reasoning.threshold <= 1:
        raise ValueError("dynheads: reasoning_sink_tokens and local_window must be >= 0 and reasoning_threshold in [0, 1], "
                         "e.g. reasoning_sink_tokens=4,local_window=32,reasoning_threshold=0.5")
    return reasoning


RAG_ARGS = ("rag_heads", "rag_threshold", "rag_top_positions", "rag_cluster_gap", "rag_window", "rag_max_retrievals",
            "rag_sink_tokens", "rag_algorithm", "rag_stopwords")


def parse_rag(**given: Any) -> RagSettings:
    """Section 5's ``rag_*`` settings (the strategies themselves are ``rag=``, the run part)."""
    kinds = {"threshold": float, "algorithm": str, "stopwords": str}
    values = {name[len("rag_"):]: value for name, value in given.items() if value is not None}
    try:
        return RagSettings(**{k: kinds.get(k, int)(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc) if str(exc).startswith("dynheads") else f"dynheads: cannot read the rag_* arguments ({exc})") from None


def parse_hallucination(hallucination: Any = "off") -> bool:
    """``hallucination=absence``: the no-training detector's score and AUROC in the task's table."""
    detector = str(hallucination).strip().lower()
    if detector not in ("absence", "true", "off", "false", "none", ""):
        raise ValueError(f"dynheads: hallucination={hallucination!r}; choose absence (the retrieval-head absence score and "
                         "its AUROC in the task's table) or off")
    return detector in ("absence", "true")


@dataclass(frozen=True)
class KVSettings:
    """``kv=`` and ``kv_*``: the strategies (the run part), the budget of units kept whole, the streaming heads' view,
    the selection unit and ``kv=dynamic``'s offset-1 probe."""

    budget: int | float = DEFAULT_KV_BUDGET
    sink: int = DEFAULT_SINK
    window: int = DEFAULT_WINDOW
    granularity: str = "kv"
    probe: str = ""  # kv=dynamic: a probe trained at temporal offset 1
    strategies: tuple[tuple[str, int | float | None], ...] = ()  # kv=: (strategy, budget or None) per condition
    ARGS: ClassVar[tuple[str, ...]] = ("kv_budget", "kv_sink", "kv_window", "kv_granularity", "kv_probe")

    @classmethod
    def parse(cls, kv_budget: Any = None, kv_sink: Any = DEFAULT_SINK, kv_window: Any = DEFAULT_WINDOW,
              kv_granularity: Any = "kv", kv_probe: Any = None) -> "KVSettings":
        if kv_probe and not Path(str(kv_probe)).is_file():
            raise ValueError(f"dynheads: kv_probe={kv_probe!r} is not a file; give a probe saved by run_suite.py --stages kv")
        try:
            settings = cls(parse_kv_budget(DEFAULT_KV_BUDGET if kv_budget is None else kv_budget),
                           number("kv_sink", kv_sink, int), number("kv_window", kv_window, int), str(kv_granularity),
                           str(kv_probe) if kv_probe else "")
            settings.policy("static")  # sink, window, granularity checked now
        except KVError as exc:
            raise ValueError(str(exc)) from None
        return settings

    def policy(self, strategy: str, budget: int | float | None = None, **kw: Any) -> KVPolicy:
        """The condition of ``strategy`` at ``budget`` (None: this ``kv_budget``)."""
        return KVPolicy(strategy, self.budget if budget is None else budget, self.sink, self.window, self.granularity, **kw)

    def label(self) -> str:
        """The KV conditions' names joined by + (their ``condition`` in trace lines), or ``""`` without ``kv=``."""
        return "+".join(self.policy(name, budget).name for name, budget in self.strategies)

    def trace_fields(self) -> dict[str, Any]:
        """What a ``kv:`` trace line records so that a verifier can rebuild each step's per-head masks."""
        return {"sink": self.sink, "window": self.window, "granularity": self.granularity}


# ------------------------------------------------------------------------------------------ exclusions
Exclusion = tuple[Callable[["ModelSettings"], bool], str]
EXCLUSIONS: tuple[Exclusion, ...] = (  # what one feature forbids of another: (is it violated?, the one-line fix)
    (lambda s: bool(s.mask.strategies & {"static", "random"}) and s.mask.heads is None and s.static.source == "off",
     "mask=static/random without heads=N needs the calibration; set heads=N or static_heads=auto"),
    (lambda s: s.hidden.record and s.trace_dir is None,
     "hidden=true records hidden states into the trace's sidecar; give trace_dir=DIR too"),
    (lambda s: bool(s.rag_strategies) and not s.mask.unmasked,
     "rag= decides what the model sees by itself; use it with mask=none"),
    (lambda s: bool(s.rag_strategies) and s.hidden.record, "hidden=true records unmasked traces; run it without rag="),
    (lambda s: bool(s.kv.strategies) and (not s.mask.unmasked or bool(s.rag_strategies) or s.hidden.record),
     "kv= compresses the unmasked model's KV cache on its own; use it with mask=none, without rag= and hidden=true"),
    (lambda s: any(name in KV_PREDICTED for name, _ in s.kv.strategies) and not s.kv.probe,
     "kv=dynamic (and its controls kv=probe_mean and kv=frozen) reads the offset-1 probe that predicts each step's heads from the previous step's hidden state; give kv_probe=PATH (a "
     "temporal-offset-1 probe, saved by run_suite.py --stages kv)"),
    (lambda s: any(KV_CONDITIONS[name].needs_ranking for name, _ in s.kv.strategies) and s.static.source == "off",
     "kv=static/dynamic/frozen/observed rank or fill heads by the static calibration; set static_heads=auto or a file"),
)


@dataclass(frozen=True)
class ModelSettings:
    """Everything the ``dynheads`` model does beyond what ``HFLM`` loads (docs/model_arguments.md), one part per feature.

    The *run* part (``mask``, ``trace_dir``, ``hidden.record``, ``rag_strategies``, ``kv.strategies``) may change
    between lm-eval runs on one loaded model (:meth:`replace_run`); the rest is fixed at load.
    """

    mask: MaskSettings = MaskSettings()
    static: StaticSettings = StaticSettings()
    hidden: HiddenSettings = HiddenSettings()
    reasoning: ReasoningScore = ReasoningScore()
    rag: RagSettings = RagSettings()
    rag_strategies: tuple[Strategy, ...] = ()
    kv: KVSettings = KVSettings()
    probe: str = ""  # path of a probe for the probe metrics (and rag=dynamic)
    hallucination: bool = False
    trace_dir: Path | None = None
    seed: int = 0
    ARGS: ClassVar[tuple[str, ...]] = (MaskSettings.ARGS + StaticSettings.ARGS + HiddenSettings.ARGS + REASONING_ARGS
                                       + ("rag",) + RAG_ARGS + ("kv",) + KVSettings.ARGS
                                       + ("probe", "hallucination", "trace_dir", "seed") + tuple(RENAMED))

    @classmethod
    def parse(cls, **args: Any) -> "ModelSettings":
        """The settings of these model arguments (lm-eval's spelling and types; :data:`ARGS`); one clear line for a
        bad one."""
        unknown = sorted(set(args) - set(cls.ARGS))
        if unknown:
            raise ValueError(f"dynheads: unknown model argument {unknown[0]!r}; see docs/model_arguments.md")
        args = renamed(args)
        part = lambda names: {n: args[n] for n in names if n in args}  # noqa: E731
        fixed = cls(static=StaticSettings.parse(**part(StaticSettings.ARGS)),
                    hidden=HiddenSettings.parse(**{**part(HiddenSettings.ARGS), "hidden": False}),
                    reasoning=parse_reasoning(**part(REASONING_ARGS)), rag=parse_rag(**part(RAG_ARGS)),
                    kv=KVSettings.parse(**part(KVSettings.ARGS)), probe=str(args.get("probe") or ""),
                    hallucination=parse_hallucination(args.get("hallucination", "off")),
                    seed=number("seed", args.get("seed", 0), int))
        return fixed.replace_run(mask=args.get("mask", "none"), heads=args.get("heads"), trace_dir=args.get("trace_dir"),
                                 hidden=flag("hidden", args.get("hidden", False)), rag=args.get("rag"), kv=args.get("kv"))

    def replace_run(self, mask: Any = "none", heads: Any = None, trace_dir: str | os.PathLike | None = None,
                    hidden: bool | None = None, rag: str | None = None, kv: str | None = None) -> "ModelSettings":
        """These settings with another run part (``hidden`` None keeps the current one); validated first."""
        settings = dataclasses.replace(
            self, mask=MaskSettings.parse(mask, heads), trace_dir=Path(trace_dir) if trace_dir else None,
            hidden=self.hidden if hidden is None else dataclasses.replace(self.hidden, record=bool(hidden)),
            rag_strategies=parse_strategies(rag), kv=dataclasses.replace(self.kv, strategies=parse_kv_strategies(kv)))
        settings.check_exclusions()
        return settings

    def check_exclusions(self) -> None:
        """The first violated cross-feature rule of :data:`EXCLUSIONS`, as one clear error."""
        for violated, message in EXCLUSIONS:
            if violated(self):
                raise ValueError(f"dynheads: {message}")

    def check_model(self, total_heads: int, gate_mask: Callable[[list], Any]) -> None:
        """What needs the loaded model: a head count within its heads, head indices that exist."""
        heads = self.mask.heads
        if isinstance(heads, int) and not 0 <= heads <= total_heads:
            raise ValueError(f"dynheads: heads={heads} requested but the model has {total_heads} heads")
        if isinstance(heads, str):
            gate_mask(parse_head_list(heads))  # validates indices now, not mid-run
