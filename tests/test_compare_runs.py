"""compare_runs: tables and traces of two result folders, matched by cell and by (document, condition)."""

from __future__ import annotations

import json

from dynheads.suite.compare_runs import compare_traces, differing_tables, main


def _folder(root, second_token):
    cell = root / "smollm2" / "niah" / "cells" / "abc.traces"
    cell.mkdir(parents=True)
    lines = [{"doc_id": 0, "condition": "none", "steps": [{"token_id": 5, "heads": [[1, 2]]}, {"token_id": second_token, "heads": []}]},
             {"doc_id": 0, "condition": "dynamic", "steps": [{"token_id": 5, "heads": [[1, 2]], "gated": [[1, 2]]}]}]
    (cell / "niah_uuid.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "table4.md").write_text(f"| x | {second_token} |\n")
    (root / "leaderboard.csv").write_text("a,b\n")
    return root


def test_identical_and_differing_steps_and_tables(tmp_path, capsys):
    a, b = _folder(tmp_path / "a", 7), _folder(tmp_path / "b", 8)
    counts = compare_traces(a, b)["niah"]
    assert counts["lines"] == 2 and counts["lines_same_tokens"] == 1
    assert counts["steps"] == 3 and counts["steps_identical"] == 2
    assert differing_tables(a, b) == (["leaderboard.csv"], ["table4.md"])
    assert main([str(a), str(a)]) == 0 and "| all | 2 | 2 | 3 | 3 | 1.0000 |" in capsys.readouterr().out
    assert main([str(a), str(tmp_path / "nowhere")]) == 2
