"""Helpers shared by the suite's lm-eval tasks: the model's tokenizer from metadata, prompt styles (chat / completion).

Why shared: every task renders its prompt through the evaluated model's own chat template (so a
score difference between tasks or models is never a template accident), gives a model without one (a base model) a
completion prompt that ends in the answer's lead-in, and resolves that tokenizer from the same metadata keys
(``tokenizer``, else ``pretrained``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from ..metrics.hallucination import absence_share, scored_steps
from ..metrics.kv_shares import mean_kept
from ..models.harness import step_registry
from ..models.rag.measures import lm_eval_metrics
from ..traces import COPY_PASTE, REASONING

HEAD_METRICS_WITHOUT_STATIC = ("heads_per_step", "heads_per_step_std", "unique_heads", "adjacent_jaccard", "head_entropy")
HEAD_METRICS = HEAD_METRICS_WITHOUT_STATIC + ("jaccard_static_20", "jaccard_static_50", "jaccard_static_100")
PROBE_METRICS = {COPY_PASTE: ("probe_f1", "probe_auprc"), REASONING: ("probe_r2", "probe_mae")}  # by probe kind
HALLUCINATION_METRICS = ("hallucination_absence", "hallucination_auroc")  # with hallucination=absence
KV_METRICS = ("kv_kept_heads", "kv_kept_kv")  # with kv=: measured share of (head, key) pairs kept, per query / KV head


@lru_cache(maxsize=4)
def _load_tokenizer(name: str | None):
    from ..models.harness.loading import load_tokenizer

    return load_tokenizer(name)


def tokenizer_from_spec(spec: Any, task: str):
    """A tokenizer from a name/path (``None`` = embedded SmolLM2) or a tokenizer object, cached."""
    if spec is None or isinstance(spec, str):
        return _load_tokenizer(spec)
    if callable(spec) and hasattr(spec, "decode"):
        return spec
    raise ValueError(f"{task}: metadata 'tokenizer'/'pretrained' = {spec!r} is neither a name/path nor a tokenizer")


def metadata_error(task: str, key: str, value: Any, problem: str, example: str) -> ValueError:
    """One line naming the bad ``--metadata`` entry of ``task`` and an example of a good one."""
    return ValueError(f"{task}: metadata {key!r} = {value!r} {problem}; fix it with e.g. --metadata '{{\"{key}\": {example}}}'")


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` without special tokens (the unit of every length and bucket in the tasks)."""
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


PROMPT_STYLES = ("auto", "chat", "completion")
COMPLETION_STOP = ("\n",)  # a completion prompt's answer is one line; a base model goes on with a new "Question:"


def prompt_style(tokenizer: Any, requested: str | None = "auto", task: str = "task") -> str:
    """``"chat"`` or ``"completion"``: ``auto`` (the default) picks chat for a tokenizer with a chat template (an
    instruct model) and completion for one without (a base model, which given the dialogue as plain text answers by
    repeating its question and instruction: issue 36's Gemma-3-270M pilot, 0 retrieval heads in 64 steps)."""
    style = requested or "auto"
    if style not in PROMPT_STYLES:
        raise metadata_error(task, "prompt_style", requested, f"must be one of {', '.join(PROMPT_STYLES)}", '"auto"')
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "chat" and not has_template:
        raise metadata_error(task, "prompt_style", requested, "needs a tokenizer with a chat template (this one has none)",
                             '"completion"')
    if style == "auto":
        return "chat" if has_template else "completion"
    return style


def render_dialogue(tokenizer: Any, system: str, user: str) -> str:
    """System + user turns through the tokenizer's chat template (generation prompt added).

    Templates that refuse a system turn get it merged into the user turn.
    """
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja2 TemplateError from templates that allow no system turn
        merged = [{"role": "user", "content": f"{system}\n\n{user}"}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def completion_fields(style: str, answer_prefix: str = "", stops: tuple[str, ...] = COMPLETION_STOP) -> dict[str, Any]:
    """The document keys a completion prompt adds (none for chat, so chat documents are unchanged): its style, the
    stop sequences the ``dynheads`` model adds to the task's ``until``, and the answer's lead-in that the prompt
    already says (read back in front of the response where a metric compares whole sentences)."""
    if style != "completion":
        return {}
    return {"prompt_style": style, "stop": list(stops), "answer_prefix": answer_prefix}


def head_metrics(doc: Mapping[str, Any], answer: tuple[tuple[int, int], bool] | None = None) -> dict[str, Any]:
    """Per-sample values of the head statistics, when the ``dynheads`` model traced this document.

    Each metric receives the same value, ``{"steps", "total_heads", "static"}``; its corpus-level
    aggregation in the YAML (:mod:`dynheads.metrics.dynamism` ``agg_*``) computes the statistic over all
    steps of all samples. Without a trace (``--model hf``) the dict is empty, so the metrics are absent.
    ``answer``: the answer's character span in the response and whether it is hallucinated (the task's
    label), for the ``hallucination=absence`` metrics.
    """
    record = step_registry.take(doc)
    if record is None:
        return {}
    if "rag" in record:  # Section 5: the RAG answer's retrieval measures (per retrieval, pooled by the YAML)
        return lm_eval_metrics(record["rag"])
    names = HEAD_METRICS if record.get("static") else HEAD_METRICS_WITHOUT_STATIC
    probe = record.get("probe")  # with --model_args probe=PATH: predictions and targets of this document's steps
    probe_names = () if probe is None else PROBE_METRICS[probe["kind"]]
    return {**{name: record for name in names}, **{name: probe for name in probe_names},
            **hallucination_metrics(record, answer), **kv_metrics(record)}


def kv_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """With ``kv=``: the first condition's measured KV shares kept, averaged over this sample's steps."""
    kept = record.get("kv_kept")
    if not kept:
        return {}
    return dict(zip(KV_METRICS, mean_kept(kept)))


def hallucination_metrics(record: Mapping[str, Any], answer: tuple[tuple[int, int], bool] | None) -> dict[str, Any]:
    """With ``hallucination=absence``: the share of answer steps without a retrieval head (``hallucination_absence``,
    averaged) and the pair (score, hallucinated) whose aggregation is its AUROC over the run."""
    if "hallucination" not in record or answer is None:
        return {}
    span, hallucinated = answer
    steps = scored_steps(record["hallucination"]["ends"], span)
    score = absence_share(record["steps"], steps)
    return dict(zip(HALLUCINATION_METRICS, (score, (score, bool(hallucinated)))))
