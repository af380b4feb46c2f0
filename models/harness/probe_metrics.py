"""A trained Claim 3 probe scored on the fly: ``--model_args probe=PATH`` adds its metrics to a task's table.

Why here: lm-eval's table reports the probe's F1 / AUPRC (Eq. 1 classifier) or R² / MAE (Eq. 2 regressor)
on the evaluated documents; the model predicts each step's heads from the step's hidden state and hands
predictions and traced targets to the task's ``process_results``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...traces import COPY_PASTE, hidden_rows, score_matrix
from ..engine import DecodingError, Generation


def check_probe(meta: dict[str, Any], model: str, hidden_dim: int, heads: int, path: str) -> None:
    """Refuse, in one line, a probe trained on another model, or on vectors of another size, or one that does not
    say which documents it was fitted on (it could then be scored on them, silently)."""
    if meta.get("model") != model or meta.get("hidden_dim") != hidden_dim or meta.get("heads") != heads:
        raise ValueError(f"dynheads: probe={path!r} was trained on {meta.get('model')} ({meta.get('hidden_dim')}-dim hidden "
                         f"states, {meta.get('heads')} heads) but this model is {model} ({hidden_dim}, {heads}); "
                         "train one on this model with run_suite.py --stages probes (or python -m dynheads.probes.train)")
    if "documents" not in meta:
        raise ValueError(f"dynheads: probe={path!r} does not record the documents it was trained on (saved before "
                         "probes recorded them), so it cannot be kept off them; refit it with run_suite.py --stages probes "
                         "(or python -m dynheads.probes.train)")


def probe_record(probe: Any, meta: dict[str, Any], kind: str, gen: Generation, layers: int, heads: int,
                 path: str) -> dict[str, Any]:
    """The probe's predictions for one generation's steps beside the traced targets (for the task's probe metrics)."""
    if meta.get("kind") != kind:
        raise DecodingError(f"dynheads: probe={path!r} was trained on {meta.get('kind')} heads but this task's documents give "
                            f"{kind} heads; use a probe trained on this kind (copy_paste: NIAH-style needles, reasoning: supporting facts)")
    hidden = hidden_rows(gen, meta["hidden_dim"])
    pred = probe.predict_proba(hidden) if kind == COPY_PASTE else probe.predict(hidden)
    return {"kind": kind, "target": score_matrix(gen.steps, layers, heads).tolist(), "pred": pred.tolist(),
            "threshold": getattr(probe, "threshold_", None)}


def check_offset(meta: dict[str, Any], path: str, offset: int = 1) -> None:
    """Refuse, in one line, a KV probe that does not predict ``offset`` steps ahead (kv=dynamic must choose a step's
    heads before the step runs, from the previous step's hidden state)."""
    if meta.get("offset") != offset:
        raise ValueError(f"dynheads: kv_probe={path!r} predicts {meta.get('offset', 0)} steps ahead but kv=dynamic needs "
                         f"a temporal-offset-{offset} probe; save one with run_suite.py --stages kv")


def kv_predictor(probe: Any, meta: dict[str, Any], kind: str, path: str) -> Any:
    """``hidden [rows, d] -> scores [rows, layers * heads]`` of an offset-1 probe (probabilities of an Eq. 1
    classifier, scores of an Eq. 2 regressor), refused for a document of another kind."""
    if probe is None:
        raise DecodingError("dynheads: kv=dynamic needs kv_probe=PATH (a temporal-offset-1 probe)")
    if meta.get("kind") != kind:
        raise DecodingError(f"dynheads: kv_probe={path!r} was trained on {meta.get('kind')} heads but this task's documents "
                            f"give {kind} heads; use the KV probe of this kind")
    predict = probe.predict_proba if kind == COPY_PASTE else probe.predict

    def scores(hidden: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(predict(hidden.float().numpy()), dtype=np.float32))

    return scores
