"""``python -m dynheads.report.bench``: is an explorer page responsive at the size issue 35 names?

Builds the worst case a run can write (by default a 2,000-token prompt, 4 conditions x 60 steps, 30 x 9 = 270 heads
with an Eq. 2 score each per step and 4 retrieval heads with their attended positions) through the real page code
(:func:`~dynheads.report.explorer_data.document_data`, :func:`~dynheads.report.explorer.page`), opens it in headless
Chromium, clicks every generated token in turn and prints the page's load time and the mean time per click (each
click redraws the step box, the marked prompt positions and the step x head grid). Why a browser and not a timed
test: responsiveness is the browser's work, and timings belong in a benchmark, not in a test's pass/fail.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .explorer import page
from .explorer_data import document_data

# appended to the page: click every generated token, then write what was measured into the DOM
CLICK_PROBE = """<script>
(function () {
  const spans = [...document.querySelectorAll('.gen .tok')];
  const loaded = performance.now();
  spans.forEach(s => s.click());
  const each = (performance.now() - loaded) / Math.max(spans.length, 1);
  document.body.setAttribute('data-bench', spans.length + ' ' + loaded.toFixed(1) + ' ' + each.toFixed(3));
})();
</script>"""


def worst_case_lines(tokens: int = 2000, steps: int = 60, layers: int = 30, heads: int = 9, conditions: int = 4,
                     seed: int = 0) -> list[dict[str, Any]]:
    """Trace lines of one document at the given size: every step has an Eq. 2 score per head and 4 retrieval heads
    (with attended prompt positions); supporting facts cover 100 prompt tokens."""
    rng = random.Random(seed)
    prompt = list(range(tokens))
    units = [[layer, head] for layer in range(layers) for head in range(heads)]
    names = ["none", "dynamic", "static", "random"] + [f"random-{i}" for i in range(max(conditions - 4, 0))]

    def step() -> dict[str, Any]:
        found = sorted(rng.sample(units, 4))
        return {"token_id": rng.randrange(tokens), "heads": found, "attended": [rng.randrange(tokens) for _ in found],
                "scores": [[round(rng.random(), 3) for _ in range(heads)] for _ in range(layers)]}

    return [{"task": "hotpotqa_sf", "doc_id": 0, "input_ids": prompt, "condition": name, "response": "",
             "support_token_indices": list(range(tokens // 4, tokens // 4 + 100)), "reasoning": {"threshold": 0.2},
             "steps": [step() for _ in range(steps)]} for name in names[:conditions]]


def measure(chromium: str, html: str) -> tuple[int, float, float]:
    """(clicks made, ms until the page's script had run, mean ms per click) for one page in headless Chromium."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.html"
        path.write_text(html.replace("</body>", CLICK_PROBE + "</body>"), encoding="utf-8")
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                             capture_output=True, text=True, timeout=300).stdout
    found = re.search(r'data-bench="(\d+) ([\d.]+) ([\d.]+)"', dom)
    if found is None or int(found.group(1)) == 0:
        raise RuntimeError("dynheads: the page drew no generated token to click (a script error on the page?)")
    return int(found.group(1)), float(found.group(2)), float(found.group(3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynheads.report.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=2000, help="prompt tokens (default 2000)")
    p.add_argument("--steps", type=int, default=60, help="generated tokens per condition (default 60)")
    p.add_argument("--conditions", type=int, default=4, help="conditions side by side (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="page loads; the best is reported (default 3)")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("dynheads: no chromium on this machine; install it (apt-get install chromium) to run this benchmark",
              file=sys.stderr)
        return 2
    lines = worst_case_lines(args.tokens, args.steps, conditions=args.conditions)
    html = page(document_data(lines, lambda t: f" w{t}", 30, 9), "explorer benchmark")
    runs = [measure(chromium, html) for _ in range(args.repeats)]
    clicks = args.conditions * args.steps
    assert all(n == clicks for n, _, _ in runs), f"expected {clicks} clicks (every generated token), got {runs}"
    load, per_click = min(r[1] for r in runs), min(r[2] for r in runs)
    print(f"explorer page: {args.tokens} prompt tokens, {args.conditions} conditions x {args.steps} steps x 270 heads, "
          f"{len(html) / 1e6:.2f} MB; script done {load:.0f} ms after navigation start; "
          f"{per_click:.1f} ms per token click (best of {args.repeats}, {clicks} clicks each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
