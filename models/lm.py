"""The ``dynheads`` model for lm-evaluation-harness: HF loading from ``HFLM``, decoding from :class:`TraceEngine`.

Why a subclass of lm-eval's ``HFLM``: users get the same ``pretrained``/``dtype``/``device``/
``max_length`` arguments and tokenisation as ``--model hf``, so a score difference between the two is
the effect of masking, never of a different prompt. Only ``generate_until`` is replaced: each request
is decoded step by step by the trace engine, which reads the Eq. 1 retrieval heads (when the document
carries a needle) and gates heads according to ``mask``.

Model arguments (``--model_args``): ``pretrained`` (hub id, local folder, or an embedded name:
``smollm2`` [default], ``gemma3-270m``); ``mask`` = ``none|dynamic|dynamic:K|static|random``, or several
joined by ``+`` (one shared prefill; the first is scored by lm-eval, all go to the trace file);
``heads`` (static: top-N count or an explicit list ``L:H+L:H``; random: a count; omitted: the matched
N of the calibration); ``static_heads`` = ``auto`` [default: calibrated once per model and cached],
a JSON ``PATH``, or ``off``; ``calib_lengths``/``calib_depths``/``calib_runs`` (calibration grid, ``+``
joined); ``trace_dir=DIR`` (one JSON line per request and condition in ``DIR/<task>.jsonl``); ``seed``
(random head draws). Everything else goes to ``HFLM``.

Head statistics in lm-eval's table: for documents that carry a needle, the Eq. 1 heads of every step
of the first condition are handed to the task's ``process_results`` through
:mod:`dynheads.models.step_registry` (lm-eval passes only strings back from a model).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from ..metrics.retrieval import Head, span_token_indices
from . import step_registry
from .static_heads import StaticHeads, calibration_for, load_static_heads
from ..metrics.vectors import HIDDEN_DTYPES, append_vectors, score_matrix
from ..probes.mlp import load_probe
from .engine import TRACE_FORMAT, Condition, DecodeRequest, DecodingError, Generation, ReasoningScore, TraceEngine, text_config
from .files import file_digest
from .loading import embedded_revision, resolve_pretrained
from .rag import RagSettings
from .rag_requests import answer_all, check_requirements, measures, parse_strategies, rag_record, settings_record

STATIC_TOP = 100  # static heads handed to the task for the Jaccard columns (k = 20, 50, 100)


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


def _random_heads(count: int, layers: int, heads: int, seed: Any) -> list[Head]:
    rng = random.Random(str(seed))
    picked = rng.sample(range(layers * heads), count)
    return sorted((p // heads, p % heads) for p in picked)


def _flag(name: str, value: Any) -> bool:
    """A boolean model argument (lm-eval may pass ``True`` or the text ``true``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"dynheads: {name}={value!r} is not true or false")


def _number_list(name: str, text: Any, cast: type) -> tuple:
    items = [x for x in str(text).replace(",", "+").replace(" ", "+").split("+") if x]
    try:
        values = tuple(cast(x) for x in items)
    except ValueError:
        values = ()
    if not values:
        raise ValueError(f"dynheads: cannot read {name}={text!r}; join numbers with '+', e.g. {name}=500+1000")
    return values


def trace_record(task: str, doc_id: Any, gen: Generation, text: str, needle: list[int] | None,
                 support: list[int] | None = None, reasoning: ReasoningScore | None = None) -> dict[str, Any]:
    """One line of the trace file (the public format in the README) for one generation."""
    steps = []
    for s in gen.steps:
        step: dict[str, Any] = {"token_id": s.token_id, "heads": [list(h) for h in s.heads]}
        if gen.condition != "none":
            step["gated"] = [list(h) for h in s.gated]
        if s.heads_after or s.ungated_token_id is not None:
            step["heads_after"] = [list(h) for h in s.heads_after]
        if s.scores is not None:
            step["scores"] = s.scores
        steps.append(step)
    record = {"task": task, "doc_id": doc_id, "mask": gen.condition, "response": text,
              "input_ids": gen.prompt_ids, "needle_token_indices": needle or [], "steps": steps}
    if support is not None and reasoning is not None:
        record["support_token_indices"] = support
        record["reasoning"] = {"sink_tokens": reasoning.sink_tokens, "local_window": reasoning.local_window,
                               "threshold": reasoning.threshold}
    return record


