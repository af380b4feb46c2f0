"""Keep the README's result tables generated from the result files of the run they name, never retyped.

    python -m dynheads.suite.readme --claims results/claims.json --block quick [--readme README.md]

rewrites the README block between ``<!-- claims:quick -->`` and ``<!-- /claims:quick -->`` from
``claims.json`` and stores that file as ``docs/results/<block>/claims.json`` beside the README, so that
``tests/test_readme_results.py`` can check the block against the file it was made from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..models.files import write_atomic
from .claims import claims_table


def block_pattern(block: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- claims:{re.escape(block)} -->\n)(.*?)(<!-- /claims:{re.escape(block)} -->)", re.S)


def rendered(claims: list[dict]) -> str:
    """What the README shows for a claims file: the table without the paper column (the text gives it)."""
    return claims_table(claims, paper=False) + "\n"


def quoted(readme: str, block: str) -> str | None:
    """The README's current block ``block`` (None when the markers are missing)."""
    match = block_pattern(block).search(readme)
    return match.group(2) if match else None


def update(readme_path: Path, claims_path: Path, block: str) -> None:
    """Rewrite block ``block`` of the README from ``claims_path`` and snapshot the file next to the README."""
    readme = readme_path.read_text(encoding="utf-8")
    if quoted(readme, block) is None:
        raise ValueError(f"dynheads: {readme_path} has no '<!-- claims:{block} -->' ... '<!-- /claims:{block} -->' "
                         "block; add the two marker lines where the table should go")
    claims = json.loads(claims_path.read_text(encoding="utf-8"))
    text = block_pattern(block).sub(lambda m: m.group(1) + rendered(claims) + m.group(3), readme)
    snapshot = readme_path.parent / "docs" / "results" / block / "claims.json"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(snapshot, json.dumps(claims, indent=1) + "\n")
    write_atomic(readme_path, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--claims", required=True, help="a run's results/claims.json")
    p.add_argument("--block", required=True, help="the README block to rewrite, e.g. quick")
    p.add_argument("--readme", default="README.md", help="(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        update(Path(args.readme), Path(args.claims), args.block)
    except (OSError, ValueError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
