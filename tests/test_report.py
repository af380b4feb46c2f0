"""The trace explorer (``python -m dynheads.report DIR``): its data is the trace's, its pages are self-contained, and a
real browser selects a token and marks where its retrieval heads looked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dynheads.models.engine import DynamicMask, TraceEngine, Unmasked
from dynheads.report.__main__ import main
from dynheads.report.explorer import build
from dynheads.report.explorer_data import document_data
from dynheads.traces import append_lines, generation_line, trace_path

from test_trace_engine import _copying_prompt
from tiny_models import tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def token_text(token: int) -> str:
    return "</script>" if token == 5 else f" t{token}"  # one token that would close the page's script if not escaped


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A trace_dir with one document decoded unmasked and with dynamic masking, on a prompt where Eq. 1 fires."""
    engine = TraceEngine(tiny_model("llama"))
    prompt, needle = _copying_prompt(engine)
    prompt = [5] + prompt
    needle = [i + 1 for i in needle]
    gens = engine.generate_many(prompt, 8, [Unmasked(), DynamicMask()], target=needle)
    lines = [generation_line("niah_uuid", 0, g, "", needle) for g in gens]
    folder = tmp_path_factory.mktemp("traces")
    append_lines(trace_path(folder, "niah_uuid"), lines)
    return folder, lines


def test_a_pages_data_is_the_traces(traced):
    _, lines = traced
    data = document_data(lines, token_text, num_layers=3, num_heads=4)
    assert data["prompt"] == [token_text(t) for t in lines[0]["input_ids"]] and data["needle"] == lines[0]["needle_token_indices"]
    assert [line["condition"] for line in data["lines"]] == ["none", "dynamic"]
    for shown, line in zip(data["lines"], lines):
        assert [s["heads"] for s in shown["steps"]] == [s["heads"] for s in line["steps"]]
        assert [s["attended"] for s in shown["steps"]] == [s["attended"] for s in line["steps"]]
        assert [s["text"] for s in shown["steps"]] == [token_text(s["token_id"]) for s in line["steps"]]
    assert any(s["heads"] for s in data["lines"][0]["steps"]), "no retrieval head fired: the page would show nothing"
    with pytest.raises(ValueError, match="do not share one prompt"):
        document_data([lines[0], {**lines[1], "input_ids": lines[1]["input_ids"][1:]}], token_text, 3, 4)


def test_pages_are_self_contained_and_carry_their_data(traced, tmp_path):
    folder, lines = traced
    pages = build(folder, tmp_path, token_text, 3, 4)
    assert len(pages) == 1 and (tmp_path / "index.html").is_file()
    text = pages[0].read_text()
    assert not re.search(r"https?://|\bsrc=|@import|fetch\(", text)  # nothing is fetched: opens offline from disk
    payload = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S).group(1)
    assert json.loads(payload) == document_data(lines, token_text, 3, 4)  # "</script>" in the data stayed escaped
    assert main([str(tmp_path / "missing")]) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium) to load the page")
def test_a_real_browser_selects_a_token_and_marks_where_its_heads_looked(traced, tmp_path):
    """Headless Chromium opens the page at a token with retrieval heads (#line=0&step=T): the step box lists the heads
    with their positions, exactly the attended prompt tokens are marked, and the console shows no error."""
    folder, lines = traced
    (page,) = build(folder, tmp_path, token_text, 3, 4)
    t = next(t for t, s in enumerate(lines[0]["steps"]) if s["heads"])
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", f"{page.as_uri()}#line=0&step={t}"], capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert "retrieval heads (" in dom and f"step {t}" in dom, dom[-2000:]
    marked = re.findall(r'<span class="tok[^"]*looked[^"]*" title="position (\d+)"', dom)
    assert sorted(set(map(int, marked))) == sorted(set(lines[0]["steps"][t]["attended"]))
    assert not re.search(r"Uncaught|SyntaxError|TypeError", done.stderr)


