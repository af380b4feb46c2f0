"""Benchmark of the trace engine on a NIAH prompt: cost of tracing and gating relative to plain Hugging Face ``generate``, in one run.

Usage: ``dynheads-bench [--pretrained smollm2] [--length 1000] [--new-tokens 32] [--memory-length 4096]``
(or ``python -m dynheads.tasks.niah_uuid.benchmark``).

Prints three ratios, each measured in this process on this machine against the same prompt:

1. traced decoding (Eq. 1 heads read at every step) ÷ plain ``model.generate``  (target ≤ 1.15)
2. gated decoding (``mask=dynamic``: ungated pass, gate, re-run) ÷ plain decoding  (target ≤ 2.1)
3. peak memory of traced ÷ plain decoding at a long context (target ≤ 1.2), each measured in
   ``--memory-repeats`` fresh subprocesses as the peak above the memory held after loading the model
   (RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU); the lowest peak of each counts.

Besides (2), two gating costs are timed: ``mask=static`` with one head gated (a single gated pass per
step) and gating's worst case, every step re-run (an engine that reports a retrieval head at every
step, so ``mask=dynamic`` runs the ungated pass, ``crop(-1)`` and the gated re-run at all steps; the
benchmark asserts that it did).

Decoding is forced to exactly ``--new-tokens`` steps (no EOS stop) so all variants do equal work;
times are the best of ``--repeats`` interleaved repetitions. Ratios are given end to end
(prefill included, as a user sees them) and decode-only (prefill subtracted, the per-step overhead).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

import torch

from dynheads.metrics.retrieval import span_token_indices
from dynheads.models.engine import TraceEngine
from dynheads.models.loading import load_model, load_tokenizer
from dynheads.tasks.niah_uuid.haystack import build_docs


def needle_prompt(tokenizer: Any, length: int) -> tuple[list[int], list[int]]:
    """A NIAH prompt of about ``length`` context tokens (needle at depth 0.5) and its needle token indices."""
    doc = build_docs(tokenizer, [length], [0.5], runs=1, seed=12345)[0]
    enc = tokenizer(doc["input"], add_special_tokens=False, return_offsets_mapping=True)
    start, end = doc["needle_char_span"]
    return enc["input_ids"], span_token_indices(enc["offset_mapping"], start, end)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _RerunEveryStep(TraceEngine):
    """The engine with head (0, 0) added to every step's detected heads, so ``mask=dynamic`` re-runs every
    step: ungated pass, ``crop(-1)``, gated re-run. That is gating's worst case, whatever the prompt."""

    def _detect(self, rows, seq, target, first, token, scoring, need_strength=False):
        hit, peak = super()._detect(rows, seq, target, first, token, scoring, need_strength)
        hit = hit.clone()
        hit[:, 0, 0] = True
        return hit, peak


