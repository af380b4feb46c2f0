"""Benchmark of the trace engine on a NIAH prompt: cost of tracing and gating relative to plain Hugging Face ``generate``, in one run.

Usage: ``dynheads-bench [--pretrained smollm2] [--length 1000] [--new-tokens 32] [--memory-length 4096]``
(or ``python -m dynheads.suite.benchmarks.engine``).

Prints three ratios, each measured in this process on this machine against the same prompt:

1. traced decoding (Eq. 1 heads, and the hallucination detectors' signals: entropy, greedy-token probability,
   every head's attention on the prompt, read at every step) ÷ plain ``model.generate``  (target ≤ 1.15)
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

``--batch 1,4,8,16`` measures batched decoding instead: for each batch size B, B distinct NIAH prompts
(needles at spread depths, so lengths differ by a few tokens and the batch is padded) are decoded together
by plain ``model.generate`` (left-padded), by the traced engine (mask none, Eq. 1 heads every step) and
by the gated engine (mask dynamic), in one process. It prints decode-only tokens/s of each (from the end
of the first decode step to the end of the last, timed inside the run: a stopping criterion ticks for
``generate``, the engine's step callback for the others), traced / plain at equal batch (target <= 1.15),
traced decoding at B over B = 1 (target >= 2.5 at B = 8 on 2 CPU cores), end-to-end tokens/s (prefill
included), and the peak memory of plain and traced decoding per batch size (fresh subprocesses). It
asserts that every row decoded ``--new-tokens`` steps and that no batch was split.
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

from ...models.engine import trace_engine as engine_module
from ...models.engine import DecodeRequest, TraceEngine
from ...models.harness.loading import load_model, load_tokenizer
from ...models.harness.prompts import PromptEncoder
from ...tasks.niah_uuid.haystack import build_docs


def needle_prompt(tokenizer: Any, length: int) -> tuple[list[int], list[int]]:
    """A NIAH prompt of about ``length`` context tokens (needle at depth 0.5) and its needle token indices."""
    return needle_prompts(tokenizer, length, 1)[0]


def needle_prompts(tokenizer: Any, length: int, count: int) -> list[tuple[list[int], list[int]]]:
    """``count`` distinct NIAH prompts of about ``length`` context tokens, needles at spread depths, encoded as
    the lm-eval model encodes them (:mod:`dynheads.models.harness.prompts`)."""
    depths = [i / max(1, count - 1) for i in range(count)] if count > 1 else [0.5]
    encoder = PromptEncoder(tokenizer, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    return [encoder.encode_with_needle(doc["input"], doc["needle"])
            for doc in build_docs(tokenizer, [length], depths, runs=1, seed=12345)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _RerunEveryStep(TraceEngine):
    """The engine with head (0, 0) added to every step's detected heads, so ``mask=dynamic`` re-runs every
    step: ungated pass, ``crop(-1)``, gated re-run. That is gating's worst case, whatever the prompt."""

    def _detect(self, rows, seq, target, first, token, scoring, need_strength=False, positions=None):
        hit, peak = super()._detect(rows, seq, target, first, token, scoring, need_strength, positions)
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
        "traced": lambda new_tokens: engine.generate(ids, new_tokens, target=needle),
        "gated": lambda new_tokens: engine.generate(ids, new_tokens, target=needle, mask="dynamic"),
        # one gated head in a single pass per step (static / random masking)
        "static": lambda new_tokens: engine.generate(ids, new_tokens, target=needle, mask="static", gate_heads=[(0, 0)]),
        # worst case of gating: every step is run twice (ungated trace pass + gated re-run)
        "two_pass": lambda new_tokens: rerun.generate(ids, new_tokens, target=needle, mask="dynamic"),
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
                if name == "traced":  # traced = heads plus the hallucination detectors' signals, at every step
                    assert all(s.context_mass is not None and s.entropy is not None for s in result.steps)
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