def planted_results(folder: Path) -> Path:
    """A results folder shaped as run_suite writes it: claims with each kind of verdict, a leaderboard, a model's
    tables, figure, provenance and timings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claims = [{"model": "m", "id": f"X{i}", "claim": "c", "setting": "s", "statistic": "st", "effect_text": "0.1 [0, 0.2]",
               "n": 12 if verdict != "not run" else None, "p": 0.01, "p_adjusted": 0.02, "family_size": 5,
               "verdict": verdict}
              for i, verdict in enumerate(("reproduced", "not supported", "equivalent to 0 within ±0.05",
                                           "inconclusive at n = 12", "not run"))]
    (folder / "claims.json").write_text(json.dumps(claims))
    (folder / "leaderboard.md").write_text("# board\n\n## NIAH\n\n| model | acc |\n|---|---:|\n| m | 0.5 |\n")
    (folder / "table1.md").write_text("| a | b |\n|---|---|\n| 1 | <script>x</script> |\n")
    model = folder / "m"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"model": "m", "revision": "main", "dtype": "float32", "seed": 0,
                                                  "trace_format": 6}))
    (model / "timings.json").write_text(json.dumps({"niah": 12.5}))
    (model / "kv.md").write_text("| x |\n|---|\n| 1 |\n")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(model / "kv_budget.png")
    plt.close(fig)
    return folder


def test_the_run_page_shows_claims_coloured_tables_figures_and_provenance(tmp_path):
    from dynheads.report.index_page import write_index

    text = write_index(planted_results(tmp_path)).read_text()
    classes = re.findall(r'<td class="(\w+)">([^<]+)</td>', text)
    assert classes == [("good", "reproduced"), ("bad", "not supported"), ("flat", "equivalent to 0 within ±0.05"),
                       ("grey", "inconclusive at n = 12"), ("grey", "not run")]
    assert text.count("<table>") >= 4 and "<script>x</script>" not in text  # tables rendered, their HTML escaped
    assert '<img src="m/kv_budget.png"' in text and "trace_format" in text and "niah 12.5" in text
    assert not re.search(r"https?://", text) and "python -m dynheads.report" in text
    # one h1 (the run's): the leaderboard's own title is the page's h2, its sections sit below it
    assert text.count("<h1>") == 1 and re.search(r"<h2>Leaderboard</h2>\s*<h3>NIAH</h3>", text)


def test_the_run_page_of_two_models_shows_which_claims_replicate(tmp_path):
    """One model: no replication section. Two: each claim once, both verdicts coloured, and what they say together."""
    from dynheads.report.index_page import write_index

    folder = planted_results(tmp_path)
    assert "which claims replicate" not in write_index(folder).read_text()
    claims = json.loads((folder / "claims.json").read_text())
    second = [dict(c, model="n", verdict=v) for c, v in zip(claims, ("reproduced", "supported", "equivalent to 0 "
                                                                     "within ±0.1", "reproduced", "not run"))]
    (folder / "claims.json").write_text(json.dumps(claims + second))
    text = write_index(folder).read_text()
    section = text[text.index("which claims replicate"):]
    rows = re.findall(r"<tr><td>(X\d)</td>.*?<td>([^<]+)</td></tr>", section)
    assert rows == [("X0", "replicates (reproduced on every model)"), ("X1", "does not replicate"),
                    ("X2", "replicates (equivalent to the null on every model)"), ("X3", "undecided: open on m"),
                    ("X4", "not run")]
    assert '<td class="good">supported</td>' in section and '<td class="bad">not supported</td>' in section


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium) to load the page")
def test_a_real_browser_loads_the_run_page_without_error(tmp_path):
    from dynheads.report.index_page import write_index

    page = write_index(planted_results(tmp_path))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "Claims and their verdicts" in done.stdout and 'class="good"' in done.stdout
    assert not re.search(r"Uncaught|SyntaxError|TypeError|Failed to load", done.stderr)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium) to load the page")
def test_the_explorer_benchmark_clicks_every_generated_token():
    """``python -m dynheads.report.bench`` measures what it says: its page is built by the real page code, and every
    generated token of every condition is clicked (a page whose script fails gives no measurement)."""
    from dynheads.report.bench import measure, worst_case_lines
    from dynheads.report.explorer import page

    lines = worst_case_lines(tokens=200, steps=10, conditions=3)
    data = document_data(lines, lambda t: f" w{t}", 30, 9)
    assert len(data["lines"]) == 3 and all(len(line["steps"]) == 10 for line in data["lines"])
    assert len(data["lines"][0]["steps"][0]["scores"]) == 30 and len(data["support"]) == 100
    clicks, _, per_click = measure(CHROMIUM, page(data, "bench"))
    assert clicks == 30 and per_click > 0
    with pytest.raises(RuntimeError, match="drew no generated token"):
        measure(CHROMIUM, page(data, "bench").replace("<script>", "<script>throw 1;", 1))
