"""Verdicts from the declared claims (``suite/claims.yaml``): one rule, used by every table that says one.

Why one module: a verdict is a decision with an error rate (a family, a minimum n, a margin, an adjusted p);
when each table wrote its own, each used its own rule. Here a *rule* (what ``claims.yaml`` declares for a
claim or a stage table) and the stored test records of :mod:`dynheads.metrics.inference` give the verdict;
nothing else does. A test record holds ``estimate``, ``low``, ``high``, ``n``, ``p`` (two-sided, unadjusted),
and where the test allows it ``sd`` (equivalence by TOST) and ``reference`` (a relative margin).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..metrics.inference import holm, tost_from_summary

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
WORDS = {"claim": ("reproduced", "contradicted"), "conjecture": ("supported", "not supported")}


@dataclass(frozen=True)
class Rule:
    """How one comparison is decided: the kind of statement (a claim of the paper or our conjecture), the
    direction it predicts, the value it is tested against, the minimum units, and the equivalence margin
    (``margin`` absolute, or ``relative`` times the reference condition's mean)."""

    kind: str
    min_n: int
    direction: int = 1
    null: float = 0.0
    margin: float | None = None
    relative: bool = False
    unit: str = "unit"
    alpha: float = 0.05
    min_per_class: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in WORDS:
            raise ValueError(f"dynheads: claims.yaml: kind must be claim or conjecture, got {self.kind!r}")
        if self.direction not in (1, -1):
            raise ValueError(f"dynheads: claims.yaml: direction must be 1 or -1, got {self.direction!r}")

    def shortfall(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record`` is below this rule's minimum (``n``, or for a detector's AUROC the units holding each
        class: ``positive_units`` / ``negative_units``), or None when it is not."""
        n = int(record["n"])
        if n < self.min_n:
            return f"n = {n} < {self.min_n}"
        if self.min_per_class is not None:
            for name in ("positive", "negative"):
                count = record.get(f"{name}_units")
                if count is None or int(count) < self.min_per_class:
                    return f"{count if count is not None else '?'} {name} units < {self.min_per_class}"
        return None

    def margin_for(self, record: Mapping[str, Any]) -> float | None:
        """The absolute margin for this record (a relative margin scales the reference mean; None without one)."""
        if self.margin is None:
            return None
        if not self.relative:
            return self.margin
        reference = record.get("reference")
        return None if reference is None or reference == 0 else abs(reference) * self.margin


@dataclass(frozen=True)
class Claim:
    """One declared row of ``claims.yaml`` (see the file's header for the fields)."""

    id: str
    claim: str
    setting: str
    statistic: str
    family: str
    paper: str
    rule: Rule
    parts: tuple[tuple[str, tuple[str, ...], float], ...] = ()
    source: tuple[str, ...] = ()
    parts_from: tuple[str, ...] = ()
    metric: str | None = None
    cluster: str | None = None


def _rule(spec: Mapping[str, Any], alpha: float, direction: int = 1, null: float = 0.0) -> Rule:
    margin = spec.get("margin") or {}
    if margin and set(margin) not in ({"absolute"}, {"relative"}):
        raise ValueError(f"dynheads: claims.yaml: margin is {{absolute: m}} or {{relative: r}}, got {margin}")
    return Rule(kind=spec["kind"], min_n=int(spec["min_n"]), direction=int(spec.get("direction", direction)),
                null=float(spec.get("against", null)), margin=next(iter(margin.values()), None) if margin else None,
                relative="relative" in margin, unit=str(spec.get("unit", "unit")), alpha=alpha,
                min_per_class=int(spec["min_per_class"]) if spec.get("min_per_class") is not None else None)


@functools.lru_cache(maxsize=4)
def load(path: Path = CLAIMS_FILE) -> tuple[dict[str, Rule], tuple[Claim, ...]]:
    """The stage tables' rules and the declared claims, in file order."""
    spec = yaml.safe_load(Path(path).read_text())
    alpha = float(spec.get("alpha", 0.05))
    tables = {name: _rule(rule, alpha) for name, rule in spec["tables"].items()}
    claims = []
    for c in spec["claims"]:
        parts = tuple((p["name"], tuple(p["source"]), float(p.get("against", 0.0))) for p in c.get("parts", ()))
        claims.append(Claim(id=c["id"], claim=c["claim"], setting=c["setting"], family=c["family"], paper=c["paper"],
                            statistic=c.get("statistic") or " and ".join(name for name, _, _ in parts),
                            rule=_rule(c, alpha), parts=parts, source=tuple(c.get("source", ())),
                            parts_from=tuple(c.get("parts_from", ())), metric=c.get("metric"), cluster=c.get("cluster")))
    if len({c.id for c in claims}) != len(claims):
        raise ValueError("dynheads: claims.yaml: claim ids must be unique")
    return tables, tuple(claims)


def table_rule(table: str, direction: int = 1) -> Rule:
    """The declared rule of a stage table's family, in the direction of one of its rows."""
    return dataclasses.replace(load()[0][table], direction=direction)


def verdict(record: Mapping[str, Any] | None, rule: Rule, p_adjusted: float, equivalence_adjusted: float) -> str:
    """The verdict of one tested comparison (see ``claims.yaml``'s header), given its family-adjusted p-values."""
    if record is None:
        return "not run"
    n = int(record["n"])
    short = rule.shortfall(record)
    if short:
        return f"insufficient n ({short})"
    side = math.copysign(1, record["estimate"] - rule.null) * rule.direction
    if p_adjusted <= rule.alpha and (record["estimate"] - rule.null) != 0:
        return WORDS[rule.kind][0 if side > 0 else 1]
    margin = rule.margin_for(record)
    if margin is not None and equivalence_adjusted <= rule.alpha:
        return f"equivalent to {rule.null:g} within ±{margin:.3g}"
    return f"inconclusive at n = {n}"


def equivalence_p(record: Mapping[str, Any], rule: Rule) -> float:
    """TOST p of ``estimate - null`` within the rule's margin: from ``sd`` when the record has one (t-based),
    else 0 when the 95 % interval lies inside the margin and 1 otherwise (conservative: a 95 % interval is wider
    than TOST's 90 %). NaN when the rule declares no margin."""
    margin = rule.margin_for(record)
    if margin is None:
        return math.nan
    if record.get("sd") is not None:
        return tost_from_summary(record["estimate"] - rule.null, float(record["sd"]), int(record["n"]), margin)
    inside = -margin < record["low"] - rule.null and record["high"] - rule.null < margin
    return 0.0 if inside else 1.0


def decide_family(members: Sequence[tuple[Mapping[str, Any] | None, Rule]]) -> list[dict[str, Any]]:
    """Each member's decision within one family: its raw p, Holm-adjusted p and TOST p (over the members
    tested, i.e. with a record and n ≥ their minimum; None for the others), the family's size and the verdict."""
    tested = [r is not None and rule.shortfall(r) is None for r, rule in members]
    raw = [float(r["p"]) if t else math.nan for (r, _), t in zip(members, tested)]
    tost = [equivalence_p(r, rule) if t else math.nan for (r, rule), t in zip(members, tested)]
    adjusted, adjusted_tost = holm(raw), holm(tost)
    size = sum(tested)
    out = []
    for (record, rule), p_adj, q_adj in zip(members, adjusted, adjusted_tost):
        out.append({"p": None if record is None else float(record["p"]), "p_adjusted": None if math.isnan(p_adj) else p_adj,
                    "p_equivalence": None if math.isnan(q_adj) else q_adj, "family_size": size,
                    "margin": None if record is None else rule.margin_for(record),
                    "verdict": verdict(record, rule, 1.0 if math.isnan(p_adj) else p_adj,
                                       1.0 if math.isnan(q_adj) else q_adj)})
    return out


def decide_table(table: str, records: Mapping[str, tuple[Mapping[str, Any] | None, int]]) -> dict[str, dict[str, Any]]:
    """A stage table's rows (name -> (test record, direction)) decided as one family under the table's declared
    rule; each record comes back with its decision merged in."""
    names = list(records)
    decisions = decide_family([(records[n][0], table_rule(table, records[n][1])) for n in names])
    return {n: {**(records[n][0] or {}), **d, "expected_sign": records[n][1]} for n, d in zip(names, decisions)}


def p_text(decision: Mapping[str, Any]) -> str:
    """``0.031 / 0.093 (of 3)``: raw and Holm-adjusted p with the family's size, for a table cell (``0.2 / not
    tested`` below the minimum n)."""
    if decision.get("p") is None:
        return "—"
    if decision.get("p_adjusted") is None:
        return f"{decision['p']:.3g} / not tested"
    return f"{decision['p']:.3g} / {decision['p_adjusted']:.3g} (of {decision['family_size']})"
