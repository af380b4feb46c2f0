"""Check trace files against an independent full eager-attention recomputation.

Usage: ``python -m dynheads.models.verify [--pretrained smollm2] TRACE.jsonl [...]``

Why: the trace engine reads attention from a custom sdpa wrapper at each cached decode step; this
check recomputes every step from scratch with transformers' own eager attention
(``output_attentions=True``) on the full sequence (prompt + emitted tokens). By causality, row
``p`` of that single forward is exactly what the query at position ``p`` saw, so one forward per
trace line gives every step. A step agrees when its recorded Eq. 1 head set equals the recomputed one.
Memory is layers × heads × n² floats per line: use it on traces of moderate length.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ..metrics.retrieval import copy_paste_heads
from .loading import load_model


def recompute_heads(model: torch.nn.Module, record: dict[str, Any]) -> list[list[tuple[int, int]]]:
    """Eq. 1 head sets of every step of one trace record, from one eager forward."""
    prompt = record["input_ids"]
    emitted = [s["token_id"] for s in record["steps"]]
    # The last emitted token is never fed back, so the sequence stops before it.
    sequence = prompt + emitted[:-1]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([sequence], device=model.device), output_attentions=True, use_cache=False)
    heads = []
    for t, token in enumerate(emitted):  # mask=none traces only: the emitted token is the ungated one
        pos = len(prompt) - 1 + t
        rows = [a[0, :, pos, : pos + 1].float() for a in out.attentions]
        heads.append(copy_paste_heads(rows, sequence[: pos + 1], record["needle_token_indices"], token))
    return heads


def verify_records(model: torch.nn.Module, records: list[dict[str, Any]]) -> dict[str, Any]:
    steps = agree = 0
    for record in records:
        if record.get("mask", "none") != "none":
            raise ValueError("dynheads verify: only mask=none traces can be recomputed (masked steps change the prefix's meaning)")
        for got, expected in zip((s["heads"] for s in record["steps"]), recompute_heads(model, record)):
            steps += 1
            agree += sorted(map(tuple, got)) == expected
    return {"lines": len(records), "steps": steps, "agreeing_steps": agree, "agreement": agree / steps if steps else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+")
    parser.add_argument("--pretrained", default=None)
    args = parser.parse_args(argv)
    model = load_model(args.pretrained)
    model.set_attn_implementation("eager")
    records = [json.loads(line) for path in args.traces for line in Path(path).read_text().splitlines() if line.strip()]
    plain = [r for r in records if r.get("mask", "none") == "none"]  # masked conditions cannot be recomputed
    result = {**verify_records(model, plain), "skipped_masked_lines": len(records) - len(plain)}
    print(json.dumps(result))
    return 0 if result["agreement"] is not None and result["agreement"] >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
