"""Keep the results page and the README's claims table generated from the run they name, never retyped.

    python -m dynheads.suite.readme --results results --block quick [--page docs/results.md] [--readme README.md]

copies the run's tables (``claims.json``, ``leaderboard.*``, every ``*.md`` table, each model's masking tables
and stage timings) to ``docs/results/<block>/`` (the page's path without its suffix), and rewrites the page's
block between ``<!-- results:<block> -->`` and ``<!-- /results:<block> -->`` from that snapshot: the stage
timings, the claims table and the leaderboard, with links to the full tables. The quick block also rewrites
the README's ``<!-- results:claims -->`` block: the front door's claims table. ``tests/test_readme_results.py``
checks that each block is what its snapshot renders, so a number in a result block cannot drift from its run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from ..util import write_atomic
from .claims import claims_table
from .replication import replication_table
from .tables import markdown, under_heading

# per model folder: the tables the README links to beside the top-level ones, and the stage timings
MODEL_FILES = ("niah_masking.md", "hotpotqa_masking.md", "timings.json", "model.json")


def block_pattern(block: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- results:{re.escape(block)} -->\n)(.*?)(<!-- /results:{re.escape(block)} -->)", re.S)


def snapshot(results: Path, folder: Path) -> None:
    """Copy what the README quotes and links from a results folder (replacing an earlier snapshot)."""
    if not (results / "claims.json").is_file():
        raise ValueError(f"dynheads: {results} has no claims.json; give the results folder of a finished run_suite.py run")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in sorted(results.glob("*.md")) + [results / "claims.json", results / "leaderboard.json"]:
        shutil.copyfile(path, folder / path.name)
    for model in sorted(p for p in results.iterdir() if (p / "model.json").is_file()):
        for name in MODEL_FILES:
            if (model / name).is_file():
                (folder / model.name).mkdir(exist_ok=True)
                shutil.copyfile(model / name, folder / model.name / name)


def timing_line(folder: Path) -> str:
    """Seconds per stage of each model, as ``timings.json`` recorded them (cached stages keep the seconds of the
    run that computed them)."""
    lines = []
    for path in sorted(folder.glob("*/timings.json")):
        seconds = json.loads(path.read_text())
        stages = ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        lines.append(f"Seconds per stage ({path.parent.name}, as computed): {stages}; sum {sum(seconds.values()) / 60:.1f} min.")
    return "\n".join(lines)


def versions_line(folder: Path) -> str:
    """The package versions each model's run recorded (``model.json``), so a reader can reproduce the block."""
    lines = []
    for model in sorted({p.parent for p in folder.glob("*/timings.json")} | {p.parent for p in folder.glob("*/model.json")}):
        path = model / "model.json"
        versions = json.loads(path.read_text()).get("versions") if path.is_file() else None
        named = ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "not recorded (a run older than the lock file)"
        lines.append(f"Package versions ({model.name}): {named}.")
    return "\n".join(lines)


def rendered(folder: Path) -> str:
    """The results page's block of one snapshot (``<page>/<block>``, linked relative to the page's folder):
    timings, the claims table (without the paper column: the text gives it), the leaderboard's sections, and
    links to every table."""
    claims = json.loads((folder / "claims.json").read_text())
    board = under_heading((folder / "leaderboard.md").read_text())
    relative = f"{folder.parent.name}/{folder.name}"
    links = ", ".join(f"[{p.stem}]({relative}/{p.relative_to(folder).as_posix()})"
                      for p in sorted(folder.rglob("*.md")) if p.name not in ("leaderboard.md", "claims.md"))
    reference = folder.parent / "quick" / "claims.json"
    planned = json.loads(reference.read_text()) if folder.name != "quick" and reference.is_file() else None
    # half-widths compare only under one rule: the declared claims changed the statistics and the intervals
    same_rule = planned is not None and {"id" in c for c in planned} == {"id" in c for c in claims}
    widths = [] if not same_rule else [
        "### Interval half-widths: predicted from the quick run, measured here", "",
        width_table(planned, claims)]
    earlier = [] if all("id" in c for c in claims) else [
        "**Decided by the earlier rules** (a 95 % percentile-bootstrap interval wholly on one side of 0; no minimum n, "
        "no multiplicity control, Claim 1 as 1 − adjacent Jaccard > 0): this run predates suite/claims.yaml. Read its "
        "verdicts as provisional until the power profile is rerun with the declared claims.", ""]
    return "\n".join([timing_line(folder), versions_line(folder), "", "### Claims", "", *earlier,
                      claims_table(claims, paper=False), *widths,
                      board.rstrip("\n"), "", f"Every table of this run: {links}.", ""])


