"""The ``dynheads`` model for lm-evaluation-harness: HF loading from ``HFLM``, decoding from :class:`TraceEngine`.

Why a subclass of lm-eval's ``HFLM``: users get the same ``pretrained``/``dtype``/``device``/
``max_length`` arguments and tokenisation as ``--model hf``, so a score difference between the two is
the effect of masking, never of a different prompt. Only ``generate_until`` is replaced: each request
is decoded step by step by the trace engine, which reads the retrieval heads (Eq. 1 when the document
carries a needle, Eq. 2 when it marks supporting facts) and gates heads according to ``mask``.

This module is the lm-eval wrapper only. The model arguments are parsed once into
:class:`~dynheads.models.harness.settings.ModelSettings` (their list is in the README, "Model arguments");
prompts are encoded by :mod:`dynheads.models.harness.prompts`; trace lines are written through
:mod:`dynheads.traces`; the probe metrics come from :mod:`dynheads.models.harness.probe_metrics`; ``rag=``
requests go to :mod:`dynheads.models.harness.rag_requests`.

Head statistics in lm-eval's table: the first condition's per-step heads are handed to the task's
``process_results`` through :mod:`dynheads.models.harness.step_registry` (lm-eval passes only strings back from
a model).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from ... import traces
from ...metrics.hallucination import token_ends
from .loaded_probe import LoadedProbe
from . import step_registry
from .request_conditions import kv_identity, request_conditions
from ..engine import DecodeRequest, Generation, TraceEngine
from ...util import text_config
from .loading import embedded_revision, resolve_pretrained
from .held_out import check_request
from .probe_metrics import check_offset, check_probe, probe_record
from ..engine.scores import COPY_PASTE, CopyPasteScore
from .prompts import PreparedRequest, PromptEncoder, cut_at_line_stop, header_length, response_header_ids
from .rag_requests import answer_request, check_requirements, rag_identity
from .settings import ModelSettings
from .static_heads import StaticHeads, calibration_for, load_static_heads

STATIC_TOP = 100  # static heads handed to the task for the Jaccard columns (k = 20, 50, 100)
SETTING_ARGS = ModelSettings.ARGS  # the dynheads arguments; the rest go to HFLM


class DynHeadsLM(HFLM):
    """lm-eval model that decodes greedily with the trace engine (see module docstring)."""

    def __init__(self, pretrained: str | None = None, device: str | None = None, **kwargs: Any) -> None:
        own = {name: kwargs.pop(name) for name in SETTING_ARGS if name in kwargs}
        self.settings = ModelSettings.parse(**own)  # every argument checked before the (slow) model load
        self.pretrained_name = pretrained or "smollm2"
        self.probe = LoadedProbe.load(self.settings.probe) if self.settings.probe else None
        self.rag_probe = self.probe
        self.kv_probe = LoadedProbe.load(self.settings.kv.probe) if self.settings.kv.probe else None
        self._check_rag(self.settings)
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            # lm_eval's CLI passes --device (default cuda:0) even on CPU-only machines.
            device = "cuda" if torch.cuda.is_available() else "cpu"
        resolved = resolve_pretrained(pretrained, revision=kwargs.get("revision") or "main",
                                      trust_remote_code=bool(kwargs.get("trust_remote_code", False)))
        super().__init__(pretrained=resolved, device=device, **kwargs)
        self.revision = embedded_revision(self.pretrained_name) or kwargs.get("revision") or "main"
        self.engine = TraceEngine(self.model)
        self.response_header = response_header_ids(self.tokenizer)  # Lookback Lens's new tokens start here
        self.total_heads = self.engine.num_layers * self.engine.num_heads
        if self.probe is not None:
            self._check_probe(self.probe)
        if self.kv_probe is not None:
            self._check_probe(self.kv_probe, offset=1)
        self.settings.check_model(self.total_heads, self.engine.gate_mask)
        self._static: dict[str, StaticHeads] = {}

    # -- configuration -------------------------------------------------------------------------------
    def configure(self, mask: str = "none", heads: str | int | None = None, trace_dir: str | os.PathLike | None = None,
                  hidden: bool | None = None, rag: str | None = None, kv: str | None = None) -> None:
        """(Re)select the mask conditions, head count, trace folder, hidden-state recording (None: unchanged),
        RAG strategies (None: no RAG) and KV strategies (None: none) without reloading the model. A refused call
        changes nothing."""
        settings = self.settings.replace_run(mask=mask, heads=heads, trace_dir=trace_dir, hidden=hidden, rag=rag, kv=kv)
        settings.check_model(self.total_heads, self.engine.gate_mask)
        self._check_rag(settings)
        self.settings = settings

    def _check_rag(self, settings: ModelSettings) -> None:
        if settings.rag_strategies:
            check_requirements(settings.rag_strategies, self.rag_probe, settings.static.source)

    def _check_probe(self, probe: LoadedProbe, offset: int | None = None) -> None:
        """A loaded probe's file fits this model (and, for ``kv=dynamic``, predicts ``offset`` steps ahead)."""
        check_probe(probe.meta, self.pretrained_name, text_config(self.model).hidden_size, self.total_heads, probe.path)
        if offset is not None:
            check_offset(probe.meta, probe.path, offset)

    def use_kv_probe(self, path: str | os.PathLike) -> None:
        """Give ``kv=dynamic`` the temporal-offset-1 probe saved at ``path`` (checked against this model)."""
        probe = LoadedProbe.load(path)
        self._check_probe(probe, offset=1)
        self.kv_probe = probe
        self.settings = dataclasses.replace(self.settings, kv=dataclasses.replace(self.settings.kv, probe=str(path)))

    def use_rag_probe(self, path: str | os.PathLike) -> None:
        """Give the ``dynamic`` RAG strategy the probe saved at ``path`` (checked against this model). Unlike
        ``probe=PATH`` it adds no probe metrics to other tasks."""
        probe = LoadedProbe.load(path)
        self._check_probe(probe)
        self.rag_probe = probe

    def identity(self) -> dict[str, Any]:
        """What fixes this model's outputs beyond the prompt: name, revision (the hub commit when known, else
        the requested one; for embedded models the providing package's version), dtype and the trace format.
        Cached results are keyed on it."""
        commit = getattr(self.model.config, "_commit_hash", None)
        return {"model": self.pretrained_name, "revision": commit or self.revision,
                "dtype": str(self.model.dtype).replace("torch.", ""), "trace_format": traces.TRACE_FORMAT}

    def rag_identity(self, strategies: list[str]) -> dict[str, Any]:
        """What decides the windows of these RAG strategies beyond the model (cell keys)."""
        return rag_identity(self, strategies)

    def kv_identity(self, kind: str, strategies: list[str]) -> dict[str, Any]:
        """What decides the choices of these KV strategies beyond the model (cell keys)."""
        return kv_identity(self, kind, strategies)

    # -- static heads ------------------------------------------------------------------------------
    def static(self, kind: str = COPY_PASTE) -> StaticHeads | None:
        """The static-head calibration of this model (loaded, or computed once and cached); None if off.

        ``kind``: the retrieval score the heads rank by (``copy_paste``: Eq. 1 on needle documents;
        ``reasoning``: Eq. 2 on supporting-fact documents), whose calibration a task registered. A
        ``static_heads=PATH`` calibration file serves the kind it was made for (a plain ranked list serves both).
        """
        source = self.settings.static.source
        if kind not in self._static and source != "off":
            if source != "auto":
                static = load_static_heads(source, kind)
            else:
                calibration = calibration_for(kind)
                if calibration is None:
                    raise ValueError(f"dynheads: no {kind} static-head calibration is registered; import a task whose "
                                     f"documents use it (its package registers it), or pass static_heads=PATH or off")
                static = calibration.run(self, self.calibration_options, tqdm)
            self.engine.gate_mask(static.heads)  # a ranking for another model fails here, clearly
            self._static[kind] = static
        return self._static.get(kind)

    def matched_count(self, kind: str = COPY_PASTE) -> int:
        """N for static/random: ``heads=N`` if given, else the calibration's matched count."""
        heads = self.settings.mask.heads
        return heads if isinstance(heads, int) else self.calibrated_count(kind)

    def calibrated_count(self, kind: str = COPY_PASTE) -> int:
        """The calibration's matched count N of ``kind``, whatever ``heads`` is currently configured."""
        static = self.static(kind)
        if static is None or static.matched_n is None:
            raise ValueError("dynheads: no matched head count in the static-head file; give heads=N")
        return static.matched_n

    @property
    def calibration_options(self) -> dict[str, Any]:
        """What a registered calibration reads: the ``calib_*`` arguments (None = the task's default) and Eq. 2 settings."""
        return {**self.settings.static.calibration, "reasoning": self.settings.reasoning}

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def encoder(self) -> PromptEncoder:
        """Prompts encoded as ``HFLM`` does, left-truncated only when ``max_length`` was given."""
        return PromptEncoder(self.tokenizer, self.tok_encode, self.max_length if self._max_length else None)

    def eos_ids(self) -> set[int]:
        """End-of-sequence ids: the tokenizer's, plus the generation config's (chat models add <|im_end|> etc.)."""
        ids = {self.eot_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        return ids

    def decode_batch_size(self) -> int:
        """Prompts decoded together (each with all its conditions as rows): lm-eval's ``--batch_size N``; for
        ``auto`` the largest of ``max_batch_size`` that the engine's memory check lets through per batch."""
        size = self.batch_size_per_gpu
        if str(size).startswith("auto"):
            return int(self.max_batch_size or 64)
        return max(1, int(size))

    def trace_file(self, task: str) -> Path | None:
        """This process's trace file of ``task`` (one per rank under lm-eval's data parallelism), if tracing."""
        return None if self.settings.trace_dir is None else traces.trace_path(self.settings.trace_dir, task, self.rank)

    # -- lm-eval API -------------------------------------------------------------------------------
    def _prepare(self, req: Any, eos_text: str, eos_ids: set[int]) -> PreparedRequest:
        """One request's prompt, retrieval indices, stop rule and bookkeeping (everything before decoding)."""
        context, gen_kwargs = req.args
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        if kwargs.get("do_sample"):
            raise ValueError("dynheads: decoding is greedy (as in the paper); set do_sample: false in the task's generation_kwargs")
        doc = getattr(req, "doc", None)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
        # a completion prompt's document names its own stops (a base model's answer ends with its line; tasks/common.py)
        line_stops = tuple(doc.get("stop") or ()) if isinstance(doc, dict) else ()
        max_gen = int(kwargs.pop("max_gen_toks"))
        prompt = self.encoder.encode(context, doc if isinstance(doc, dict) else None, max_gen,
                                     with_context=bool(self.settings.rag_strategies))
        score = self.settings.reasoning if prompt.support is not None else CopyPasteScore()
        task, doc_id = getattr(req, "task_name", None) or "task", getattr(req, "doc_id", None)
        doc_key = step_registry.doc_key(doc) if isinstance(doc, dict) else None
        if doc_key is not None:
            check_request(self, doc, doc_key, score.kind if prompt.needle is not None else None, task, doc_id)

        def stop(generated: list[int]) -> bool:
            text = self.tokenizer.decode(generated[-16:], skip_special_tokens=False)
            if any(u and u in text for u in until):
                return True
            return bool(line_stops) and cut_at_line_stop(self.tok_decode(generated), line_stops) is not None

        return PreparedRequest(context, gen_kwargs, doc, prompt, score, until, max_gen, stop, eos_ids, task, doc_id, doc_key,
                               line_stops)

    def _decode_request(self, p: PreparedRequest) -> DecodeRequest:
        conditions = request_conditions(self, p.task, p.sample_key, p.score.kind)
        prompt = p.prompt
        return DecodeRequest(prompt.ids, p.max_gen, conditions, target=prompt.target, score=p.score,
                             eos_token_ids=p.eos_ids, stop=p.stop,
                             record_hidden=self.settings.hidden.record or self.probe is not None,
                             response_header=header_length(prompt.ids, self.response_header))

    def text(self, token_ids: list[int], until: list[str], line_stops: Sequence[str] = ()) -> str:
        """The answer text of generated tokens, cut at the stop sequences as ``HFLM`` cuts it, then at a completion
        document's own stops after the answer's first character (:func:`cut_at_line_stop`)."""
        text = postprocess_generated_text(generation=self.tok_decode(token_ids), stop=until, think_end_token=None)
        cut = cut_at_line_stop(text, line_stops) if line_stops else None
        return text if cut is None else cut

    def _finish(self, p: PreparedRequest, gens: list[Generation]) -> str:
        """Texts, the heads handed to process_results, and the trace lines of one decoded request."""
        texts = [self.text(g.token_ids, p.until, p.line_stops) for g in gens]
        prompt = p.prompt
        if prompt.target is not None and isinstance(p.doc, dict):
            static = self.static(p.score.kind)
            record = {"steps": [[list(h) for h in s.heads] for s in gens[0].steps], "total_heads": self.total_heads,
                      "static": [list(h) for h in static.heads[:STATIC_TOP]] if static is not None and static.informative else None}
            if gens[0].steps and gens[0].steps[0].kv_kept is not None:  # the measured KV shares, for the task's table
                record["kv_kept"] = [list(s.kv_kept) for s in gens[0].steps]
            if self.settings.hallucination:  # where each step's characters end: the task finds its answer's steps
                record["hallucination"] = {"ends": token_ends(self.tok_decode, gens[0].token_ids)}
            if self.probe is not None:
                record["probe"] = probe_record(self.probe.estimator, self.probe.meta, p.score.kind, gens[0], self.engine.num_layers,
                                               self.engine.num_heads, self.settings.probe)
            step_registry.remember(p.doc, record)
        trace_file = self.trace_file(p.task)
        if trace_file is not None:
            score = p.score if p.score.records_scores else None
            kv = self.settings.kv.trace_fields() if self.settings.kv.strategies else None
            lines = [traces.generation_line(p.task, p.doc_id, g, t, prompt.target, score, p.doc_key, kv)
                     for g, t in zip(gens, texts)]
            hidden = self.settings.hidden.dtype if self.settings.hidden.record else None
            traces.write_generations(trace_file, lines, gens, hidden, self.pretrained_name, self.engine.num_layers,
                                     self.engine.num_heads, header_length(prompt.ids, self.response_header))
        self.cache_hook.add_partial("generate_until", (p.context, p.gen_kwargs), texts[0])
        return texts[0]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy answers; ``--batch_size N`` decodes N prompts at a time, each with all its mask conditions as
        rows of one batch (longest prompts first, as HFLM groups requests). Trace lines are written in request
        order, each as soon as every earlier request is done."""
        step_registry.clear()
        eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        eos_ids = self.eos_ids()
        prepared = [self._prepare(req, eos_text, eos_ids) for req in requests]
        quiet = disable_tqdm or self.rank != 0
        if self.settings.rag_strategies:
            desc = f"dynheads RAG ({'+'.join(s.label for s in self.settings.rag_strategies)})"
            results = []
            for p in tqdm(prepared, disable=quiet, desc=desc):
                results.append(answer_request(self, p, quiet))
                self.cache_hook.add_partial("generate_until", (p.context, p.gen_kwargs), results[-1])
            return results
        decode = [self._decode_request(p) for p in prepared]
        for request in decode:
            request.check(self.engine)  # every bad request fails before any decoding
        size = self.decode_batch_size()
        order = sorted(range(len(decode)), key=lambda i: -len(decode[i].prompt_ids))
        names = self.settings.kv.label() or "+".join(c.name for c in self.settings.mask.conditions)
        results: list[str | None] = [None] * len(decode)
        done: dict[int, list[Generation]] = {}
        written = 0
        with tqdm(total=sum(len(r.conditions) for r in decode), disable=quiet, unit="row",
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
