"""The one typed name of every decoding condition: parsed once, written once.

Why: a condition's name travels from a model argument (``mask=dynamic:5``, ``rag=static:10``,
``kv=static@0.3``) into the trace's ``condition`` field and the suite's tables (``dynamic:5``,
``rag:static:10``, ``kv:static@0.3``), and back out of them. One parser and one formatter keep those
spellings in step; every other module asks a :class:`ConditionSpec` instead of splitting strings.

Grammar (``family`` prefix optional where the argument already says which family):

* masks: ``none | dynamic[:K] | static | random``
* RAG (Section 5): ``rag:`` + ``dynamic | static | dynamic_random | fixed_random`` (each ``[:K]`` heads),
  ``none | full | oracle``
* KV compression: ``kv:`` + ``full | streaming`` or ``static | dynamic | probe_mean | frozen | observed | random |
  redrawn`` + ``[@BUDGET]``
  (a count of units kept whole, or a share such as ``0.3``; absent: the ``kv_budget`` argument). ``kv:oracle`` is the
  old name of ``kv:observed`` (read with a one-line FutureWarning; it was never an upper bound).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

FAMILIES = ("mask", "rag", "kv")
MASK_STRATEGIES = ("none", "dynamic", "static", "random")
RAG_STRATEGIES = ("dynamic", "static", "dynamic_random", "fixed_random", "none", "full", "oracle")
RAG_HEAD_STRATEGIES = ("dynamic", "static", "dynamic_random", "fixed_random")  # the ones that take a head count
KV_STRATEGIES = ("full", "streaming", "static", "dynamic", "probe_mean", "frozen", "observed", "random", "redrawn")
KV_BUDGETED = ("static", "dynamic", "probe_mean", "frozen", "observed", "random", "redrawn")  # the ones that take a budget
KV_PREDICTED = ("dynamic", "probe_mean", "frozen")  # the ones that read kv=dynamic's offset-1 probe
KV_RENAMED = {"oracle": "observed"}  # old KV strategy name -> new (read with a FutureWarning)
STRATEGIES = {"mask": MASK_STRATEGIES, "rag": RAG_STRATEGIES, "kv": KV_STRATEGIES}
ACCEPTED = {
    "mask": "choose one of none, dynamic, dynamic:K (gate the K strongest, e.g. dynamic:5), static, random, or several "
            "joined by + (one shared prefill, e.g. none+dynamic+static)",
    "rag": "choose from dynamic, static, dynamic_random, fixed_random (each with an optional :K head count, e.g. "
           "dynamic:10), none, full, oracle; join several with + (one context prefill)",
    "kv": "choose among full, streaming, static, dynamic, probe_mean, frozen, observed, random, redrawn joined by +, each "
          "budgeted one with an optional budget after @ (a count, or a share such as 0.25), e.g. "
          "kv=full+static@0.25+dynamic@0.25",
}


def current_kv_name(strategy: str) -> str:
    """A KV strategy's current name: an old one (``oracle``) is read with a one-line FutureWarning."""
    if strategy in KV_RENAMED:
        warnings.warn(f"dynheads: kv={strategy} is now kv={KV_RENAMED[strategy]} (the step's observed heads, not an "
                      "upper bound); the old name will be removed", FutureWarning, stacklevel=3)
        return KV_RENAMED[strategy]
    return strategy


class SpecError(ValueError):
    """A condition name that cannot be read; the message names the problem and the accepted spellings."""


def budget_value(text: str) -> int | float:
    """``"8"`` -> 8 units, ``"0.25"`` -> a share; one clear line for anything else."""
    text = text.strip()
    try:
        budget: int | float = int(text) if text.isdigit() else float(text)
    except ValueError:
        raise SpecError(f"dynheads: kv_budget={text!r}; give a count N or a fraction such as 0.25") from None
    if isinstance(budget, float) and not 0 < budget <= 1:
        raise SpecError(f"dynheads: kv_budget={text!r}; a fraction must lie in (0, 1], a count must be an integer")
    return budget


@dataclass(frozen=True)
class ConditionSpec:
    """A condition's family (``mask`` / ``rag`` / ``kv``), strategy, head count ``k`` (``dynamic:5``,
    ``rag:static:10``) and KV ``budget`` (``kv:static@0.3``; ``None``: the run's ``kv_budget``)."""

    family: str
    strategy: str
    k: int | None = None
    budget: int | float | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise SpecError(f"dynheads: unknown condition family {self.family!r}; choose mask, rag or kv")
        if self.strategy not in STRATEGIES[self.family]:
            raise SpecError(f"dynheads: unknown {self.family} condition {self.strategy!r}; {ACCEPTED[self.family]}")
        takes_k = (self.family == "mask" and self.strategy == "dynamic") or (
            self.family == "rag" and self.strategy in RAG_HEAD_STRATEGIES)
        if self.k is not None and (not takes_k or self.k < (0 if self.family == "mask" else 1)):
            raise SpecError(f"dynheads: {self.strategy}:{self.k} takes no head count here or a count out of range; "
                            f"{ACCEPTED[self.family]}")
        if self.budget is not None and (self.family != "kv" or self.strategy not in KV_BUDGETED):
            raise SpecError(f"dynheads: {self.strategy}@{self.budget} takes no budget; {ACCEPTED['kv']}")

    @property
    def label(self) -> str:
        """The name inside its family, as its argument spells it (``dynamic:5``, ``static:10``, ``static@0.3``)."""
        text = self.strategy if self.k is None else f"{self.strategy}:{self.k}"
        return text if self.budget is None else f"{text}@{self.budget:g}"

    @property
    def name(self) -> str:
        """The name in trace lines and tables: masks bare (``dynamic:5``), the others prefixed (``rag:static:10``,
        ``kv:static@0.3``)."""
        return self.label if self.family == "mask" else f"{self.family}:{self.label}"

    @classmethod
    def parse(cls, text: str, family: str | None = None) -> "ConditionSpec":
        """``"kv:static@0.3"``, ``"rag:dynamic"``, ``"dynamic:5"`` (or ``"static@0.3"`` with ``family="kv"``)."""
        text = str(text).strip()
        prefix, colon, rest = text.partition(":")
        if colon and prefix in ("rag", "kv"):
            if family not in (None, prefix):
                raise SpecError(f"dynheads: {text!r} is a {prefix} condition where a {family} one is expected; "
                                f"{ACCEPTED[family]}")
            family, text = prefix, rest
        family = family or "mask"
        name, at, budget = text.partition("@") if family == "kv" else (text, "", "")
        strategy, colon, k = name.partition(":")
        if colon and family == "kv":
            raise SpecError(f"dynheads: cannot read KV condition {text!r}; {ACCEPTED['kv']}")
        if family == "kv":
            strategy = current_kv_name(strategy)
        try:
            count = int(k) if colon else None
        except ValueError:
            raise SpecError(f"dynheads: cannot read the head count of {text!r}; {ACCEPTED[family]}") from None
        return cls(family, strategy, count, budget_value(budget) if at else None)
