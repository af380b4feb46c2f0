"""Check trace files against an independent eager-attention recomputation, masked conditions included.

Usage: ``python -m dynheads.models.verify [--pretrained smollm2] TRACE.jsonl [...]``

Why: the trace engine reads attention from a custom sdpa wrapper at each cached decode step and gates
heads inside it; this check recomputes every step with transformers' own eager attention
(``output_attentions=True``) and gates heads its own way (a pre-hook on each layer's ``o_proj`` that
zeroes the gated heads' slices), then compares what the trace says:

* ``mask=none`` lines: one full forward over prompt + emitted tokens; by causality row ``p`` is exactly
  what the query at ``p`` saw, so one forward gives every step;
* masked lines (``dynamic``, ``dynamic:K``, ``static``, ``random``): a step-by-step replay with a KV
  cache that follows the trace's tokens. Each step's first pass is gated as the trace says (the fixed
  heads under static / random, nothing under dynamic); where the trace re-ran a dynamic step, the
  cache is restored and the step re-run with the recorded ``gated`` heads zeroed, which gives
  ``heads_after`` and the emitted token;
* KV-compression lines (``kv:<strategy>``): the same replay, every decode step's query row restricted, in the
  heads the step did not keep whole, to the recorded sink and window by masks built from the trace (``observed``'s
  first pass unrestricted, then its re-run restricted).

A step agrees when its head set (Eq. 1, or Eq. 2 above the recorded threshold), its ``heads_after``
and its emitted token all equal the recomputed ones. Section 5 lines (``rag:<strategy>``) are replayed by
:mod:`dynheads.models.verify.rag` (eager attention, masks built from the recorded windows) and agree per field:
tokens, RIND triggers, Algorithm 2's top positions, windows. Memory of the full forward is layers x heads x
n^2 floats per line: use it on traces of moderate length.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

import torch

from ...metrics.reasoning import reasoning_heads, reasoning_scores_for_sequence
from ...spec import ConditionSpec
from ...traces import kv_full, read_lines, upgraded
from ...metrics.retrieval import Head, argmax_key_positions, copy_paste_heads
from ...util import text_config
from ..engine.eager_hooks import attention_modules, layer_masks, layer_windows
from ..engine.kv import KV_CONDITIONS
from ..harness.loading import load_model, load_tokenizer


def _heads_of(record: dict[str, Any]) -> Callable[[list[torch.Tensor], list[int], int], list[Head]]:
    """The record's retrieval-head definition: Eq. 2 when it carries ``reasoning`` settings, else Eq. 1.

    The function takes the last-row attention of every layer (``[heads, keys]``), the sequence up to
    the query and the token chosen at that step.
    """
    reasoning = record.get("reasoning")
    if reasoning is None:
        return lambda rows, sequence, token: copy_paste_heads(rows, sequence, record["needle_token_indices"], token)

    def eq2(rows: list[torch.Tensor], sequence: list[int], token: int) -> list[Head]:
        scores = reasoning_scores_for_sequence(rows, len(sequence), record["support_token_indices"],
                                               reasoning["sink_tokens"], reasoning["local_window"])
        return reasoning_heads(scores, reasoning["threshold"])

    return eq2


def recompute_unmasked(model: torch.nn.Module, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step of a ``mask=none`` record: its head set and the greedy token, from one eager forward."""
    prompt = record["input_ids"]
    emitted = [s["token_id"] for s in record["steps"]]
    sequence = prompt + emitted[:-1]  # the last emitted token is never fed back
    heads_of = _heads_of(record)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([sequence], device=model.device), output_attentions=True, use_cache=False)
    steps = []
    for t, token in enumerate(emitted):
        pos = len(prompt) - 1 + t
        rows = [a[0, :, pos, : pos + 1].float() for a in out.attentions]
        steps.append({"heads": heads_of(rows, sequence[: pos + 1], token), "heads_after": [],
                      "token_id": int(out.logits[0, pos].argmax()), "looked": looked(rows, pos + 1)})
    return steps


