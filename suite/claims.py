"""``results/claims.{md,json}``: one row per declared claim (``suite/claims.yaml``), each decided by
:mod:`dynheads.suite.verdicts` within its family.

Why rows come from a file: a claim's statistic, direction, unit, family, margin and minimum n are fixed before
the run; this module only finds each claim's stored test record in a model's results row and hands the
family to the one verdict rule. A claim with parts (Claim 1's two statistics; Claim 3's baselines) holds only
if every part does: intersection-union, its p the largest part's p.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..util import write_atomic
from .summaries import interval_text
from .tables import markdown
from .replication import replication_table, summary
from .verdicts import Claim, Rule, decide_family, load, p_text


def resolve(row: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a results row (None when any step is missing); ``[traced]`` picks the entry of
    a list that has ``traced`` set (HotpotQA's dynamism rows, one per threshold)."""
    node = row
    for key in path:
        if key == "[traced]":
            node = next((d for d in node or [] if isinstance(d, dict) and d.get("traced")), None)
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
        if node is None:
            return None
    return node


def combined(parts: list[tuple[str, dict[str, Any], float]], rule: Rule) -> tuple[dict[str, Any] | None, Rule, str]:
    """The intersection-union record of a claim's parts. When every part lies on the claim's side, the least
    favourable part (largest p) stands for the claim, with that p: the claim holds only if every part does.
    When some part lies on the other side, the claim fails if any such part does: the most significant of them
    stands for it, its p Bonferroni-multiplied by the number of parts. n is the smallest part's; the rule is
    re-centred on the chosen part's value tested against; the text shows every part."""
    if not parts:
        return None, rule, "—"
    text = "; ".join(f"{name}: {interval_text(r)}" + (f" (vs {null:g})" if null else "") for name, r, null in parts)
    against = [part for part in parts if (part[1]["estimate"] - part[2]) * rule.direction <= 0]
    if against:
        _, chosen, null = min(against, key=lambda part: part[1]["p"])
        p = min(1.0, len(parts) * chosen["p"])
    else:
        _, chosen, null = max(parts, key=lambda part: part[1]["p"])
        p = chosen["p"]
    record = {**chosen, "p": p, "n": min(int(r["n"]) for _, r, _ in parts), "sd": None if len(parts) > 1 else chosen.get("sd")}
    return record, dataclasses.replace(rule, null=null), text


def evidence(claim: Claim, row: dict[str, Any]) -> tuple[dict[str, Any] | None, Rule, str]:
    """A claim's test record in ``row`` (None when its stage did not run), the rule it is decided by, and its
    effect's text."""
    if claim.parts:
        found = [(name, resolve(row, source), null) for name, source, null in claim.parts]
        if any(r is None for _, r, _ in found):
            return None, claim.rule, "—"
        return combined(found, claim.rule)
    if claim.parts_from:
        entries = resolve(row, claim.parts_from) or {}
        found = [(name.replace("_", " "), entry[claim.metric], claim.rule.null) for name, entry in sorted(entries.items())
                 if claim.metric in entry]
        return combined(found, claim.rule)
    record = resolve(row, claim.source)
    return record, claim.rule, interval_text(record)


def claims_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Every declared claim for one model's results row, decided within its family (Holm)."""
    _, claims = load()
    found = [(c, *evidence(c, row)) for c in claims]
    families: dict[str, list[int]] = defaultdict(list)
    for i, (c, *_rest) in enumerate(found):
        families[c.family].append(i)
    decisions: dict[int, dict[str, Any]] = {}
    for members in families.values():
        for i, d in zip(members, decide_family([(found[i][1], found[i][2]) for i in members])):
            decisions[i] = d
    out = []
    for i, (c, record, rule, text) in enumerate(found):
        out.append({"model": row["model"], "id": c.id, "claim": c.claim, "setting": c.setting, "statistic": c.statistic,
                    "unit": rule.unit + (f" (clustered by {c.cluster})" if c.cluster else ""), "family": c.family,
                    "effect": None if record is None else {k: record[k] for k in ("estimate", "low", "high", "n", "level")
                                                           if k in record},
                    "effect_text": text, "n": None if record is None else int(record["n"]), "paper": c.paper,
                    **{k: record[k] for k in ("test", "positive_units", "negative_units") if record and k in record},
                    **decisions[i]})
    return out


def claims_table(claims: list[dict[str, Any]], paper: bool = True) -> str:
    """The claims as a Markdown table (``paper``: with the paper's values); the README quotes it."""
    body = [[c["model"], c.get("id") or c["claim"], c["setting"], c["statistic"], c.get("unit", "—"),
             c.get("effect_text") or interval_text(c["effect"]),
             c["n"] or "—", p_text(c), *([c["paper"]] if paper else []), c["verdict"]] for c in claims]
    return markdown(["model", "claim", "setting", "statistic", "unit", "effect [95 % CI]", "n", "p / Holm p (family size)",
                     *(["paper"] if paper else []), "verdict"], body)


def write(out: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``claims.json`` and ``claims.md`` under ``out`` for every model row."""
    claims = [c for r in rows for c in claims_rows(r)]
    write_atomic(out / "claims.json", json.dumps(claims, indent=1))
    write_atomic(out / "claims.md", "# Claims, decided as declared in suite/claims.yaml\n\n"
                 "Effect: the statistic with its 95 % Student's t interval over the unit named (clusters averaged first "
                 "where units nest; AUROC rows: class-stratified bootstrap). p: two-sided sign-flip permutation p "
                 "(AUROC: label permutation, or the stratified bootstrap inverted where rows nest), then Holm-adjusted "
                 "within the claim's family (its size in brackets; only rows with n ≥ their minimum are tested). "
                 "Verdicts: `reproduced` / `contradicted` (the paper's claims) and `supported` / `not supported` (our "
                 "conjectures) when the adjusted p ≤ 0.05; `equivalent to 0 within ±m` when the adjusted TOST p ≤ 0.05; "
                 "`insufficient n` below the declared minimum; else `inconclusive at n`. Claims with several parts hold "
                 "only if every part does (their p is the largest part's).\n\n" + claims_table(claims))
    if len({c["model"] for c in claims}) > 1:
        write_atomic(out / "replication.md", replication_page(claims))
    return claims


def replication_page(claims: list[dict[str, Any]]) -> str:
    """``replication.md``: each claim's verdict per model and whether they agree (:mod:`dynheads.suite.replication`)."""
    groups = summary(claims)
    said = "; ".join(f"{name}: {', '.join(ids) if ids else 'none'}" for name, ids in groups.items())
    return ("# Across the models: which claims replicate\n\n"
            "A claim replicates when every model's verdict is decided in the same direction, does not when decided "
            "verdicts differ, and stays undecided when any model's is open (insufficient n, inconclusive, not run).\n\n"
            f"{said}.\n\n" + replication_table(claims))
