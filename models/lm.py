"""The ``dynheads`` model for lm-evaluation-harness: HF loading from ``HFLM``, decoding from :class:`TraceEngine`.

Why a subclass of lm-eval's ``HFLM``: users get the same ``pretrained``/``dtype``/``device``/
``max_length`` arguments and tokenisation as ``--model hf``, so a score difference between the two is
the effect of masking, never of a different prompt. Only ``generate_until`` is replaced: each request
is decoded step by step by the trace engine, which reads the Eq. 1 retrieval heads (when the document
carries a needle) and gates heads according to ``mask``.

Model arguments (``--model_args``): ``pretrained`` (hub id, local folder, or an embedded name:
``smollm2`` [default], ``gemma3-270m``), ``mask=none|dynamic|static|random``, ``heads`` (for static: a
count of top-ranked heads or an explicit list ``L:H+L:H``; for random: a count), ``static_heads=PATH``
(ranked head list JSON), ``trace_dir=DIR`` (one JSON line per request in ``DIR/<task>.jsonl``),
``seed`` (random head draws). Everything else goes to ``HFLM``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from ..metrics.retrieval import Head, span_token_indices
from .engine import MASK_MODES, DecodingError, Generation, TraceEngine
from .loading import resolve_pretrained


def parse_head_list(text: str) -> list[Head]:
    """``"12:3+14:7"`` to ``[(12, 3), (14, 7)]`` (``+`` because lm-eval splits model_args on commas)."""
    heads = []
    for item in str(text).replace(" ", "+").split("+"):
        if not item:
            continue
        try:
            layer, head = item.split(":")
            heads.append((int(layer), int(head)))
        except ValueError:
            raise ValueError(f"dynheads: cannot read head {item!r} in heads={text!r}; write heads as LAYER:HEAD joined by '+', e.g. heads=12:3+14:7") from None
    return heads


def load_static_ranking(path: str | os.PathLike) -> list[Head]:
    """Ranked static heads from JSON: a list of ``[layer, head]`` or ``{"heads": [[layer, head, ...], ...]}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"dynheads: cannot read static_heads={str(path)!r} ({exc}); give a JSON file of ranked [layer, head] pairs") from None
    rows = data["heads"] if isinstance(data, dict) else data
    return [(int(r[0]), int(r[1])) for r in rows]


