"""``results/index.html``: one page for a run, readable offline from disk.

What it holds: the claims table with its verdicts coloured, the leaderboard, every table and figure the run wrote, each
model's provenance (model, versions, revision, dtype, seed, trace format, stage timings), and a link to the trace
explorer where one was built. Why an HTML page beside the Markdown: the run's product is 15 tables and a dozen figures
in two folders; one page shows them together and needs no viewer. The Markdown tables are rendered by markdown-it-py
(GitHub's table syntax); figures are linked relatively, so the page works wherever the folder is copied.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from ..suite.replication import replication_rows
from ..suite.tables import under_heading
from ..suite.verdicts import p_text
from ..util import write_atomic

VERDICT_CLASSES = (("reproduced", "good"), ("supported", "good"), ("contradicted", "bad"), ("not supported", "bad"),
                   ("equivalent", "flat"), ("insufficient", "grey"), ("inconclusive", "grey"), ("not run", "grey"))
STYLE = """body{font-family:system-ui,sans-serif;margin:1.2em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.4em 0}td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}
th{background:#f3f3f3}.good{background:#d8f3dc}.bad{background:#ffd6d6}.flat{background:#dbe9ff}.grey{color:#666}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
code{font-size:12px}"""


def verdict_class(verdict: str) -> str:
    """The colour class of a verdict (green: in the claim's direction, red: against it, blue: equivalent, grey: open)."""
    return next((cls for prefix, cls in VERDICT_CLASSES if verdict.startswith(prefix)), "grey")


def claims_table(claims: list[dict[str, Any]]) -> str:
    head = ["model", "claim", "setting", "statistic", "effect [95 % CI]", "n", "p / Holm p (family size)", "verdict"]
    rows = []
    for c in claims:
        p = p_text(c)
        cells = [c["model"], c.get("id") or c["claim"], c["setting"], c["statistic"], c.get("effect_text", "—"),
                 "—" if c.get("n") is None else c["n"], p]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells)
                    + f'<td class="{verdict_class(c["verdict"])}">{html.escape(c["verdict"])}</td></tr>')
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def replication_html(claims: list[dict[str, Any]]) -> str:
    """Each claim once, its verdict per model side by side (coloured as above) and what they say together
    (:mod:`dynheads.suite.replication`); empty for a run of one model."""
    models = list(dict.fromkeys(c["model"] for c in claims))
    if len(models) < 2:
        return ""
    rows = []
    for r in replication_rows(claims):
        cells = "".join(f'<td class="{verdict_class(r["verdicts"].get(m, "not run"))}">'
                        f'{html.escape(r["verdicts"].get(m, "—"))}</td>' for m in models)
        rows.append(f"<tr><td>{html.escape(r['id'])}</td><td>{html.escape(r['setting'])}</td>{cells}"
                    f"<td>{html.escape(r['across'])}</td></tr>")
    head = ["claim", "setting", *models, "across the models"]
    return ("<h2>Across the models: which claims replicate</h2><p>A claim replicates when every model's verdict is "
            "decided in the same direction; any open verdict leaves it undecided.</p><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def provenance(model_dir: Path) -> str:
    """What made one model's results: ``model.json`` (model, versions and, from this version on, revision, dtype,
    device, seed, trace format) and ``timings.json`` (seconds per stage)."""
    info = json.loads((model_dir / "model.json").read_text()) if (model_dir / "model.json").is_file() else {}
    timings = json.loads((model_dir / "timings.json").read_text()) if (model_dir / "timings.json").is_file() else {}
    rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in info.items()]
    if timings:
        rows.append(("seconds per stage", ", ".join(f"{k} {v:g}" for k, v in timings.items())))
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def index_html(results: Path) -> str:
    """The page of a results folder (see the module docstring)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # a table cell is text, never markup
    parts = [f"<h1>dynheads run: {html.escape(results.resolve().name)}</h1>"]
    claims = results / "claims.json"
    if claims.is_file():
        decided = json.loads(claims.read_text())
        parts.append(replication_html(decided) + "<h2>Claims and their verdicts</h2>" + claims_table(decided))
    if (results / "leaderboard.md").is_file():
        parts.append("<h2>Leaderboard</h2>" + md.render(under_heading((results / "leaderboard.md").read_text())))
    explorers = sorted(results.glob("explorer/index.html")) + sorted(results.glob("*/explorer/index.html"))
    if explorers:
        parts.append("<h2>Trace explorer</h2><ul>" + "".join(
            f'<li><a href="{html.escape(p.relative_to(results).as_posix())}">{html.escape(p.parent.parent.name)}: every '
            "traced document, token by token</a></li>" for p in explorers) + "</ul>")
    else:
        parts.append("<h2>Trace explorer</h2><p>Not built for this run: <code>python -m dynheads.report "
                     f"{html.escape(str(results))}</code> writes it (one page per traced document).</p>")
    tables = sorted(p for p in results.glob("*.md") if p.name not in ("leaderboard.md", "claims.md", "replication.md"))
    for model_dir in sorted(p.parent for p in results.glob("*/model.json")):
        tables += sorted(model_dir.glob("*.md"))
    parts.append("<h2>Tables</h2>" + "".join(
        f"<details><summary>{html.escape(str(p.relative_to(results)))}</summary>{md.render(p.read_text())}</details>"
        for p in tables))
    for model_dir in sorted(p.parent for p in results.glob("*/model.json")):
        figures = sorted(model_dir.glob("*.png"))
        parts.append(f"<h2>{html.escape(model_dir.name)}: provenance</h2>" + provenance(model_dir))
        parts.append(f"<h2>{html.escape(model_dir.name)}: figures</h2>" + "".join(
            f'<figure><img src="{html.escape(p.relative_to(results).as_posix())}" alt="{html.escape(p.stem)}">'
            f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in figures))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dynheads run</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_index(results: Path) -> Path:
    """Write ``results/index.html``; returns its path."""
    path = Path(results) / "index.html"
    write_atomic(path, index_html(Path(results)))
    return path
