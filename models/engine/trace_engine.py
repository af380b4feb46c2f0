"""Greedy step-wise decoding that reads Eq. 1 heads at every step and can re-run a step with heads gated.

Why a custom loop rather than ``model.generate``: the ablations of the paper need, at one step, an
ungated pass (to find that step's retrieval heads) followed by a gated re-run of *the same step*.
With a KV cache this costs one extra single-token forward for the rows that need it: the ungated pass
appends one position, the gated pass replaces it (:meth:`DecodeBatch.rerun`). The prompt is never
recomputed.

Layout of a generation: the prompt minus its last token is prefilled without recording (so prefill
stays plain sdpa); then every step, including the first, feeds exactly one token, so every step can
be recorded and re-run in the same way.

Batching (:meth:`TraceEngine.generate_batch`): the conditions of a prompt, and the prompts of a batch,
are rows of one :class:`~dynheads.models.engine.batch.DecodeBatch` that step together; each prompt is
prefilled once, alone, and held once. Rows leave when they stop. A one-row batch is the one-at-a-time
engine, so both run the same code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import psutil
import torch

from ...metrics.heads import Head
from ...metrics.retrieval import argmax_key_positions, mask_to_heads
from .attention import install
from .batch import DecodeBatch, StepOutput, Streaming
from .conditions import ConditionRun, DecodeCondition, DecodingError, Pass, Reading, mask_condition
from .scores import CopyPasteScore, RetrievalScore, step_entropy
from ...util import kv_geometry, text_config

StepCallback = Callable[[int, str, int, bool], None]  # (request index, condition, steps, finished)


@dataclass
class Step:
    """One decode step.

    ``heads``: the retrieval heads (Eq. 1 set, or Eq. 2 set under a :class:`~dynheads.models.engine.scores.ReasoningScore`) of the
    step's first pass (ungated for none/dynamic; under static/random the only pass, run with the fixed
    heads gated). ``gated``: heads silenced for the emitted token.
    ``heads_after``: the same kind of set for the dynamic re-run with ``gated`` silenced (H' of Appendix A.2; empty
    when the step was not re-run). ``ungated_token_id``: the discarded token of a re-run step.
    ``entropy``, ``token_prob``, ``context_mass``, ``target_mass``: what the hallucination detectors read
    (uncertainty baselines; Lookback Lens's lookback ratio, whose numerator is the attention on the prompt before its
    response header; each head's attention on the target, a retrieval signal that needs no token match); recorded on
    traced steps only, from tensors the traced step computes anyway (the logits and the recorded attention rows).
    """

    token_id: int
    heads: list[Head] = field(default_factory=list)
    # traced steps: where each of ``heads`` looked, its most-attended key as a prompt-relative position, in ``heads``'
    # order (the trace explorer shows it; for an Eq. 1 head it is the needle token it copied)
    attended: list[int] | None = field(default=None, compare=False)
    ungated_token_id: int | None = None
    gated: list[Head] = field(default_factory=list)
    heads_after: list[Head] = field(default_factory=list)
    scores: list[list[float]] | None = None  # Eq. 2 only: [layer][head] score of the first pass
    hidden: torch.Tensor | None = None  # with record_hidden: the first pass's final hidden state (float32, CPU)
    # traced steps only, all from the first pass (the hallucination detectors' raw signals); left out of step
    # equality, which is about what was decoded (tokens, head sets), not float readings of it:
    entropy: float | None = field(default=None, compare=False)  # entropy (nats) of the next-token distribution
    token_prob: float | None = field(default=None, compare=False)  # probability of its greedy (argmax) token
    context_mass: torch.Tensor | None = field(default=None, compare=False)  # [layers, heads] on the prompt less its header
    target_mass: torch.Tensor | None = field(default=None, compare=False)  # [layers, heads] on the target (needle, facts)
    # KV compression only: the heads that kept the whole context for the emitted token, and the measured share of
    # (head, key) pairs attended, per query head and per KV head, out of the unrestricted count
    kv_full: list[Head] | None = None
    kv_kept: tuple[float, float] | None = field(default=None, compare=False)


@dataclass
class Generation:
    prompt_ids: list[int]
    steps: list[Step]
    condition: str = "none"

    @property
    def token_ids(self) -> list[int]:
        return [s.token_id for s in self.steps]


def available_bytes(device: torch.device) -> int:
    """Memory a batch may use: free device memory on a GPU, else available RAM (headroom kept for the rest)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    return int(psutil.virtual_memory().available * 0.8)


def log_line(message: str) -> None:
    """One line on stderr (batches split to fit memory): seen beside progress bars, never in results."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class DecodeRequest:
    """One prompt and the conditions to decode it under (one :class:`Generation` each).

    ``target``: the prompt's token indices that define its retrieval heads (a needle for Eq. 1, supporting
    facts for Eq. 2), found at every step by ``score`` (default :class:`CopyPasteScore`); without a target
    the decoding is untraced. Decoding stops after an EOS token (kept in the steps), when
    ``stop(generated_ids)`` is true, or after ``max_new_tokens``. ``record_hidden``: keep each step's
    first-pass final hidden state (``Step.hidden``). ``response_header``: how many of the prompt's last tokens open
    the response (the chat template's assistant header); Lookback Lens counts them among the new tokens, so a step's
    ``context_mass`` leaves them out.
    """

    prompt_ids: Sequence[int]
    max_new_tokens: int
    conditions: Sequence[DecodeCondition | str] = ("none",)
    target: Sequence[int] | None = None
    score: RetrievalScore | None = None
    eos_token_ids: Iterable[int] = ()
    stop: Callable[[list[int]], bool] | None = None
    record_hidden: bool = False
    response_header: int = 0

    def __post_init__(self) -> None:
        self.prompt_ids = [int(t) for t in self.prompt_ids]
        self.conditions = [c if isinstance(c, DecodeCondition) else mask_condition(c) for c in self.conditions]
        self.eos_token_ids = set(self.eos_token_ids)
        if self.target is not None:
            self.target = [int(i) for i in self.target]
            self.score = self.score or CopyPasteScore()

    def check(self, engine: "TraceEngine") -> None:
        """Every problem with this request as one clear error, before any compute."""
        if not self.conditions:
            raise DecodingError("dynheads: no mask condition given; pass at least one, e.g. 'none'")
        n = len(self.prompt_ids)
        if n == 0:
            raise DecodingError("dynheads: empty prompt; give at least one token")
        if self.max_new_tokens < 1:
            raise DecodingError(f"dynheads: max_new_tokens={self.max_new_tokens}; ask for at least one new token")
        if not 0 <= self.response_header < n:
            raise DecodingError(f"dynheads: response_header={self.response_header} must be >= 0 and shorter than the "
                                f"{n}-token prompt")
        if engine.max_positions is not None and n + self.max_new_tokens > engine.max_positions:
            raise DecodingError(
                f"dynheads: prompt of {n} tokens + {self.max_new_tokens} new tokens exceeds this model's "
                f"{engine.max_positions} positions; use a shorter context (smaller task length) or fewer new tokens"
            )
        target = self.target
        if target is not None:
            bad = [i for i in target if not 0 <= i < n]
            if bad or not target:
                raise DecodingError(
                    f"dynheads: target token indices {bad or '[]'} are outside the {n}-token prompt; the needle or "
                    "supporting facts were lost (truncated?) -- shorten the context or raise max_length"
                )
        for condition in self.conditions:
            condition.check(engine, target is not None)


@dataclass
class _Row:
    """One (request, condition) continuation inside a batch."""

    request: int
    condition: DecodeCondition
    run: ConditionRun
    traced: bool
    steps: list[Step] = field(default_factory=list)


class TraceEngine:
    """Step-wise greedy decoder over a Hugging Face causal LM with head tracing and gating.

    ``mask`` modes of :meth:`generate`:

    * ``none``    -- plain greedy decoding (traced when ``target`` indices are given);
    * ``dynamic`` -- per step: ungated pass, Eq. 1 heads found, those heads gated, step re-run;
    * ``dynamic:k`` -- as dynamic, but only the k heads with the most attention on the copied token;
    * ``static`` / ``random`` -- the fixed ``gate_heads`` are gated at every step, in a single pass
      (traced heads are those of that gated pass).

    A KV-compression condition (:mod:`dynheads.models.engine.kv`) gates nothing: its streaming heads see only attention
    sinks plus a recent window, and every step records the heads kept whole and the measured share of the cache it
    attended. The loop only asks each row's condition (:mod:`dynheads.models.engine.conditions`) for the view of
    each pass; it names no strategy.

    :meth:`generate_many` runs several conditions over one shared prefill; :meth:`generate_batch` runs
    many prompts, ``batch_size`` prompts (with all their conditions) at a time.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int = 1) -> None:
        install(model)
        self.model = model.eval()
        cfg = text_config(model)
        self.num_layers: int = cfg.num_hidden_layers
        self.num_heads: int = cfg.num_attention_heads
        self.num_kv_heads: int = kv_geometry(cfg)[0]
        self.max_positions: int | None = getattr(cfg, "max_position_embeddings", None)
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def gate_mask(self, heads: Iterable[Head]) -> torch.Tensor:
        """Boolean ``[layers, heads]`` tensor for a head list, validating every index."""
        gate = torch.zeros(self.num_layers, self.num_heads, dtype=torch.bool, device=self.device)
        for layer, head in heads:
            if not (0 <= layer < self.num_layers and 0 <= head < self.num_heads):
                raise DecodingError(
                    f"dynheads: head ({layer}, {head}) does not exist; this model has "
                    f"{self.num_layers} layers x {self.num_heads} heads (0-based)"
                )
            gate[layer, head] = True
        return gate

    def batch(self, prompts: Sequence[Sequence[int]], rows_of: Sequence[int]) -> DecodeBatch:
        """The step API (:class:`~dynheads.models.engine.batch.DecodeBatch`) over this engine's model."""
        return DecodeBatch(self.model, prompts, rows_of)

    # -- decoding --------------------------------------------------------------------------------
    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        target: Sequence[int] | None = None,
        score: RetrievalScore | None = None,
        mask: DecodeCondition | str = "none",
        gate_heads: Iterable[Head] | None = None,
        eos_token_ids: Iterable[int] = (),
        stop: Callable[[list[int]], bool] | None = None,
        record_hidden: bool = False,
    ) -> Generation:
        """Greedy decoding of up to ``max_new_tokens`` tokens after ``prompt_ids`` under one condition (a condition
        object, or a mask name such as ``"dynamic:5"`` with the fixed ``gate_heads`` of static / random)."""
        condition = mask if isinstance(mask, DecodeCondition) else mask_condition(mask, tuple(gate_heads or ()))
        return self.generate_many(prompt_ids, max_new_tokens, [condition], target=target, score=score,
                                  eos_token_ids=eos_token_ids, stop=stop, record_hidden=record_hidden)[0]

    def generate_many(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        conditions: Sequence[DecodeCondition | str],
        *,
        target: Sequence[int] | None = None,
        score: RetrievalScore | None = None,
        eos_token_ids: Iterable[int] = (),
        stop: Callable[[list[int]], bool] | None = None,
        on_step: Callable[[str, int, bool], None] | None = None,
        record_hidden: bool = False,
    ) -> list[Generation]:
        """One greedy generation per condition, all rows of one batch over one prefill of the prompt.

        Why shared: the conditions of an ablation differ only from the first generated token on, so the
        prompt's KV cache is computed once and held once; the comparison is then exact (identical prefill
        numerics) and an N-condition grid costs one prefill instead of N.
        ``on_step(condition, steps, finished)`` is called after every decode step of a condition and when it
        ends (progress bars).
        """
        request = DecodeRequest(prompt_ids, max_new_tokens, conditions, target, score,
                                eos_token_ids, stop, record_hidden)
        callback = None if on_step is None else (lambda _i, name, steps, done: on_step(name, steps, done))
        return self.generate_batch([request], batch_size=1, on_step=callback)[0]

    @torch.inference_mode()
    def generate_batch(self, requests: Sequence[DecodeRequest], batch_size: int | None = None,
                       on_step: StepCallback | None = None) -> list[list[Generation]]:
        """Generations for many requests, ``batch_size`` prompts (with all their conditions as rows) per batch.

        Prompts are batched longest first (as lm-eval's HF model groups requests), so a batch's left padding
        stays small; results come back in request order. ``batch_size`` defaults to the engine's.
        """
        requests = list(requests)
        for request in requests:
            request.check(self)
        size = max(1, int(batch_size or self.batch_size))
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
        results: list[list[Generation]] = [[] for _ in requests]
        todo = [order[start : start + size] for start in range(0, len(order), size)]
        while todo:
            chunk = todo.pop(0)
            need, free = self.batch_bytes(requests, chunk), available_bytes(self.device)
            if len(chunk) > 1 and need > free:
                half = (len(chunk) + 1) // 2
                log_line(f"dynheads: a batch of {len(chunk)} prompts needs ~{need / 2**30:.1f} GiB but {free / 2**30:.1f} GiB "
                         f"is free; decoding it as batches of {half} and {len(chunk) - half}")
                todo[:0] = [chunk[:half], chunk[half:]]
                continue
            rows = [_Row(i, c, c.start(self), requests[i].target is not None) for i in chunk for c in requests[i].conditions]
            try:
                self._decode(requests, chunk, rows, on_step)
            except torch.OutOfMemoryError:
                if len(chunk) == 1:
                    raise
                half = (len(chunk) + 1) // 2
                log_line(f"dynheads: a batch of {len(chunk)} prompts ran out of device memory; decoding it again as "
                         f"batches of {half} and {len(chunk) - half}")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                todo[:0] = [chunk[:half], chunk[half:]]
                continue
            for row in rows:
                results[row.request].append(Generation(requests[row.request].prompt_ids, row.steps, row.condition.name))
        return results

    def batch_bytes(self, requests: Sequence[DecodeRequest], chunk: Sequence[int]) -> int:
        """A generous estimate of the memory one batch takes beyond the model (why: split before running out).

        One prefill per prompt (padded to the longest), each row's new tokens, and per step the transient
        tensors of one layer's attention call (the gathered keys and values, their float32 copy for the
        recorded row) plus every layer's recorded float32 rows.
        """
        cfg = text_config(self.model)
        kv, dim = kv_geometry(cfg)
        item = next(self.model.parameters()).element_size()
        width = max(len(requests[i].prompt_ids) for i in chunk) + max(requests[i].max_new_tokens for i in chunk)
        rows = sum(len(requests[i].conditions) for i in chunk)
        per_position = 2 * kv * dim * item  # keys + values of one layer
        prefills = len(chunk) * width * self.num_layers * per_position
        step = rows * width * (per_position + 2 * kv * dim * 4 + self.num_heads * 4 * (self.num_layers + 2))
        return int(prefills + step)

    def _detect(self, rows: dict[int, torch.Tensor], seq: torch.Tensor, target: torch.Tensor, first: torch.Tensor,
                token: torch.Tensor, score: RetrievalScore, need_strength: bool = False,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Retrieval heads ``[rows, layers, heads]`` of the pass just run, and each head's strength (``score``).

        ``seq`` / ``target``: ``[rows, keys]`` token ids and target membership in the batch's padded
        coordinates, whose last key is the query; ``first``: ``[rows]`` padded index of each row's position 0.
        """
        return score.detect([rows[layer] for layer in range(self.num_layers)], seq, target, first, token, need_strength,
                            positions)

    def _decode(self, requests: Sequence[DecodeRequest], chunk: Sequence[int], rows: list[_Row],
                on_step: StepCallback | None) -> None:
        """Decode ``rows`` (the conditions of the requests in ``chunk``) as one batch, in place.

        Per step: every row's condition gives the view of the first pass; the pass runs for all rows; traced rows'
        retrieval heads are found; each condition reads what its row found and may ask for a re-run of the step
        under another view (the rows that do run once more, together); the token of the last pass is emitted."""
        device = self.device
        group_of = {i: g for g, i in enumerate(chunk)}
        batch = self.batch([requests[i].prompt_ids for i in chunk], [group_of[r.request] for r in rows])
        width = batch.width  # the prompts' last tokens all sit at padded index `width`
        steps_max = max(requests[i].max_new_tokens for i in chunk)
        count = len(rows)
        seq = torch.full((count, width + 1 + steps_max), -1, dtype=torch.long, device=device)
        target = torch.zeros_like(seq, dtype=torch.bool)
        context_keys = torch.zeros(count, width + 1, dtype=torch.bool, device=device)  # the prompt less its header
        first = torch.zeros(count, dtype=torch.long, device=device)
        for r, row in enumerate(rows):
            request = requests[row.request]
            n = len(request.prompt_ids)
            first[r] = width + 1 - n
            seq[r, first[r] : first[r] + n] = torch.tensor(request.prompt_ids, device=device)
            context_keys[r, first[r] : width + 1 - request.response_header] = True
            if request.target is not None:
                target[r, first[r] + torch.tensor(request.target, dtype=torch.long, device=device)] = True
        scores = {requests[row.request].score for row in rows if row.traced}
        if len(scores) > 1:
            raise DecodingError("dynheads: one batch cannot mix retrieval scores (Eq. 1 and Eq. 2, or other Eq. 2 settings)")
        score = next(iter(scores), None)
        record = any(row.traced for row in rows)
        hidden = any(requests[row.request].record_hidden or row.condition.needs_hidden for row in rows)
        strength = any(row.condition.needs_strength for row in rows)
        views = {row.condition.view for row in rows} - {None}
        if len(views) > 1:
            raise DecodingError("dynheads: one batch cannot mix kv_sink / kv_window settings; decode them separately")
        view = next(iter(views), None)
        active = list(range(count))
        for t in range(steps_max):
            qpos = width + t
            idx = torch.tensor(active, dtype=torch.long, device=device)
            passes = [rows[r].run.first_pass() for r in active]
            out = batch.step(seq[idx, qpos : qpos + 1], keep=self._keep(passes, always=False), record=record, hidden=hidden,
                             stream=self._stream(passes, view))
            token = out.logits.argmax(dim=-1)
            hit = peak = None
            if record:
                # each head's most-attended key, found once: Eq. 1 reads it, and the trace records it for the step's heads
                positions = argmax_key_positions([out.rows[layer] for layer in range(self.num_layers)], qpos + 1)
                hit, peak = self._detect(out.rows, seq[idx, : qpos + 1], target[idx, : qpos + 1], first[idx], token, score,
                                         strength, positions)
                entropy, token_prob, context_mass, target_mass = self._signals(out, qpos, target[idx, : width + 1],
                                                                               context_keys[idx])
                looked = (positions - first[idx][:, None, None]).cpu()
            rerun, again_passes = [], []
            for a, r in enumerate(active):
                row, request = rows[r], requests[rows[r].request]
                step = Step(token_id=-1, gated=list(passes[a].gated))
                if request.record_hidden:
                    step.hidden = out.hidden[a]
                if row.traced:
                    step.heads = mask_to_heads(hit[a])
                    step.attended = [int(looked[a, layer, head]) for layer, head in step.heads]
                    step.entropy, step.token_prob = float(entropy[a]), float(token_prob[a])
                    step.context_mass, step.target_mass = context_mass[a], target_mass[a]
                    if score.records_scores:
                        step.scores = [[round(float(v), 5) for v in line] for line in peak[a].tolist()]
                reading = Reading(int(token[a]), hit[a] if row.traced else None,
                                  peak[a] if row.traced and peak is not None else None,
                                  out.hidden[a] if out.hidden is not None else None)
                again = row.run.second_pass(reading)
                if again is None:
                    self._record_view(step, row, passes[a], out.kv_kept, a)
                else:
                    step.ungated_token_id, step.gated = reading.token, list(again.gated)
                    rerun.append(a)
                    again_passes.append(again)
                row.steps.append(step)
            if rerun:
                sub = torch.tensor(rerun, dtype=torch.long, device=device)
                again = batch.rerun(rerun, seq[idx[sub], qpos : qpos + 1], keep=self._keep(again_passes, always=True),
                                    record=True, stream=self._stream(again_passes, view))
                retoken = again.logits.argmax(dim=-1)
                after, _ = self._detect(again.rows, seq[idx[sub], : qpos + 1], target[idx[sub], : qpos + 1], first[idx[sub]],
                                        retoken, score)
                token = token.index_copy(0, sub, retoken)
                for j, a in enumerate(rerun):
                    row = rows[active[a]]
                    row.steps[-1].heads_after = mask_to_heads(after[j])
                    self._record_view(row.steps[-1], row, again_passes[j], again.kv_kept, j)
            if qpos + 1 < seq.shape[1]:
                seq[idx, qpos + 1] = token
            staying = []
            for a, r in enumerate(active):
                row, request = rows[r], requests[rows[r].request]
                step = row.steps[-1]
                step.token_id = int(token[a])
                generated = [s.token_id for s in row.steps]
                done = (step.token_id in request.eos_token_ids or len(row.steps) >= request.max_new_tokens
                        or (request.stop is not None and request.stop(generated)))
                if on_step is not None:
                    on_step(row.request, row.condition.name, len(row.steps), False)
                    if done:
                        on_step(row.request, row.condition.name, len(row.steps), True)
                if not done:
                    staying.append(a)
            if not staying:
                break
            active = batch.retain(staying, active)

    def _keep(self, passes: Sequence[Pass], always: bool) -> torch.Tensor | None:
        """``[rows, layers, heads]`` 1.0 for the heads each pass lets through (``None`` when none gates, unless
        ``always``: a re-run is always given its gates)."""
        if not always and all(p.gates is None for p in passes):
            return None
        open_ = torch.ones(self.num_layers, self.num_heads, device=self.device)
        return torch.stack([open_ if p.gates is None else (~p.gates).float().to(self.device) for p in passes])

    def _stream(self, passes: Sequence[Pass], view: tuple[int, int] | None) -> Streaming | None:
        """The streaming heads of each pass, when the batch holds a KV-compressing condition (``view``: sink, window)."""
        if view is None:
            return None
        whole = torch.zeros(self.num_layers, self.num_heads, dtype=torch.bool)
        return Streaming(torch.stack([whole if p.streaming is None else p.streaming for p in passes]), *view)

    @staticmethod
    def _record_view(step: Step, row: _Row, emitted: Pass, kv_kept: torch.Tensor | None, index: int) -> None:
        """What a KV-compressing row records of the pass that emitted its token: the heads kept whole and the measured
        share of the cache attended (query heads, KV heads)."""
        if row.condition.view is not None:
            step.kv_full = list(emitted.kept_whole)
            step.kv_kept = tuple(float(v) for v in kv_kept[index])

    def _signals(self, out: StepOutput, qpos: int, target: torch.Tensor,
                 context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per row of a traced step: the next-token entropy (nats), the greedy token's probability, and every head's
        attention mass on the row's ``context`` keys (the prompt less its response header) and on its ``target``
        keys (both ``[rows, width + 1]`` booleans over the decode's padded prompt; padding gets no attention), each
        ``[layers, heads]`` float32 on the CPU.

        Why the offset: the batch trims left padding when rows leave (:meth:`DecodeBatch.select`), so a step's rows
        may start ``offset`` keys later than the decode's coordinates; rows stay aligned on their last key, the
        query at ``qpos``."""
        entropy, token_prob = step_entropy(out.logits)
        offset = qpos + 1 - out.rows[0].shape[-1]
        keys = context.shape[1] - offset  # prompt keys still held
        prompt = [out.rows[layer][:, :, :keys] for layer in range(self.num_layers)]
        context, target = context[:, offset:], target[:, offset:]
        context_mass = torch.stack([(rows * context[:, None, :]).sum(dim=-1) for rows in prompt], dim=1)
        target_mass = torch.stack([(rows * target[:, None, :]).sum(dim=-1) for rows in prompt], dim=1)
        return entropy.cpu(), token_prob.cpu(), context_mass.float().cpu(), target_mass.float().cpu()
