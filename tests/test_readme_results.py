"""The results page's blocks and the README's claims table are what the snapshots of the runs they name render
(no retyped numbers), and every link of the front door and the docs pages resolves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dynheads.suite.readme import claims_block, main, quoted, rendered, update

ROOT = Path(__file__).resolve().parent.parent


def test_each_result_block_is_its_runs_snapshot():
    page = (ROOT / "docs" / "results.md").read_text()
    blocks = re.findall(r"<!-- results:(\w+) -->", page)
    assert {"quick", "power"} <= set(blocks)
    for block in blocks:
        folder = ROOT / "docs" / "results" / block
        assert quoted(page, block) == rendered(folder), f"docs/results.md block {block!r} differs from docs/results/{block}"
        claims = json.loads((folder / "claims.json").read_text())
        assert {c["claim"] for c in claims} >= {"1 dynamism", "2 irreplaceability", "3 predictability", "4 dynamic RAG"}
    readme = (ROOT / "README.md").read_text()
    assert quoted(readme, "claims") == claims_block(ROOT / "docs" / "results" / "quick", "docs/results.md")


def test_the_readme_is_a_front_door_and_every_relative_link_resolves():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert not re.search(r"\bissues? \d", readme)  # development history lives in docs/history.md
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if not link.startswith(("http://", "https://", "mailto:")):
                assert (doc.parent / link).exists(), f"{doc.name}: {link}"


def _run(folder: Path, verdict: str) -> Path:
    (folder / "m").mkdir(parents=True)
    (folder / "m" / "model.json").write_text(json.dumps({"versions": {"torch": "9.9.1", "numpy": "8.1"}}))
    (folder / "m" / "timings.json").write_text(json.dumps({"load": 2.0, "niah": 58.0}))
    (folder / "m" / "niah_masking.md").write_text("# masking\n")
    claims = [{"model": "m", "id": "C1-NIAH", "claim": "1 dynamism", "setting": "NIAH", "statistic": "s", "n": 3, "paper": "p",
               "unit": "document", "effect": {"estimate": 0.5, "low": 0.4, "high": 0.6, "n": 3, "level": 0.95},
               "p": 0.01, "p_adjusted": 0.02, "family_size": 2, "verdict": verdict}]
    (folder / "claims.json").write_text(json.dumps(claims))
    (folder / "leaderboard.json").write_text("[]")
    (folder / "leaderboard.md").write_text("# dynheads leaderboard\n\n## NIAH\n\n| model |\n|---|\n| m |\n")
    (folder / "table1.md").write_text("# Table 1\n")
    return folder


def test_update_rewrites_only_its_block_and_snapshots_the_run(tmp_path, capsys):
    results = _run(tmp_path / "results", "reproduced")
    (tmp_path / "docs").mkdir()
    page, readme = tmp_path / "docs" / "results.md", tmp_path / "README.md"
    page.write_text("intro\n<!-- results:quick -->\nold table\n<!-- /results:quick -->\noutro\n")
    readme.write_text("front\n<!-- results:claims -->\n<!-- /results:claims -->\ndoor\n")
    update(page, results, "quick", readme)
    text = page.read_text()
    assert "old table" not in text and "| m | C1-NIAH | NIAH | s | document | 0.500 [0.400, 0.600] | 3 | 0.01 / 0.02 (of 2) | reproduced |" in text
    assert "load 2, niah 58; sum 1.0 min" in text and "### NIAH" in text
    assert "Package versions (m): torch 9.9.1, numpy 8.1." in text  # what the run recorded, in the block
    # links relative to the page's folder, so they resolve where the page is read
    assert "[table1](results/quick/table1.md)" in text and "[niah_masking](results/quick/m/niah_masking.md)" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
    snap = tmp_path / "docs" / "results" / "quick"
    assert json.loads((snap / "claims.json").read_text())[0]["verdict"] == "reproduced"
    door = readme.read_text()  # the front door's claims table, with the way to the rest
    assert "| C1-NIAH |" in door and "[docs/results.md](docs/results.md)" in door and door.endswith("door\n")
    # a later run replaces the snapshot, the block and the front door's table together
    update(page, _run(tmp_path / "again", "contradicted"), "quick", readme)
    assert "| contradicted |" in page.read_text() and quoted(page.read_text(), "quick") == rendered(snap)
    assert quoted(readme.read_text(), "claims") == claims_block(snap, "docs/results.md")
    assert main(["--results", str(results), "--block", "power", "--page", str(page), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "results:power" in err and err.count("\n") == 1
    assert main(["--results", str(tmp_path), "--block", "quick", "--page", str(page), "--readme", str(readme)]) == 2
    assert "no claims.json" in capsys.readouterr().err


def test_the_power_block_compares_planned_and_measured_half_widths(tmp_path):
    from dynheads.suite.readme import width_table

    def claim(n: int, low: float, high: float, statistic: str) -> dict:
        return {"model": "m", "id": "C3-NIAH", "claim": "3 predictability", "setting": "NIAH", "statistic": statistic, "n": n,
                "effect": {"estimate": (low + high) / 2, "low": low, "high": high, "n": n}, "verdict": "v"}

    table = width_table([claim(16, 0.0, 0.4, "probe − prior")], [claim(64, 0.1, 0.2, "probe − previous step")])
    assert "| m | C3-NIAH | NIAH | 16 | 0.200 | 64 | 0.100 | 0.050 |" in table
    quick = _run(tmp_path / "quick", "reproduced")
    readme = tmp_path / "results.md"
    readme.write_text("<!-- results:quick -->\n<!-- /results:quick -->\n<!-- results:power -->\n<!-- /results:power -->\n")
    update(readme, quick, "quick")
    update(readme, _run(tmp_path / "power", "reproduced"), "power")
    assert quoted(readme.read_text(), "power").count("predicted from the quick run") == 1
    assert "predicted from the quick run" not in quoted(readme.read_text(), "quick")
    # a power run decided by the earlier rules (claims without ids) is labelled, and its widths are not compared
    older = _run(tmp_path / "older", "reproduced")
    rows = json.loads((older / "claims.json").read_text())
    (older / "claims.json").write_text(json.dumps([{k: v for k, v in c.items() if k != "id"} for c in rows]))
    update(readme, older, "power")
    block = quoted(readme.read_text(), "power")
    assert "Decided by the earlier rules" in block and "predicted from the quick run" not in block