def _random_heads(count: int, layers: int, heads: int, seed: Any) -> list[Head]:
    rng = random.Random(str(seed))
    picked = rng.sample(range(layers * heads), count)
    return sorted((p // heads, p % heads) for p in picked)


class DynHeadsLM(HFLM):
    """lm-eval model that decodes greedily with the trace engine (see module docstring)."""

    def __init__(
        self,
        pretrained: str | None = None,
        mask: str = "none",
        heads: str | int | None = None,
        static_heads: str | None = None,
        trace_dir: str | None = None,
        seed: int = 0,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        if mask not in MASK_MODES:
            raise ValueError(f"dynheads: unknown mask mode {mask!r}; choose mask=none, dynamic, static or random")
        if mask == "random" and not isinstance(heads, int):
            raise ValueError("dynheads: mask=random needs heads=N, the number of random heads to gate per sample")
        if mask == "static" and heads is None:
            raise ValueError("dynheads: mask=static needs heads=N (top-N of static_heads=PATH) or heads=L:H+L:H")
        if mask == "static" and isinstance(heads, int) and static_heads is None:
            raise ValueError("dynheads: mask=static with heads=N needs static_heads=PATH, a JSON list of ranked [layer, head] pairs")
        self.mask_mode = mask
        self.seed = seed
        self.trace_dir = Path(trace_dir) if trace_dir else None
        self.pretrained_name = pretrained or "smollm2"
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            # lm_eval's CLI passes --device (default cuda:0) even on CPU-only machines.
            device = "cuda" if torch.cuda.is_available() else "cpu"
        resolved = resolve_pretrained(pretrained, revision=kwargs.get("revision") or "main",
                                      trust_remote_code=bool(kwargs.get("trust_remote_code", False)))
        super().__init__(pretrained=resolved, device=device, **kwargs)
        self.engine = TraceEngine(self.model)
        self.fixed_heads: list[Head] | None = None
        self.random_count: int | None = None
        if mask == "static":
            ranking = load_static_ranking(static_heads) if static_heads else []
            self.fixed_heads = ranking[:heads] if isinstance(heads, int) else parse_head_list(heads)
            self.engine.gate_mask(self.fixed_heads)  # validates indices now, not mid-run
        elif mask == "random":
            total = self.engine.num_layers * self.engine.num_heads
            if not 0 <= heads <= total:
                raise ValueError(f"dynheads: heads={heads} random heads requested but the model has {total}")
            self.random_count = heads

    # -- helpers -----------------------------------------------------------------------------------
    def _encode_with_offsets(self, context: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids exactly as ``HFLM.tok_encode`` makes them, plus character offsets per token."""
        ids = self.tok_encode(context)
        enc = self.tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
        plain, offsets = enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
        prefix = len(ids) - len(plain)
        if prefix < 0 or ids[prefix:] != plain:
            raise DecodingError("dynheads: tokenizer offsets disagree with lm-eval's encoding of the context; use a fast tokenizer")
        return ids, [(0, 0)] * prefix + offsets

    def _needle_indices(self, context: str, doc: dict | None, offsets: list[tuple[int, int]], kept_from: int) -> list[int] | None:
        needle = (doc or {}).get("needle")
        if not needle:
            return None
        start = context.find(needle)
        if start < 0:
            raise DecodingError("dynheads: the needle text does not occur in the context the model receives; check the task's doc_to_text")
        full = span_token_indices(offsets, start, start + len(needle))
        indices = [i - kept_from for i in full if i >= kept_from]
        if len(indices) != len(full):
            raise DecodingError(
                f"dynheads: the needle was lost in truncation (context cut to max_length={self.max_length}); "
                "raise max_length or use a shorter task length"
            )
        return indices

    def _gate_heads_for(self, task: str, doc_id: Any) -> list[Head] | None:
        if self.mask_mode == "static":
            return self.fixed_heads
        if self.mask_mode == "random":
            e = self.engine
            return _random_heads(self.random_count or 0, e.num_layers, e.num_heads, f"{self.seed}-{task}-{doc_id}")
        return None

    def _write_trace(self, task: str, doc_id: Any, gen: Generation, needle: list[int] | None) -> None:
        assert self.trace_dir is not None
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "task": task,
            "doc_id": doc_id,
            "mask": self.mask_mode,
            "input_ids": gen.prompt_ids,
            "needle_token_indices": needle or [],
            "steps": [
                {"token_id": s.token_id, "heads": [list(h) for h in s.heads],
                 **({"gated": [list(h) for h in s.gated]} if self.mask_mode != "none" else {})}
                for s in gen.steps
            ],
        }
        line = json.dumps(record, separators=(",", ":")) + "\n"
        # One write of a whole line in append mode: readers never see a half-written record.
        with open(self.trace_dir / f"{task}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line)

    # -- lm-eval API -------------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results: list[str] = []
        eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        eos_ids = {self.eot_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos_ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        for req in tqdm(requests, disable=disable_tqdm or self.rank != 0, desc=f"dynheads generate (mask={self.mask_mode})"):
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            if kwargs.get("do_sample"):
                raise ValueError("dynheads: decoding is greedy (as in the paper); set do_sample: false in the task's generation_kwargs")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_gen = int(kwargs.pop("max_gen_toks"))
            ids, offsets = self._encode_with_offsets(context)
            kept_from = 0
            if self._max_length and len(ids) > self.max_length - max_gen:
                kept_from = len(ids) - (self.max_length - max_gen)  # left truncation, as HFLM does
            needle = self._needle_indices(context, getattr(req, "doc", None), offsets, kept_from)
            ids = ids[kept_from:]

            def stop(generated: list[int]) -> bool:
                text = self.tokenizer.decode(generated[-16:], skip_special_tokens=False)
                return any(u and u in text for u in until)

            task = getattr(req, "task_name", None) or "task"
            doc_id = getattr(req, "doc_id", None)
            gen = self.engine.generate(
                ids, max_gen, needle_indices=needle, mask=self.mask_mode,
                gate_heads=self._gate_heads_for(task, doc_id), eos_token_ids=eos_ids, stop=stop,
            )
            text = self.tok_decode(gen.token_ids)
            text = postprocess_generated_text(generation=text, stop=until, think_end_token=None)
            if self.trace_dir is not None:
                self._write_trace(task, doc_id, gen, needle)
            results.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return results