def _keyed(claims: list[dict]) -> dict[tuple, dict]:
    """Claims by (model, claim, task, rank within those): Claim 3's statistic names its hardest baseline, which
    may differ between runs, so the statistic text cannot be the key."""
    from collections import Counter

    seen: Counter[tuple] = Counter()
    out: dict[tuple, dict] = {}
    for c in claims:
        group = (c["model"], c["claim"], c["setting"])
        out[(*group, seen[group])] = c
        seen[group] += 1
    return out


def width_table(reference: list[dict], claims: list[dict]) -> str:
    """Planned against measured precision: each claim's 95 % interval half-width in the reference run (the quick
    profile), what it predicts at this run's n (half-widths shrink as 1 / sqrt(n) for a mean over independent
    units), and the half-width this run measured. Rows are named by claim id where the claims are declared (the two
    C2 rows of one task share claim and setting)."""
    import math

    planned = _keyed(reference)
    rows = []
    for key, c in _keyed(claims).items():
        r = planned.get(key)
        if not (r and r["effect"] and c["effect"]):
            continue
        half = (r["effect"]["high"] - r["effect"]["low"]) / 2
        rows.append([c["model"], c.get("id", c["claim"]), c["setting"], r["n"], half, c["n"], half * math.sqrt(r["n"] / c["n"]),
                     (c["effect"]["high"] - c["effect"]["low"]) / 2])
    return markdown(["model", "claim", "setting", "n (quick)", "half-width (quick)", "n (this run)",
                     "half-width predicted", "half-width measured"], rows)


def quoted(readme: str, block: str) -> str | None:
    """The README's current block ``block`` (None when the markers are missing)."""
    match = block_pattern(block).search(readme)
    return match.group(2) if match else None


def claims_block(folder: Path, page: str) -> str:
    """The README's front-door block: the claims table of snapshot ``folder`` and where the rest is."""
    claims = json.loads((folder / "claims.json").read_text())
    across = []
    if len({c["model"] for c in claims}) > 1:  # several models: which claims replicate (suite/replication.py)
        across = ["Across the models: a claim replicates when every model's verdict is decided in the same direction, "
                  "does not when decided verdicts differ, and stays undecided when any model's is open.", "",
                  replication_table(claims), ""]
    return "\n".join([claims_table(claims, paper=False), "", *across,
                      f"Timings, package versions, the leaderboard and every table of this run: [{page}]({page}).", ""])


def _marked(path: Path, block: str) -> str:
    """``path``'s text, which must hold block ``block`` (one clear error naming the fix otherwise)."""
    text = path.read_text(encoding="utf-8")
    if quoted(text, block) is None:
        raise ValueError(f"dynheads: {path} has no '<!-- results:{block} -->' ... '<!-- /results:{block} -->' "
                         "block; add the two marker lines where the results should go")
    return text


def _rewrite(path: Path, block: str, body: str) -> None:
    text = _marked(path, block)
    write_atomic(path, block_pattern(block).sub(lambda m: m.group(1) + body + m.group(3), text))


def update(page: Path, results: Path, block: str, readme: Path | None = None) -> None:
    """Snapshot ``results`` into ``<page without suffix>/<block>/`` and rewrite the page's block ``block`` from it;
    for the quick block, also the README's claims block (``readme``, when given)."""
    _marked(page, block)  # before anything is copied
    folder = page.with_suffix("") / block
    snapshot(results, folder)
    _rewrite(page, block, rendered(folder))
    if readme is not None and block == "quick":
        _rewrite(readme, "claims", claims_block(folder, Path(os.path.relpath(page, readme.parent)).as_posix()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, help="a finished run's results folder (run_suite.py --out)")
    p.add_argument("--block", required=True, help="the results page's block to rewrite, e.g. quick or power")
    p.add_argument("--page", default="docs/results.md", help="the results page (default: %(default)s)")
    p.add_argument("--readme", default="README.md", help="whose claims block the quick run rewrites (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        update(Path(args.page), Path(args.results), args.block, Path(args.readme))
    except (OSError, ValueError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