def hidden_matrix(gen: Generation, width: int = 0) -> np.ndarray:
    """``[steps, hidden]`` float32 of a generation decoded with ``record_hidden`` (``[0, width]`` without steps)."""
    if any(s.hidden is None for s in gen.steps):
        raise ValueError("dynheads: this generation was decoded without record_hidden; no hidden states to store")
    return torch.stack([s.hidden for s in gen.steps]).numpy() if gen.steps else np.zeros((0, width), dtype=np.float32)


def check_probe(meta: dict[str, Any], model: str, hidden_dim: int, heads: int, path: str) -> None:
    """Refuse, in one line, a probe trained on another model, or on vectors of another size."""
    if meta.get("model") != model or meta.get("hidden_dim") != hidden_dim or meta.get("heads") != heads:
        raise ValueError(f"dynheads: probe={path!r} was trained on {meta.get('model')} ({meta.get('hidden_dim')}-dim hidden "
                         f"states, {meta.get('heads')} heads) but this model is {model} ({hidden_dim}, {heads}); "
                         "train one on this model with run_suite.py --stages probes (or python -m dynheads.probes.train)")


def probe_record(probe: Any, meta: dict[str, Any], kind: str, gen: Generation, layers: int, heads: int,
                 path: str) -> dict[str, Any]:
    """The probe's predictions for one generation's steps beside the traced targets (for the task's probe metrics)."""
    if meta.get("kind") != kind:
        raise DecodingError(f"dynheads: probe={path!r} was trained on {meta.get('kind')} documents but this task gives "
                            f"{kind} documents; use a probe of this task kind")
    hidden = hidden_matrix(gen, meta["hidden_dim"])
    pred = probe.predict_proba(hidden) if kind == "niah" else probe.predict(hidden)
    return {"kind": kind, "target": score_matrix(gen.steps, layers, heads).tolist(), "pred": pred.tolist(),
            "threshold": getattr(probe, "threshold_", None)}


def attach_vectors(record: dict[str, Any], gen: Generation, sidecar: Path, engine: TraceEngine, hidden_dtype: str,
                   model: str | None) -> None:
    """Append a generation's hidden states and score vectors to ``sidecar`` and reference them from ``record``."""
    hidden = hidden_matrix(gen)
    scores = score_matrix(gen.steps, engine.num_layers, engine.num_heads)
    record["vectors"] = append_vectors(sidecar, hidden, scores, hidden_dtype, model=model)


