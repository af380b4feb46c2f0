"""The README's claims table is the one generated from the result file of the run it names (no retyped numbers)."""

from __future__ import annotations

import json
from pathlib import Path

from dynheads.suite.readme import main, quoted, rendered, update

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_quotes_the_quick_runs_claims_file():
    claims = json.loads((ROOT / "docs" / "results" / "quick" / "claims.json").read_text())
    assert quoted((ROOT / "README.md").read_text(), "quick") == rendered(claims)
    assert {c["claim"] for c in claims} >= {"1 dynamism", "2 irreplaceability", "3 predictability", "4 dynamic RAG"}


def test_update_rewrites_only_its_block_and_snapshots_the_file(tmp_path, capsys):
    claims = [{"model": "m", "claim": "1 dynamism", "task": "NIAH", "statistic": "s", "n": 3, "paper": "p",
               "effect": {"estimate": 0.5, "low": 0.4, "high": 0.6, "n": 3, "level": 0.95}, "verdict": "reproduced"}]
    source = tmp_path / "claims.json"
    source.write_text(json.dumps(claims))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- claims:quick -->\nold table\n<!-- /claims:quick -->\noutro\n")
    update(readme, source, "quick")
    text = readme.read_text()
    assert "old table" not in text and "| m | 1 dynamism | NIAH | s | 0.500 [0.400, 0.600] | 3 | reproduced |" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert json.loads((tmp_path / "docs" / "results" / "quick" / "claims.json").read_text()) == claims
    assert main(["--claims", str(source), "--block", "power", "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "claims:power" in err and err.count("\n") == 1