def looked(rows: list[torch.Tensor], total: int) -> list[list[int]]:
    """``[layer][head]``: each head's most-attended key as a sequence position (what a trace's ``attended`` records
    for its heads); ``rows[layer]`` ``[heads, keys]`` right-aligned to position ``total - 1`` (a sliding-window cache
    may hold fewer keys)."""
    return argmax_key_positions([row[None] for row in rows], total)[0].tolist()


@contextmanager
def gated(model: torch.nn.Module, heads: list[Head]) -> Iterator[None]:
    """Zero the chosen heads' outputs before ``o_proj`` (independently of the engine's own gating)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    hooks = []
    for layer, module in attention_modules(model).items():
        if layer not in by_layer:
            continue
        dim = module.head_dim

        def zero(_module: torch.nn.Module, args: tuple, chosen: list[int] = by_layer[layer], dim: int = dim) -> tuple:
            hidden = args[0].clone()
            for head in chosen:
                hidden[..., head * dim : (head + 1) * dim] = 0
            return (hidden, *args[1:])

        hooks.append(module.o_proj.register_forward_pre_hook(zero))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@dataclass(frozen=True)
class _StepPasses:
    """How one recorded step is replayed: the setting of its first pass and, where the trace re-ran the step, the
    setting of the re-run from the same cache (each a fresh context manager: the gating or the masks of that pass).

    Why: the masked and the KV replays differ only here; the teacher-forced loop around it is :func:`_replay_steps`.
    """

    first: Callable[[], ContextManager[Any]]
    rerun: Callable[[], ContextManager[Any]] | None = None


def _decode(model: torch.nn.Module, cache: Any, token: int,
            setting: Callable[[], ContextManager[Any]]) -> tuple[list[torch.Tensor], int]:
    """One cached eager decode step of ``token`` under ``setting``: each layer's last attention row, the greedy token."""
    with setting(), torch.no_grad():
        out = model(input_ids=torch.tensor([[token]], device=model.device), cache=cache, use_cache=True,
                    output_attentions=True)
    return [a[0, :, -1, :].float() for a in out.attentions], int(out.logits[0, -1].argmax())


def _replay_steps(model: torch.nn.Module, record: dict[str, Any], cache: Any,
                  passes: Callable[[dict[str, Any], int], _StepPasses]) -> list[dict[str, Any]]:
    """Per recorded step: the head set of its first pass, ``heads_after`` of its re-run (if any) and the emitted token
    (the re-run's where there is one), with ``passes(step, position)`` saying how each pass is gated or restricted.

    The prompt's prefill is plain; every step feeds the trace's own previous token (teacher forcing), so a
    disagreement at one step does not spread. A re-run starts from a copy of the cache the first pass started from.
    """
    prompt = record["input_ids"]
    heads_of = _heads_of(record)
    with torch.no_grad():
        if len(prompt) > 1:
            model(input_ids=torch.tensor([prompt[:-1]], device=model.device), cache=cache, use_cache=True)
    sequence, result = list(prompt), []
    for step in record["steps"]:
        plan = passes(step, len(sequence) - 1)
        saved = copy.deepcopy(cache) if plan.rerun is not None else None
        rows, token = _decode(model, cache, sequence[-1], plan.first)
        got = {"heads": heads_of(rows, sequence, token), "heads_after": [], "token_id": token,
               "looked": looked(rows, len(sequence))}
        if plan.rerun is not None:
            cache = saved
            rows, token = _decode(model, cache, sequence[-1], plan.rerun)
            got["heads_after"], got["token_id"] = heads_of(rows, sequence, token), token
        result.append(got)
        sequence.append(step["token_id"])
    return result