class DynHeadsLM(HFLM):
    """lm-eval model that decodes greedily with the trace engine (see module docstring)."""

    def __init__(
        self,
        pretrained: str | None = None,
        mask: str = "none",
        heads: str | int | None = None,
        static_heads: str | None = "auto",
        calib_lengths: str | int | None = None,
        calib_depths: str | float | None = None,
        calib_runs: int | None = None,
        calib_examples: int | None = None,
        trace_dir: str | None = None,
        seed: int = 0,
        sink_tokens: int | None = None,
        local_window: int | None = None,
        reasoning_threshold: float | None = None,
        hidden: bool | str = False,
        hidden_dtype: str = "float16",
        probe: str | None = None,
        rag: str | None = None,
        rag_heads: int = 5,
        rag_threshold: float | None = None,
        rag_top_positions: int | None = None,
        rag_cluster_gap: int | None = None,
        rag_window: int | None = None,
        rag_max_retrievals: int | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.seed = seed
        given = {"heads": rag_heads, "threshold": rag_threshold, "top_positions": rag_top_positions,
                 "cluster_gap": rag_cluster_gap, "window": rag_window, "max_retrievals": rag_max_retrievals,
                 "sink_tokens": sink_tokens}
        try:
            self.rag_settings = RagSettings(**{k: (float(v) if k == "threshold" else int(v)) for k, v in given.items() if v is not None})
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc) if str(exc).startswith("dynheads") else f"dynheads: cannot read the rag_* arguments ({exc})") from None
        self.record_hidden = _flag("hidden", hidden)
        if hidden_dtype not in HIDDEN_DTYPES:
            raise ValueError(f"dynheads: hidden_dtype={hidden_dtype!r}; choose {' or '.join(HIDDEN_DTYPES)}")
        self.hidden_dtype = hidden_dtype
        if self.record_hidden and not trace_dir:  # before the (slow) model load
            raise ValueError("dynheads: hidden=true records hidden states into the trace's sidecar; give trace_dir=DIR too")
        self.probe_path = str(probe) if probe else ""
        self.probe, self.probe_meta = (None, {}) if not probe else load_probe(probe)  # an unreadable file fails here
        self.rag_probe, self.rag_probe_meta, self.rag_probe_path = self.probe, self.probe_meta, self.probe_path
        base = ReasoningScore()
        self.reasoning = ReasoningScore(
            sink_tokens=int(sink_tokens) if sink_tokens is not None else base.sink_tokens,
            local_window=int(local_window) if local_window is not None else base.local_window,
            threshold=float(reasoning_threshold) if reasoning_threshold is not None else base.threshold,
        )
        if self.reasoning.sink_tokens < 0 or self.reasoning.local_window < 0 or not 0 <= self.reasoning.threshold <= 1:
            raise ValueError("dynheads: sink_tokens and local_window must be >= 0 and reasoning_threshold in [0, 1], e.g. sink_tokens=4,local_window=32,reasoning_threshold=0.5")
        self.pretrained_name = pretrained or "smollm2"
        static_heads = "auto" if static_heads in (None, "", "auto") else str(static_heads)
        if static_heads not in ("auto", "off") and not Path(static_heads).is_file():
            raise ValueError(f"dynheads: static_heads={static_heads!r} is not a file; give a calibration JSON path, auto or off")
        self.static_source = static_heads
        # the calibrations' settings (None = the calibrating task's default); see static()
        self.calibration_options: dict[str, Any] = {
            "lengths": _number_list("calib_lengths", calib_lengths, int) if calib_lengths is not None else None,
            "depths": _number_list("calib_depths", calib_depths, float) if calib_depths is not None else None,
            "runs": int(calib_runs) if calib_runs is not None else None,
            "examples": int(calib_examples) if calib_examples is not None else None,
            "reasoning": self.reasoning,
        }
        self.calib_examples = self.calibration_options["examples"]
        if self.calib_examples is not None and self.calib_examples < 1:
            raise ValueError(f"dynheads: calib_examples={calib_examples!r} must be a positive number of HotpotQA train examples, e.g. calib_examples=20")
        self._static: dict[str, StaticHeads] = {}
        self._check_heads(self._parse_conditions(mask), heads)  # validates before the (slow) model load
        self._check_rag(mask, rag, self.record_hidden)
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            # lm_eval's CLI passes --device (default cuda:0) even on CPU-only machines.
            device = "cuda" if torch.cuda.is_available() else "cpu"
        resolved = resolve_pretrained(pretrained, revision=kwargs.get("revision") or "main",
                                      trust_remote_code=bool(kwargs.get("trust_remote_code", False)))
        super().__init__(pretrained=resolved, device=device, **kwargs)
        self.revision = embedded_revision(self.pretrained_name) or kwargs.get("revision") or "main"
        self.engine = TraceEngine(self.model)
        if self.probe is not None:
            check_probe(self.probe_meta, self.pretrained_name, text_config(self.model).hidden_size,
                        self.engine.num_layers * self.engine.num_heads, str(probe))
        self.configure(mask=mask, heads=heads, trace_dir=trace_dir, rag=rag)

    # -- configuration -------------------------------------------------------------------------------
    @staticmethod
    def _parse_conditions(mask: str) -> list[Condition]:
        names = [m for m in str(mask).split("+") if m.strip()]
        if not names:
            raise ValueError("dynheads: empty mask; choose mask=none, dynamic, dynamic:K, static or random (join several with +)")
        try:
            return [Condition.parse(name) for name in names]
        except DecodingError as exc:
            raise ValueError(str(exc)) from None

    def _check_heads(self, conditions: list[Condition], heads: str | int | None) -> None:
        masks = {c.mask for c in conditions}
        if "static" in masks and "random" in masks and isinstance(heads, str):
            raise ValueError("dynheads: an explicit head list (heads=L:H+...) cannot serve static and random together; give heads=N or omit it")
        if "random" in masks and isinstance(heads, str):
            raise ValueError("dynheads: mask=random needs heads=N (a count) or no heads (the calibrated matched N)")
        if masks & {"static", "random"} and heads is None and self.static_source == "off":
            raise ValueError("dynheads: mask=static/random without heads=N needs the calibration; set heads=N or static_heads=auto")

    def _check_rag(self, mask: str, rag: str | None, record_hidden: bool) -> list:
        """The RAG strategies of ``rag``; one clear line for a combination that cannot run (before any compute)."""
        strategies = parse_strategies(rag)
        if strategies and str(mask) != "none":
            raise ValueError(f"dynheads: rag={rag!r} decides what the model sees by itself; use it with mask=none (drop mask={mask!r})")
        if strategies and record_hidden:
            raise ValueError("dynheads: hidden=true records unmasked traces; run it without rag=")
        if strategies:
            check_requirements(strategies, self.rag_probe_meta if self.rag_probe is not None else None, self.rag_probe_path,
                               self.static_source)
        return strategies

    def configure(self, mask: str = "none", heads: str | int | None = None, trace_dir: str | os.PathLike | None = None,
                  hidden: bool | None = None, rag: str | None = None) -> None:
        """(Re)select the mask conditions, head count, trace folder, hidden-state recording (None: unchanged)
        and RAG strategies (None: no RAG) without reloading the model.

        Everything is validated before anything changes, so a refused call leaves the model as it was.
        """
        conditions = self._parse_conditions(mask)
        total = self.engine.num_layers * self.engine.num_heads
        if isinstance(heads, bool) or not (heads is None or isinstance(heads, (int, str))):
            raise ValueError(f"dynheads: heads={heads!r} must be a count N or a list L:H+L:H")
        if isinstance(heads, int) and not 0 <= heads <= total:
            raise ValueError(f"dynheads: heads={heads} requested but the model has {total} heads")
        if isinstance(heads, str):
            self.engine.gate_mask(parse_head_list(heads))  # validates indices now, not mid-run
        self._check_heads(conditions, heads)
        strategies = self._check_rag(mask, rag, self.record_hidden if hidden is None else bool(hidden))
        self.rag_strategies = strategies
        self.conditions = conditions
        record_hidden = self.record_hidden if hidden is None else bool(hidden)
        if record_hidden and not trace_dir:
            raise ValueError("dynheads: hidden=true records hidden states into the trace's sidecar; give trace_dir=DIR too")
        self.record_hidden = record_hidden
        self.mask_mode = conditions[0].name
        self.trace_dir = Path(trace_dir) if trace_dir else None
        self.heads_arg = heads

    def identity(self) -> dict[str, Any]:
        """What fixes this model's outputs beyond the prompt: name, revision (the hub commit when known, else
        the requested one; for embedded models the providing package's version), dtype and the engine's
        trace format. Cached results are keyed on it."""
        commit = getattr(self.model.config, "_commit_hash", None)
        return {"model": self.pretrained_name, "revision": commit or self.revision,
                "dtype": str(self.model.dtype).replace("torch.", ""), "trace_format": TRACE_FORMAT}

    def use_rag_probe(self, path: str | os.PathLike) -> None:
        """Give the ``dynamic`` RAG strategy the probe saved at ``path`` (checked against this model). Unlike
        ``probe=PATH`` it adds no probe metrics to other tasks."""
        probe, meta = load_probe(str(path))
        check_probe(meta, self.pretrained_name, text_config(self.model).hidden_size,
                    self.engine.num_layers * self.engine.num_heads, str(path))
        self.rag_probe, self.rag_probe_meta, self.rag_probe_path = probe, meta, str(path)

    def rag_identity(self, strategies: list[str]) -> dict[str, Any]:
        """What decides the windows of these RAG strategies beyond the model: the settings, the probe (its file
        digest) where dynamic chooses heads, the static heads where static does."""
        parsed = parse_strategies("+".join(strategies))
        out: dict[str, Any] = {"settings": settings_record(self.rag_settings)}
        if any(s.name == "dynamic" for s in parsed):
            out["probe"] = file_digest(self.rag_probe_path)
        static = [s for s in parsed if s.name == "static"]
        if static:
            k = max(s.k or self.rag_settings.heads for s in static)
            out["static_heads"] = [list(h) for h in self.static("hotpotqa").heads[:k]]
        return out

    def static(self, kind: str = "niah") -> StaticHeads | None:
        """The static-head calibration of this model (loaded, or computed once and cached); None if off.

        ``kind``: ``niah`` (Eq. 1 activation rate on NIAH) or ``hotpotqa`` (mean Eq. 2 score on HotpotQA
        train examples, with this model's Eq. 2 settings). A ``static_heads=PATH`` calibration file serves
        the kind it was made for (a plain ranked list serves both).
        """
        if kind not in self._static and self.static_source != "off":
            if self.static_source != "auto":
                static = load_static_heads(self.static_source, kind)
            else:
                calibration = calibration_for(kind)
                if calibration is None:
                    raise ValueError(f"dynheads: no {kind} static-head calibration is registered; import the task that "
                                     f"makes {kind} documents (e.g. import dynheads.tasks.niah_uuid), or pass static_heads=PATH or off")
                static = calibration.run(self, self.calibration_options, tqdm)
            self.engine.gate_mask(static.heads)  # a ranking for another model fails here, clearly
            self._static[kind] = static
        return self._static.get(kind)

    def matched_count(self, kind: str = "niah") -> int:
        """N for static/random: ``heads=N`` if given, else the calibration's matched count."""
        return self.heads_arg if isinstance(self.heads_arg, int) else self.calibrated_count(kind)

    def calibrated_count(self, kind: str = "niah") -> int:
        """The calibration's matched count N of ``kind``, whatever ``heads`` is currently configured."""
        static = self.static(kind)
        if static is None or static.matched_n is None:
            raise ValueError("dynheads: no matched head count in the static-head file; give heads=N")
        return static.matched_n

    def fixed_heads(self, condition: Condition, task: str, sample_key: Any, kind: str = "niah") -> tuple[Head, ...]:
        """Heads gated at every step under a static or random condition (empty otherwise).

        Random heads are drawn per sample from ``(seed, task, sample_key)``: reproducible, and different
        for every document (``sample_key`` is the document's content hash, not its position in a run).
        """
        if condition.mask == "static":
            if isinstance(self.heads_arg, str):
                return tuple(parse_head_list(self.heads_arg))
            static = self.static(kind)
            return tuple(static.heads[: self.matched_count(kind)])
        if condition.mask == "random":
            e = self.engine
            return tuple(_random_heads(self.matched_count(kind), e.num_layers, e.num_heads, f"{self.seed}-{task}-{sample_key}"))
        return ()

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
        return self._after_truncation(span_token_indices(offsets, start, start + len(needle)), kept_from,
                                      "the needle was", "use a shorter task length")

    def _after_truncation(self, full: list[int], kept_from: int, what: str, fix: str) -> list[int]:
        """Token indices shifted past a left truncation; an error if truncation cut any of them."""
        indices = [i - kept_from for i in full if i >= kept_from]
        if len(indices) != len(full):
            raise DecodingError(
                f"dynheads: {what} lost in truncation (context cut to max_length={self.max_length}); raise max_length or {fix}"
            )
        return indices

    def _support_indices(self, context: str, doc: dict | None, offsets: list[tuple[int, int]], kept_from: int) -> list[int] | None:
        """Token indices of every supporting-fact sentence (``doc["support_char_spans"]``, in ``doc["input"]``)."""
        spans = (doc or {}).get("support_char_spans")
        if not spans:
            return None
        base = context.find(doc.get("input", ""))
        if base < 0 or not doc.get("input"):
            raise DecodingError("dynheads: the document's input does not occur in the context the model receives; do not add --apply_chat_template to tasks that render their own prompt")
        full = sorted({i for start, end in spans for i in span_token_indices(offsets, base + start, base + end)})
        return self._after_truncation(full, kept_from, "supporting facts were", "use shorter examples")

    def encode_with_needle(self, context: str, needle: str) -> tuple[list[int], list[int]]:
        """Token ids of ``context`` (as lm-eval encodes it) and the indices of the tokens of ``needle``."""
        ids, offsets = self._encode_with_offsets(context)
        return ids, self._needle_indices(context, {"needle": needle}, offsets, 0) or []

    def eos_ids(self) -> set[int]:
        """End-of-sequence ids: the tokenizer's, plus the generation config's (chat models add <|im_end|> etc.)."""
        ids = {self.eot_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        return ids

    def _check_seed(self, doc: dict | None, kind: str) -> None:
        seed = (doc or {}).get("seed")
        calibration = calibration_for(kind)
        reserved = calibration.reserved_seed if calibration is not None else None
        if self.static_source == "auto" and seed is not None and reserved is not None and int(seed) == reserved:
            raise DecodingError(
                f"dynheads: this document uses seed {seed}, the static-head calibration seed; "
                "evaluate with another seed (e.g. --metadata '{\"seed\": 0}') so calibration and evaluation stay disjoint"
            )

    def _remember_heads(self, doc: dict, gen: Generation, kind: str) -> None:
        """Hand the first condition's per-step heads to the task's ``process_results``, with the static
        ranking of the same kind (Eq. 1 heads against the NIAH calibration, Eq. 2 heads against the
        HotpotQA one)."""
        static = self.static(kind)
        record = {
            "steps": [[list(h) for h in s.heads] for s in gen.steps],
            "total_heads": self.engine.num_layers * self.engine.num_heads,
            "static": [list(h) for h in static.heads[:STATIC_TOP]] if static is not None and static.informative else None,
        }
        if self.probe is not None:
            record["probe"] = probe_record(self.probe, self.probe_meta, kind, gen, self.engine.num_layers,
                                           self.engine.num_heads, self.probe_path)
        step_registry.remember(doc, record)

    def _write_traces(self, task: str, doc_id: Any, gens: list[Generation], texts: list[str], needle: list[int] | None,
                      support: list[int] | None = None) -> None:
        assert self.trace_dir is not None
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        reasoning = self.reasoning if support is not None else None
        records = [trace_record(task, doc_id, gen, text, needle, support, reasoning) for gen, text in zip(gens, texts)]
        if self.record_hidden:  # the binary block first: a line never points at bytes not yet written
            for record, gen in zip(records, gens):
                attach_vectors(record, gen, self.trace_dir / f"{task}.vectors.bin", self.engine, self.hidden_dtype,
                               self.pretrained_name)
        self._append_lines(task, records)

    def _append_lines(self, task: str, records: list[dict[str, Any]]) -> None:
        """One write of whole lines in append mode: readers never see a half-written record."""
        assert self.trace_dir is not None
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(record, separators=(",", ":")) + "\n" for record in records]
        with open(self.trace_dir / f"{task}.jsonl", "a", encoding="utf-8") as fh:
            fh.write("".join(lines))

    def _rag_request(self, context: str, doc: dict | None, offsets: list[tuple[int, int]], kept_from: int, ids: list[int],
                     support: list[int] | None, max_gen: int, eos_ids: set[int], stop: Any, until: list[str], task: str,
                     doc_id: Any, sample_key: Any, disable_tqdm: bool) -> list[str]:
        """Every ``rag=`` strategy's answer to one request (one context prefill); trace lines and measures."""
        span = (doc or {}).get("context_char_span")
        base = context.find((doc or {}).get("input") or "\0")
        if not span or base < 0:
            raise DecodingError("dynheads: rag= needs documents that mark their context span (context_char_span in the "
                                "prompt), e.g. --tasks hotpotqa_sf")
        spans = span_token_indices(offsets, base + int(span[0]), base + int(span[1]))
        context_ids = self._after_truncation(spans, kept_from, "the context was", "use shorter examples")
        with tqdm(total=len(self.rag_strategies), desc="  RAG strategies of this request", unit="strategy", leave=False,
                  disable=disable_tqdm or self.rank != 0) as bar:
            example, answers = answer_all(self, ids, context_ids, support or [], max_gen, eos_ids, stop, str(sample_key),
                                          on_answer=lambda label: (bar.set_postfix_str(label), bar.update(1)))
        texts = [postprocess_generated_text(generation=self.tok_decode(a.token_ids), stop=until, think_end_token=None)
                 for a in answers]
        if isinstance(doc, dict):
            step_registry.remember(doc, {"rag": measures(answers[0])})
        if self.trace_dir is not None:
            self._append_lines(task, [rag_record(task, doc_id, ids, a, t, example) for a, t in zip(answers, texts)])
        return texts

    # -- lm-eval API -------------------------------------------------------------------------------
    def decode_batch_size(self) -> int:
        """Prompts decoded together (each with all its conditions as rows): lm-eval's ``--batch_size N``; for
        ``auto`` the largest of ``max_batch_size`` that the engine's memory check lets through per batch."""
        size = self.batch_size_per_gpu
        if str(size).startswith("auto"):
            return int(self.max_batch_size or 64)
        return max(1, int(size))

    def _prepare(self, req: Any, eos_text: str, eos_ids: set[int]) -> dict[str, Any]:
        """One request's prompt ids, retrieval indices, stop rule and bookkeeping (everything before decoding)."""
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
        doc = getattr(req, "doc", None)
        needle = self._needle_indices(context, doc, offsets, kept_from)
        support = self._support_indices(context, doc, offsets, kept_from) if needle is None else None
        if needle is not None:
            self._check_seed(doc, "niah")

        def stop(generated: list[int]) -> bool:
            text = self.tokenizer.decode(generated[-16:], skip_special_tokens=False)
            return any(u and u in text for u in until)

        task = getattr(req, "task_name", None) or "task"
        return {"context": context, "gen_kwargs": gen_kwargs, "offsets": offsets, "kept_from": kept_from, "doc": doc,
                "ids": ids[kept_from:], "needle": needle, "support": support, "until": until, "max_gen": max_gen,
                "stop": stop, "eos_ids": eos_ids, "task": task, "doc_id": getattr(req, "doc_id", None),
                "sample_key": step_registry.doc_key(doc) if isinstance(doc, dict) else getattr(req, "doc_id", None)}

    def _decode_request(self, p: dict[str, Any]) -> DecodeRequest:
        kind = "hotpotqa" if p["support"] is not None else "niah"
        conditions = [Condition(c.mask, self.fixed_heads(c, p["task"], p["sample_key"], kind), c.top_k) for c in self.conditions]
        return DecodeRequest(p["ids"], p["max_gen"], conditions, needle_indices=p["needle"], support_indices=p["support"],
                             reasoning=self.reasoning, eos_token_ids=p["eos_ids"], stop=p["stop"],
                             record_hidden=self.record_hidden or self.probe is not None)

    def _finish(self, p: dict[str, Any], gens: list[Generation]) -> str:
        """Texts, the heads handed to process_results, and the trace lines of one decoded request."""
        texts = [postprocess_generated_text(generation=self.tok_decode(g.token_ids), stop=p["until"], think_end_token=None)
                 for g in gens]
        kind = "hotpotqa" if p["support"] is not None else "niah"
        if (p["needle"] is not None or p["support"] is not None) and isinstance(p["doc"], dict):
            self._remember_heads(p["doc"], gens[0], kind)
        if self.trace_dir is not None:
            self._write_traces(p["task"], p["doc_id"], gens, texts, p["needle"], p["support"])
        self.cache_hook.add_partial("generate_until", (p["context"], p["gen_kwargs"]), texts[0])
        return texts[0]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy answers; ``--batch_size N`` decodes N prompts at a time, each with all its mask conditions as
        rows of one batch (longest prompts first, as HFLM groups requests). Trace lines are written in request
        order, each as soon as every earlier request is done."""
        step_registry.clear()
        eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        eos_ids = self.eos_ids()
        prepared = [self._prepare(req, eos_text, eos_ids) for req in requests]
        if self.rag_strategies:
            desc = f"dynheads RAG ({'+'.join(s.label for s in self.rag_strategies)})"
            results = []
            for p in tqdm(prepared, disable=disable_tqdm or self.rank != 0, desc=desc):
                texts = self._rag_request(p["context"], p["doc"], p["offsets"], p["kept_from"], p["ids"], p["support"],
                                          p["max_gen"], p["eos_ids"], p["stop"], p["until"], p["task"], p["doc_id"],
                                          p["sample_key"], disable_tqdm)
                results.append(texts[0])
                self.cache_hook.add_partial("generate_until", (p["context"], p["gen_kwargs"]), texts[0])
            return results
        decode = [self._decode_request(p) for p in prepared]
        for request in decode:
            request.check(self.engine)  # every bad request fails before any decoding
        size = self.decode_batch_size()
        order = sorted(range(len(decode)), key=lambda i: -len(decode[i].prompt_ids))
        names = "+".join(c.name for c in self.conditions)
        results: list[str | None] = [None] * len(decode)
        done: dict[int, list[Generation]] = {}
        written = 0
        rows = sum(len(r.conditions) for r in decode)
        with tqdm(total=rows, disable=disable_tqdm or self.rank != 0, unit="row",
                  desc=f"dynheads generate (mask={names}, batch {size})") as bar:
            def on_step(_request: int, condition: str, steps: int, finished: bool) -> None:
                if finished:
                    bar.update(1)

            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                for i, gens in zip(chunk, self.engine.generate_batch([decode[i] for i in chunk], batch_size=size, on_step=on_step)):
                    done[i] = gens
                while written in done:  # in request order: trace files do not depend on the batch size
                    results[written] = self._finish(prepared[written], done.pop(written))
                    written += 1
        return results  # type: ignore[return-value]