class _StepClock:
    """Times of the first and the last decode step of one run, taken inside it: decode time without the
    prefill, measured rather than estimated by subtracting a 1-token run (whose prefill varies by more
    than a batch's whole decode on a CPU)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    def tick(self, step: int) -> None:
        now = time.perf_counter()
        if step == 1:
            self.first = now  # the last row to finish step 1 sets it
        self.last = now

    @property
    def decode_s(self) -> float:
        assert self.first is not None and self.last is not None and self.last > self.first, "no decode steps timed"
        return self.last - self.first


def _batch_variants(model: torch.nn.Module, engine: TraceEngine, prompts: list[tuple[list[int], list[int]]]):
    """name -> fn(new_tokens, clock) decoding all ``prompts`` as one batch, ticking ``clock`` at every step."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    device = engine.device
    width = max(len(ids) for ids, _ in prompts)
    padded = torch.zeros(len(prompts), width, dtype=torch.long, device=device)
    attention = torch.zeros_like(padded)
    for r, (ids, _) in enumerate(prompts):
        padded[r, width - len(ids):] = torch.tensor(ids, device=device)
        attention[r, width - len(ids):] = 1
    engine_name = model.config._attn_implementation

    class Tick(StoppingCriteria):
        def __init__(self, clock: _StepClock) -> None:
            self.clock, self.steps = clock, 0

        def __call__(self, input_ids, scores, **kwargs):
            _sync(device)
            self.steps += 1
            self.clock.tick(self.steps)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def plain_generate(new_tokens: int, clock: _StepClock) -> None:
        model.set_attn_implementation("sdpa")
        try:
            model.generate(padded, attention_mask=attention, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=0, stopping_criteria=StoppingCriteriaList([Tick(clock)]))
        finally:
            model.set_attn_implementation(engine_name)

    def engine_run(mask: str):
        def run(new_tokens: int, clock: _StepClock):
            requests = [DecodeRequest(ids, new_tokens, [mask], target=needle) for ids, needle in prompts]

            def on_step(_request, _condition, steps, finished):
                if not finished:
                    _sync(device)
                    clock.tick(steps)

            return engine.generate_batch(requests, batch_size=len(requests), on_step=on_step)
        return run

    return {"plain": plain_generate, "traced": engine_run("none"), "gated": engine_run("dynamic")}


def batch_rates(model, engine, make_prompts, batches: list[int], new_tokens: int, repeats: int) -> list[dict[str, float]]:
    """Per batch size: end-to-end and decode-only tokens/s of plain, traced and gated decoding (best of ``repeats``).
    ``make_prompts(size)``: that many (prompt ids, needle indices) pairs. Decode-only time runs from the end of
    the first decode step to the end of the last, taken inside each run."""
    rows = []
    for size in batches:
        prompts = make_prompts(size)
        requests = [DecodeRequest(ids, new_tokens, ["none"], target=needle) for ids, needle in prompts]
        need, free = engine.batch_bytes(requests, list(range(size))), engine_module.available_bytes(engine.device)
        assert need <= free, f"a batch of {size} would be split ({need / 2**30:.1f} GiB > {free / 2**30:.1f} GiB free)"
        variants = _batch_variants(model, engine, prompts)
        full: dict[str, list[float]] = {k: [] for k in variants}
        decode: dict[str, list[float]] = {k: [] for k in variants}
        reruns = 0
        with torch.inference_mode():
            for fn in variants.values():
                fn(2, _StepClock())  # warm-up
            for _ in range(repeats):
                for name, fn in variants.items():
                    clock = _StepClock()
                    seconds, result = _timed(lambda n: fn(n, clock), new_tokens, engine.device)
                    full[name].append(seconds)
                    decode[name].append(clock.decode_s)
                    if name != "plain":  # the label says every row decoded new_tokens steps as one batch: check it
                        assert all(len(gen.steps) == new_tokens for gens in result for gen in gens), name
                    if name == "gated":
                        reruns = sum(1 for gens in result for gen in gens for s in gen.steps if s.ungated_token_id is not None)
        best = {k: min(v) for k, v in full.items()}
        dec = {k: min(v) for k, v in decode.items()}
        row = {"batch": size, "prompt_tokens": max(len(ids) for ids, _ in prompts),
               "padding": max(len(ids) for ids, _ in prompts) - min(len(ids) for ids, _ in prompts),
               "gated_rerun_steps": reruns}
        for name in variants:
            row[f"{name}_tokens_per_s"] = size * new_tokens / best[name]
            row[f"{name}_decode_tokens_per_s"] = size * (new_tokens - 1) / dec[name]
        row["traced_over_plain"] = best["traced"] / best["plain"]
        row["decode_traced_over_plain"] = dec["traced"] / dec["plain"]
        row["gated_over_plain"] = best["gated"] / best["plain"]
        row["decode_gated_over_plain"] = dec["gated"] / dec["plain"]
        rows.append(row)
        print(f"  batch {size}: plain {row['plain_tokens_per_s']:.1f} tok/s, traced {row['traced_tokens_per_s']:.1f}, "
              f"gated {row['gated_tokens_per_s']:.1f} (decode only: {row['plain_decode_tokens_per_s']:.1f} / "
              f"{row['traced_decode_tokens_per_s']:.1f} / {row['gated_decode_tokens_per_s']:.1f})", flush=True)
    base = rows[0]
    for row in rows:
        row["traced_speedup_over_first"] = row["traced_tokens_per_s"] / base["traced_tokens_per_s"]
        row["decode_traced_speedup_over_first"] = row["traced_decode_tokens_per_s"] / base["traced_decode_tokens_per_s"]
    return rows


