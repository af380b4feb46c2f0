"""Cost of Section 5's in-context RAG against plain traced decoding, on the same HotpotQA examples, in one run.

Usage: ``python -m dynheads.suite.benchmarks.rag_cost [--n 4] [--repeats 2] [--probe PATH]``

For every example it times, best of ``--repeats`` interleaved repetitions:

1. **plain traced decoding**: the engine's unmasked greedy answer with every step's Eq. 2 scores read
   (what the ``hotpotqa`` stage runs), one prefill of the whole prompt;
2. **each paper strategy alone** (dynamic, static, dynamic random, fixed random, w/o RAG): its own
   context prefill and nothing shared, as five separate runs would cost;
3. **all five together** as the ``rag`` stage runs them: one context prefill, shared drafts and retrieval
   passes.

It asserts that (3) gives every strategy the same answer as (2), so sharing changes cost only, and
prints: each strategy ÷ plain traced decoding, and (3) ÷ the sum of (2) (below 1 = the shared prefill pays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

STRATEGIES = ("dynamic", "static", "dynamic_random", "fixed_random", "none")


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", default="smollm2")
    p.add_argument("--n", type=int, default=4, help="dev examples (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="repetitions per measurement; the fastest counts (default 2)")
    p.add_argument("--probe", default=None, help="HotpotQA probe for the dynamic strategy (default results/<model>/hotpotqa_probes.pt)")
    p.add_argument("--calib-examples", type=int, default=8, help="Eq. 2 calibration size of the static heads (quick profile: 8)")
    p.add_argument("--threshold", type=float, default=0.2, help="Eq. 2 threshold (quick profile: 0.2)")
    p.add_argument("--new-tokens", type=int, default=32, help="answer budget (the task's max_gen_toks)")
    args = p.parse_args(argv)

    from ...models.harness.lm import DynHeadsLM
    from ...models.harness.rag_requests import PROBE_COMMAND, answer_all
    from ...tasks.hotpotqa_sf.utils import docs_from_metadata
    from ...traces import REASONING
    from ..model import slug

    probe = Path(args.probe or f"results/{slug(args.pretrained)}/hotpotqa_probes.pt")
    if not probe.is_file():
        raise SystemExit(f"rag_bench: no HotpotQA probe at {probe}; make it with {PROBE_COMMAND} or pass --probe PATH")
    lm = DynHeadsLM(pretrained=args.pretrained, rag="+".join(STRATEGIES), probe=str(probe), calib_examples=args.calib_examples,
                    reasoning_threshold=args.threshold)
    lm.static(REASONING)  # calibrated (or read from the cache) before any timing
    eos = lm.eos_ids()
    docs = docs_from_metadata(n=args.n, tokenizer=lm.tokenizer)
    rows = []
    for doc in docs:
        prompt = lm.encoder.encode(doc["input"], doc, with_context=True)
        ids, support, context = prompt.ids, prompt.support, prompt.context
        key = doc["id"]

        def together(strategies: tuple[str, ...] = STRATEGIES) -> list[list[int]]:
            lm.configure(rag="+".join(strategies))
            return [a.token_ids for a in answer_all(lm, ids, context, support, args.new_tokens, eos, None, key)[1]]

        plain_s, _ = _best(lambda: lm.engine.generate(ids, args.new_tokens, target=support, score=lm.settings.reasoning,
                                                      eos_token_ids=eos), args.repeats)
        alone = {s: _best(lambda s=s: together((s,))[0], args.repeats) for s in STRATEGIES}
        shared_s, shared = _best(together, args.repeats)
        for s, answer in zip(STRATEGIES, shared):
            assert answer == alone[s][1], f"sharing changed the {s} answer of {key}"  # the bench measures cost only
        rows.append({"id": key, "context_tokens": len(context), "plain_traced_s": plain_s, "shared_s": shared_s,
                     **{f"{s}_s": alone[s][0] for s in STRATEGIES}})
        print(json.dumps(rows[-1]))
    plain = statistics.fmean(r["plain_traced_s"] for r in rows)
    summary = {f"{s} / plain traced": statistics.fmean(r[f"{s}_s"] for r in rows) / plain for s in STRATEGIES}
    separate = statistics.fmean(sum(r[f"{s}_s"] for s in STRATEGIES) for r in rows)
    summary["five strategies shared / five separate runs"] = statistics.fmean(r["shared_s"] for r in rows) / separate
    summary["five strategies shared / plain traced"] = statistics.fmean(r["shared_s"] for r in rows) / plain
    print(f"\n{len(rows)} examples, best of {args.repeats}; plain traced decoding {plain:.2f} s per example")
    for name, value in summary.items():
        print(f"{name:45s} {value:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