def _variants(model: torch.nn.Module, engine: TraceEngine, ids: list[int], needle: list[int]):
    """name -> fn(new_tokens) for the decoders compared, on the same prompt."""
    tensor = torch.tensor([ids], device=engine.device)
    engine_name = model.config._attn_implementation
    rerun = _RerunEveryStep(model)

    def plain_generate(new_tokens: int) -> None:
        model.set_attn_implementation("sdpa")
        try:
            model.generate(tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        finally:
            model.set_attn_implementation(engine_name)

    return {
        "plain": plain_generate,
        "traced": lambda new_tokens: engine.generate(ids, new_tokens, needle_indices=needle),
        "gated": lambda new_tokens: engine.generate(ids, new_tokens, needle_indices=needle, mask="dynamic"),
        # one gated head in a single pass per step (static / random masking)
        "static": lambda new_tokens: engine.generate(ids, new_tokens, needle_indices=needle, mask="static", gate_heads=[(0, 0)]),
        # worst case of gating: every step is run twice (ungated trace pass + gated re-run)
        "two_pass": lambda new_tokens: rerun.generate(ids, new_tokens, needle_indices=needle, mask="dynamic"),
    }


def _timed(fn, new_tokens: int, device: torch.device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    result = fn(new_tokens)
    _sync(device)
    return time.perf_counter() - start, result


def time_ratios(model, engine, ids, needle, new_tokens: int, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` end-to-end times (prefill + ``new_tokens`` steps) and decode-only times.

    The minimum over interleaved repetitions is the measurement least disturbed by other load.

    Decode-only = time(new_tokens) - time(1 token): the prefill, identical work for all three, is
    subtracted so the per-step overhead of tracing and gating is not diluted by it.
    """
    variants = _variants(model, engine, ids, needle)
    full: dict[str, list[float]] = {k: [] for k in variants}
    one: dict[str, list[float]] = {k: [] for k in variants}
    rerun_steps = 0
    with torch.inference_mode():
        for fn in variants.values():  # warm-up
            fn(2)
        for _ in range(repeats):
            for name, fn in variants.items():
                seconds, result = _timed(fn, new_tokens, engine.device)
                full[name].append(seconds)
                one[name].append(_timed(fn, 1, engine.device)[0])
                if name == "gated":
                    rerun_steps = sum(1 for s in result.steps if s.gated)
                if name == "two_pass":  # the label says every step was re-run: check it
                    reruns = sum(1 for s in result.steps if s.gated and s.ungated_token_id is not None)
                    assert len(result.steps) == new_tokens and reruns == new_tokens, (reruns, new_tokens)
                if name == "static":
                    assert all(s.gated == [(0, 0)] and s.ungated_token_id is None for s in result.steps)
    med = {k: min(v) for k, v in full.items()}
    dec = {k: max(min(full[k]) - min(one[k]), 1e-9) for k in variants}
    return {
        "plain_s": med["plain"], "traced_s": med["traced"], "gated_s": med["gated"],
        "traced_over_plain": med["traced"] / med["plain"],
        "gated_over_plain": med["gated"] / med["plain"],
        "decode_plain_s": dec["plain"], "decode_traced_s": dec["traced"], "decode_gated_s": dec["gated"],
        "decode_traced_over_plain": dec["traced"] / dec["plain"],
        "decode_gated_over_plain": dec["gated"] / dec["plain"],
        "static_s": med["static"], "decode_static_s": dec["static"],
        "static_over_plain": med["static"] / med["plain"], "decode_static_over_plain": dec["static"] / dec["plain"],
        "two_pass_s": med["two_pass"], "decode_two_pass_s": dec["two_pass"],
        "two_pass_over_plain": med["two_pass"] / med["plain"],
        "decode_two_pass_over_plain": dec["two_pass"] / dec["plain"],
        "gated_rerun_steps": rerun_steps, "new_tokens": new_tokens,
    }


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_memory(pretrained: str | None, variant: str, length: int, new_tokens: int, device: str) -> dict[str, float]:
    """Peak memory above the post-load baseline for one variant (run in a fresh process by the caller)."""
    tok = load_tokenizer(pretrained)
    model = load_model(pretrained, device=device)
    engine = TraceEngine(model)
    ids, needle = needle_prompt(tok, length)
    fn = _variants(model, engine, ids, needle)[variant]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            fn(new_tokens)
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base, "tokens": len(ids)}
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with torch.inference_mode():
        fn(new_tokens)
    done.set()
    thread.join()
    peak[0] = max(peak[0], _rss())
    return {"peak_bytes": peak[0] - base, "tokens": len(ids)}


def _memory_in_subprocess(args: argparse.Namespace, variant: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "dynheads.tasks.niah_uuid.benchmark", "--_memory-child", variant,
           "--memory-length", str(args.memory_length), "--memory-new-tokens", str(args.memory_new_tokens),
           "--device", args.device] + (["--pretrained", args.pretrained] if args.pretrained else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement for {variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dynheads-bench", description=__doc__.split("\n\n")[0],
        epilog="Runtime with the defaults on 2 CPU cores (SmolLM2-135M): about 25 s per timing repeat plus "
               "about 15 s per memory run, so ~3.5 min in all; the first use also de-quantises the model (~30 s).")
    parser.add_argument("--pretrained", default=None, help="model (default: embedded smollm2)")
    parser.add_argument("--length", type=int, default=1000, help="context tokens for the timing prompt")
    parser.add_argument("--new-tokens", type=int, default=32, help="decode steps timed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved timing repetitions; each ratio uses the best (default: %(default)s)")
    parser.add_argument("--memory-length", type=int, default=4096,
                        help="context tokens for the memory prompt, >= 4096 (default: %(default)s)")
    parser.add_argument("--memory-new-tokens", type=int, default=8, help="decode steps of the memory runs (default: %(default)s)")
    parser.add_argument("--memory-repeats", type=int, default=3,
                        help="fresh processes per memory variant; the lowest peak counts, as RSS peaks are noisy (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        print(json.dumps(peak_memory(args.pretrained, args.memory_child, args.memory_length, args.memory_new_tokens, args.device)))
        return 0

    tok = load_tokenizer(args.pretrained)
    model = load_model(args.pretrained, device=args.device)
    engine = TraceEngine(model)
    ids, needle = needle_prompt(tok, args.length)
    print(f"model={args.pretrained or 'smollm2'} device={args.device} threads={torch.get_num_threads()} "
          f"prompt={len(ids)} tokens, {args.new_tokens} new tokens, {args.repeats} repeats", flush=True)
    result: dict[str, Any] = time_ratios(model, engine, ids, needle, args.new_tokens, args.repeats)
    del model, engine
    runs = {variant: [_memory_in_subprocess(args, variant) for _ in range(args.memory_repeats)] for variant in ("plain", "traced")}
    plain_mem, traced_mem = (min(runs[v], key=lambda r: r["peak_bytes"]) for v in ("plain", "traced"))
    result.update(
        memory_prompt_tokens=traced_mem["tokens"],
        plain_peak_mib=plain_mem["peak_bytes"] / 2**20,
        traced_peak_mib=traced_mem["peak_bytes"] / 2**20,
        memory_traced_over_plain=traced_mem["peak_bytes"] / max(plain_mem["peak_bytes"], 1),
    )
    r = result
    print(f"plain HF generate : {r['plain_s']:.3f} s end to end, {r['decode_plain_s']:.3f} s decoding {args.new_tokens} steps")
    print(f"traced decoding   : {r['traced_s']:.3f} s, {r['decode_traced_s']:.3f} s   traced / plain = "
          f"{r['traced_over_plain']:.3f} end to end, {r['decode_traced_over_plain']:.3f} decode only  (target <= 1.15)")
    print(f"gated (dynamic)   : {r['gated_s']:.3f} s, {r['decode_gated_s']:.3f} s   gated / plain  = "
          f"{r['gated_over_plain']:.3f} end to end, {r['decode_gated_over_plain']:.3f} decode only  (target <= 2.1; "
          f"{r['gated_rerun_steps']}/{args.new_tokens} steps re-run with heads gated)")
    print(f"one head gated    : {r['static_s']:.3f} s, {r['decode_static_s']:.3f} s   static / plain = "
          f"{r['static_over_plain']:.3f} end to end, {r['decode_static_over_plain']:.3f} decode only  (mask=static, one pass per step)")
    print(f"every step re-run : {r['two_pass_s']:.3f} s, {r['decode_two_pass_s']:.3f} s   two-pass / plain = "
          f"{r['two_pass_over_plain']:.3f} end to end, {r['decode_two_pass_over_plain']:.3f} decode only  "
          f"(gating's worst case: all {args.new_tokens} steps re-run with a head gated; target <= 2.1)")
    print(f"peak memory @ {r['memory_prompt_tokens']} tokens: plain {r['plain_peak_mib']:.0f} MiB, "
          f"traced {r['traced_peak_mib']:.0f} MiB   traced / plain = {r['memory_traced_over_plain']:.3f}  (target <= 1.2)")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