def batch_peak_memory(pretrained: str | None, variant: str, length: int, size: int, new_tokens: int, device: str) -> dict[str, float]:
    """Peak memory above the post-load baseline of one batched variant (run in a fresh process by the caller)."""
    tok = load_tokenizer(pretrained)
    model = load_model(pretrained, device=device)
    engine = TraceEngine(model)
    fn = _batch_variants(model, engine, needle_prompts(tok, length, size))[variant]
    return _peak(lambda n: fn(n, _StepClock()), new_tokens, device)


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
    out = _peak(fn, new_tokens, device)
    out["tokens"] = len(ids)
    return out


def _peak(fn, new_tokens: int, device: str) -> dict[str, float]:
    """Run ``fn(new_tokens)``; the peak memory above what was held before it (CUDA allocator or sampled RSS)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            fn(new_tokens)
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base}
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
    return {"peak_bytes": peak[0] - base}


def _memory_in_subprocess(args: argparse.Namespace, variant: str, batch: int | None = None) -> dict[str, float]:
    cmd = [sys.executable, "-m", "dynheads.suite.benchmarks.engine", "--_memory-child", variant,
           "--memory-length", str(args.memory_length if batch is None else args.length),
           "--memory-new-tokens", str(args.memory_new_tokens),
           "--device", args.device] + (["--pretrained", args.pretrained] if args.pretrained else [])
    if batch is not None:
        cmd += ["--_memory-batch", str(batch)]
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
    parser.add_argument("--batch", default=None, type=_batch_list,
                        help="batch sizes to compare instead, e.g. 1,4,8,16: tokens/s of plain, traced and gated decoding "
                             "and peak memory per batch size (about 15 min at 1,4,8,16 with --repeats 2 on 2 CPU cores, "
                             "mostly the 1K-token prefills)")
    parser.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_memory-batch", dest="memory_batch", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        if args.memory_batch is not None:
            print(json.dumps(batch_peak_memory(args.pretrained, args.memory_child, args.memory_length, args.memory_batch,
                                               args.memory_new_tokens, args.device)))
        else:
            print(json.dumps(peak_memory(args.pretrained, args.memory_child, args.memory_length, args.memory_new_tokens, args.device)))
        return 0
    if args.batch:
        return _batch_main(args)

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


def _batch_list(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch {text!r}: give batch sizes joined by commas, e.g. 1,4,8,16") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch {text!r}: give batch sizes >= 1 joined by commas, e.g. 1,4,8,16")
    return sizes


def _batch_main(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args.pretrained)
    model = load_model(args.pretrained, device=args.device)
    engine = TraceEngine(model)
    print(f"model={args.pretrained or 'smollm2'} device={args.device} threads={torch.get_num_threads()} "
          f"prompts of ~{args.length} context tokens, {args.new_tokens} new tokens, batches {args.batch}, "
          f"{args.repeats} repeats", flush=True)
    rows = batch_rates(model, engine, lambda size: needle_prompts(tok, args.length, size), args.batch, args.new_tokens,
                       args.repeats)
    del model, engine
    for row in rows:
        for variant in ("plain", "traced"):
            runs = [_memory_in_subprocess(args, variant, row["batch"]) for _ in range(args.memory_repeats)]
            row[f"{variant}_peak_mib"] = min(r["peak_bytes"] for r in runs) / 2**20
    first = rows[0]["batch"]
    print(f"\n| batch | prompt tokens (padding) | decode tok/s plain / traced / gated | traced / plain (decode) | "
          f"traced decode tok/s vs batch {first} | end-to-end tok/s plain / traced / gated | peak MiB plain / traced |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['prompt_tokens']} (+{r['padding']}) | {r['plain_decode_tokens_per_s']:.1f} / "
              f"{r['traced_decode_tokens_per_s']:.1f} / {r['gated_decode_tokens_per_s']:.1f} | "
              f"{r['decode_traced_over_plain']:.3f} | {r['decode_traced_speedup_over_first']:.2f}x | "
              f"{r['plain_tokens_per_s']:.1f} / {r['traced_tokens_per_s']:.1f} / {r['gated_tokens_per_s']:.1f} | "
              f"{r['plain_peak_mib']:.0f} / {r['traced_peak_mib']:.0f} |")
    print("(decode: from the end of the first step to the end of the last, timed inside each run; end to end: prefill "
          "included. Targets on 2 CPU cores: traced / plain <= 1.15 at equal batch, traced decoding at batch 8 >= 2.5x "
          "batch 1.)")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"new_tokens": args.new_tokens, "batches": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