def replay_masked(model: torch.nn.Module, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step of a masked record: head set of the first pass, ``heads_after`` of a re-run, emitted token.

    Under ``static`` / ``random`` every pass gates the recorded heads; under ``dynamic`` the first pass is ungated and
    a step that recorded ``gated`` heads is re-run with them zeroed. Teacher-forced, like every replay here.
    """
    from transformers import DynamicCache

    fixed = ConditionSpec.parse(record["condition"]).strategy in ("static", "random")

    def passes(step: dict[str, Any], _position: int) -> _StepPasses:
        gate = [tuple(h) for h in step.get("gated", [])]
        if fixed:
            return _StepPasses(lambda: gated(model, gate))
        return _StepPasses(nullcontext, (lambda: gated(model, gate)) if gate else None)

    return _replay_steps(model, record, DynamicCache(config=model.config), passes)


def replay_kv(model: torch.nn.Module, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step of a KV-compression line (``kv:<strategy>``): head set of the first pass, ``heads_after`` of the
    re-run of a two-pass strategy (``observed``), emitted token, from eager attention whose masks are built here from the trace alone.

    Each decode step's query row is restricted, in the heads the step did not keep whole (``kv_full``), to the first
    ``sink`` and the last ``window`` positions (the line's ``kv`` settings), on top of causality and each layer's
    sliding window; the prompt's prefill is plain. ``observed``'s first pass is unrestricted, then re-run restricted.
    Teacher-forced on the trace's tokens, like :func:`replay_masked`.
    """
    from transformers import DynamicCache

    kv = record["kv"]
    two_passes = KV_CONDITIONS[ConditionSpec.parse(record["condition"]).strategy].unrestricted_pass
    windows = layer_windows(model)
    heads = text_config(model).num_attention_heads
    dtype = next(model.parameters()).dtype
    low = torch.finfo(dtype).min

    @contextmanager
    def restricted(position: int, full: torch.Tensor | None) -> Iterator[None]:
        """Every layer's mask for the query at ``position``; heads not ``full`` (None: all are) see sink + window."""
        keys = torch.arange(position + 1, device=model.device)
        view = (keys < kv["sink"]) | (keys > position - kv["window"])
        with layer_masks(model) as masks:
            for layer, window in windows.items():
                ok = (keys > position - window) if window is not None else torch.ones_like(keys, dtype=torch.bool)
                ok = ok[None].expand(heads, -1).clone()
                if full is not None:
                    ok[~full[layer]] &= view
                masks[layer] = torch.where(ok, 0.0, low)[None, :, None, :].to(dtype)
            yield

    def passes(step: dict[str, Any], position: int) -> _StepPasses:
        full = torch.zeros(len(windows), heads, dtype=torch.bool, device=model.device)
        for layer, head in kv_full(record, step):
            full[layer, head] = True
        if two_passes:
            return _StepPasses(lambda: restricted(position, None), lambda: restricted(position, full))
        return _StepPasses(lambda: restricted(position, full))

    # no config: every layer keeps every key, and the masks above apply the sliding windows
    return _replay_steps(model, record, DynamicCache(), passes)


def verify_records(model: torch.nn.Module, records: list[dict[str, Any]], token_text: Callable[[int], str] | None = None,
                   text_of: Callable[[list[int]], str] | None = None) -> dict[str, Any]:
    """Agreement of every step of ``records`` (any mask) with the eager recomputation; Section 5 lines (``rag:...``)
    are replayed by :func:`~dynheads.models.verify.rag.replay_answer` (``token_text`` / ``text_of``: the tokenizer's
    one-token text and text of ids) and reported under ``rag``; a line that cannot be checked is named in
    ``unchecked``, one line each."""
    from .rag import ReplayError, replay_answer

    counts = {"steps": 0, "agreeing_steps": 0, "heads": 0, "heads_after": 0, "tokens": 0, "attended": 0,
              "masked_lines": 0, "kv_lines": 0}
    rag: dict[str, list[bool]] = {"tokens": [], "triggers": [], "top_positions": [], "windows": []}
    rag_lines, unchecked, replays = 0, [], {}
    for record in map(upgraded, records):
        spec = ConditionSpec.parse(record.get("condition", "none"))
        if spec.family == "rag":
            try:
                if token_text is None or text_of is None:
                    raise ReplayError(f"the {spec.name} line of document {record.get('doc_id')!r} needs the tokenizer "
                                      "to replay RIND; pass token_text and text_of")
                for field_name, flags in replay_answer(model, record, token_text, text_of, replays).items():
                    rag[field_name] += flags
                rag_lines += 1
            except ReplayError as exc:
                unchecked.append(str(exc))
            continue
        if not record.get("steps") or "input_ids" not in record:
            unchecked.append(f"the line of document {record.get('doc_id')!r} (condition {spec.name}) has no decode "
                             "steps or prompt to check")
            continue
        masked = spec.family == "mask" and spec.strategy != "none"
        compressed = spec.family == "kv"
        if compressed and ("kv" not in record or ("kv_full" not in record["steps"][0] and "full" not in record["kv"])):
            unchecked.append(f"the {spec.name} line of document {record.get('doc_id')!r} lacks the kv settings or "
                             "per-step kv_full it needs (written by an older dynheads); trace it again")
            continue
        counts["masked_lines"] += masked
        counts["kv_lines"] += compressed
        expected = (replay_kv(model, record) if compressed else replay_masked(model, record) if masked
                    else recompute_unmasked(model, record))
        for step, want in zip(record["steps"], expected):
            same = {"heads": sorted(map(tuple, step["heads"])) == want["heads"],
                    "heads_after": sorted(map(tuple, step.get("heads_after", []))) == want["heads_after"],
                    "tokens": step["token_id"] == want["token_id"],
                    # where each recorded head looked (TRACE_FORMAT 6; older lines have nothing to check)
                    "attended": "attended" not in step or step["attended"] == [want["looked"][layer][head]
                                                                               for layer, head in step["heads"]]}
            counts["steps"] += 1
            counts["agreeing_steps"] += all(same.values())
            for key, ok in same.items():
                counts[key] += ok
    steps = counts["steps"]
    out = {"lines": len(records), "masked_lines": counts["masked_lines"], "kv_lines": counts["kv_lines"], "steps": steps,
           "agreeing_steps": counts["agreeing_steps"], "agreement": counts["agreeing_steps"] / steps if steps else None,
           **{f"{key}_agreement": counts[key] / steps if steps else None
              for key in ("heads", "heads_after", "tokens", "attended")}}
    if rag_lines:
        out["rag"] = {"lines": rag_lines, **{f"{key}_agreement": sum(flags) / len(flags) if flags else None
                                              for key, flags in rag.items()},
                      **{f"{key}_checked": len(flags) for key, flags in rag.items()}}
    if unchecked:
        out["unchecked"] = unchecked
    return out


def passed(result: dict[str, Any], level: float = 0.99) -> bool:
    """Every agreement that was measured (Sections 3-4 steps, each Section 5 field) reaches ``level``."""
    values = [result["agreement"]] + [v for k, v in (result.get("rag") or {}).items() if k.endswith("_agreement")]
    measured = [v for v in values if v is not None]
    return bool(measured) and all(v >= level for v in measured)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+")
    parser.add_argument("--pretrained", default=None, help="the model the traces were written with (default: smollm2)")
    args = parser.parse_args(argv)
    records = [record for path in args.traces for record in read_lines(path)]
    if not any(r.get("steps") for r in records):
        print(f"dynheads verify: {', '.join(args.traces)} hold{'s' if len(args.traces) == 1 else ''} no decode step to "
              "check; give trace files written with trace_dir=DIR", file=sys.stderr)
        return 2
    model = load_model(args.pretrained)
    model.set_attn_implementation("eager")
    tokenizer = load_tokenizer(args.pretrained)
    result = verify_records(model, records, token_text=lambda t: tokenizer.decode([t], skip_special_tokens=True),
                            text_of=lambda ids: tokenizer.decode(ids, skip_special_tokens=False))
    for line in result.get("unchecked", []):
        print(f"dynheads verify: not checked: {line}", file=sys.stderr)
    print(json.dumps({k: v for k, v in result.items() if k != "unchecked"}))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
