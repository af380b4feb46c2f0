"""Which claims replicate across the models of one run: per claim id, each model's verdict and what they say together.

Why a rule and not prose: the README's reading across architectures must say nothing the verdicts do not. Two decided
verdicts in the same direction replicate; decided verdicts in different directions do not; any model whose verdict is
open (insufficient n, inconclusive, not run) leaves the claim undecided across models, and the row names it.
"""

from __future__ import annotations

from typing import Any, Sequence

from .tables import markdown
from .verdicts import WORDS

FOR = {words[0] for words in WORDS.values()}  # reproduced, supported
AGAINST = {words[1] for words in WORDS.values()}  # contradicted, not supported


def direction(verdict: str) -> str:
    """``for``, ``against``, ``equivalent`` (a decided null) or ``open``."""
    if verdict in FOR:
        return "for"
    if verdict in AGAINST:
        return "against"
    return "equivalent" if verdict.startswith("equivalent") else "open"


def across(verdicts: dict[str, str]) -> str:
    """What the models' verdicts of one claim say together (``verdicts``: model -> verdict)."""
    if len(verdicts) < 2:
        return "one model only"
    if all(v == "not run" for v in verdicts.values()):
        return "not run"
    open_on = [model for model, v in verdicts.items() if direction(v) == "open"]
    if open_on:
        return "undecided: open on " + ", ".join(open_on)
    kinds = {direction(v) for v in verdicts.values()}
    if len(kinds) == 1:
        return "replicates (" + next(iter(verdicts.values())) + " on every model)" if kinds != {"equivalent"} else \
            "replicates (equivalent to the null on every model)"
    return "does not replicate"


def replication_rows(claims: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per claim id (in the claims' order): ``{"id", "setting", "verdicts": {model: verdict}, "across"}``."""
    rows: dict[str, dict[str, Any]] = {}
    for c in claims:
        key = c.get("id") or c["claim"]
        row = rows.setdefault(key, {"id": key, "setting": c["setting"], "verdicts": {}})
        row["verdicts"][c["model"]] = c["verdict"]
    for row in rows.values():
        row["across"] = across(row["verdicts"])
    return list(rows.values())


def replication_table(claims: Sequence[dict[str, Any]]) -> str:
    """The rows as Markdown: claim, setting, one verdict column per model, and what they say together."""
    models = list(dict.fromkeys(c["model"] for c in claims))
    rows = replication_rows(claims)
    body = [[r["id"], r["setting"], *(r["verdicts"].get(m, "—") for m in models), r["across"]] for r in rows]
    return markdown(["claim", "setting", *models, "across the models"], body)


def summary(claims: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Claim ids by outcome across the models: ``replicates``, ``does not replicate``, ``undecided``."""
    out: dict[str, list[str]] = {"replicates": [], "does not replicate": [], "undecided": []}
    for r in replication_rows(claims):
        key = next((k for k in out if r["across"].startswith(k)), None)
        if key is not None:
            out[key].append(r["id"])
    return out
