"""MLP probes from the last hidden state to every head's retrieval score (paper Appendix A.5).

One network and one training loop serve both probes: :class:`HeadProbeClassifier` (NIAH, Eq. 1
indicators, Asymmetric Loss, a decision threshold chosen on validation data) and
:class:`HeadProbeRegressor` (HotpotQA, Eq. 2 scores, MSE). The paper's settings are the defaults:
hidden sizes [8192, 4096, 4096], dropout 0.1, Adam 3e-4, batch 128, up to 100 epochs,
reduce-on-plateau (patience 3) on the validation loss, gradient clipping at 1.0. Beyond the paper:
inputs are standardised with the training mean and deviation (hidden-state scales differ by
orders of magnitude between models), and training stops after ``stop_patience`` epochs without a
better validation loss, keeping the best weights (so a small quick profile does not overfit for 100
epochs). Estimators follow scikit-learn's shape: hyper-parameters in ``__init__``, ``fit`` /
``predict`` / ``predict_proba`` / ``score``.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .asl import AsymmetricLoss
from .evaluation import best_threshold, classification_scores, regression_scores
from ..util import atomic_target

PAPER_HIDDEN_SIZES = (8192, 4096, 4096)
FORMAT = 1  # saved-probe file format


def build_mlp(n_in: int, hidden_sizes: tuple[int, ...], n_out: int, dropout: float) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_in
    for size in hidden_sizes:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = size
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


class _HeadProbe(BaseEstimator):
    """Shared fit/predict machinery; subclasses set the loss and the output transform."""

    def __init__(self, hidden_sizes: tuple[int, ...] = PAPER_HIDDEN_SIZES, dropout: float = 0.1, lr: float = 3e-4,
                 batch_size: int = 128, max_epochs: int = 100, lr_patience: int = 3, stop_patience: int = 10,
                 grad_clip: float = 1.0, random_state: int = 0, device: str = "cpu") -> None:
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr_patience = lr_patience
        self.stop_patience = stop_patience
        self.grad_clip = grad_clip
        self.random_state = random_state
        self.device = device

    # -- subclass hooks ------------------------------------------------------------------------------
    def _loss(self) -> torch.nn.Module:
        raise NotImplementedError

    def _output(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    # -- fitting -------------------------------------------------------------------------------------
    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        X = (np.asarray(X, dtype=np.float32) - self.x_mean_) / self.x_scale_
        return torch.as_tensor(X, dtype=torch.float32, device=self.device)

    def _mean_loss(self, X: torch.Tensor, Y: torch.Tensor, loss_fn: torch.nn.Module) -> float:
        self.network_.eval()
        with torch.no_grad():
            total = sum(float(loss_fn(self.network_(X[i:i + 4096]), Y[i:i + 4096])) for i in range(0, len(X), 4096))
        return total / max(len(X), 1)

    def fit(self, X: np.ndarray, Y: np.ndarray, X_val: np.ndarray | None = None, Y_val: np.ndarray | None = None,
            progress: Any = None) -> "_HeadProbe":
        """Train on ``(X, Y)``; ``(X_val, Y_val)`` drives the learning-rate schedule, early stopping and the
        classifier's threshold (the training data do when none is given). ``progress`` wraps the epoch range."""
        X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y, dtype=np.float32)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) == 0:
            raise ValueError(f"dynheads: a probe needs X [steps, hidden] and Y [steps, heads] with equal steps, got {X.shape}, {Y.shape}")
        if X_val is None or Y_val is None or len(X_val) == 0:
            X_val, Y_val = X, Y
        torch.manual_seed(self.random_state)
        self.n_features_in_, self.n_outputs_ = X.shape[1], Y.shape[1]
        self.x_mean_ = X.mean(axis=0)
        self.x_scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0).astype(np.float32)
        self.network_ = build_mlp(X.shape[1], tuple(self.hidden_sizes), Y.shape[1], self.dropout).to(self.device)
        loss_fn = self._loss()
        optimiser = torch.optim.Adam(self.network_.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, patience=self.lr_patience)
        xt, yt = self._tensor(X), torch.as_tensor(Y, device=self.device)
        xv, yv = self._tensor(X_val), torch.as_tensor(np.asarray(Y_val, dtype=np.float32), device=self.device)
        generator = torch.Generator().manual_seed(self.random_state)
        best, best_state, waited = float("inf"), copy.deepcopy(self.network_.state_dict()), 0
        self.history_: list[dict[str, float]] = []
        epochs = range(self.max_epochs)
        for epoch in progress(epochs) if progress else epochs:
            self.network_.train()
            for batch in torch.randperm(len(xt), generator=generator).split(self.batch_size):
                optimiser.zero_grad()
                loss = loss_fn(self.network_(xt[batch]), yt[batch]) / len(batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.network_.parameters(), self.grad_clip)
                optimiser.step()
            val = self._mean_loss(xv, yv, loss_fn)
            schedule.step(val)
            self.history_.append({"epoch": epoch + 1, "val_loss": val})
            if val < best - 1e-9:
                best, best_state, waited = val, copy.deepcopy(self.network_.state_dict()), 0
            else:
                waited += 1
                if waited >= self.stop_patience:
                    break
        self.network_.load_state_dict(best_state)
        self.best_val_loss_ = best
        # the mean prediction per output over the training rows: the fixed ranking of kv=probe_mean (the same probe
        # without its per-step input), stored with the probe so that the control needs nothing else
        self.mean_output_ = self._predict_raw(X).mean(axis=0).astype(np.float32)
        self._after_fit(X_val, Y_val)
        return self

    def _after_fit(self, X_val: np.ndarray, Y_val: np.ndarray) -> None:
        pass

    def _predict_raw(self, X: np.ndarray) -> np.ndarray:
        self.network_.eval()
        xt = self._tensor(X)
        with torch.no_grad():
            return torch.cat([self._output(self.network_(xt[i:i + 4096])) for i in range(0, len(xt), 4096)]).cpu().numpy()

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | Path, **meta: Any) -> None:
        """Write the probe (weights, scaler, threshold, hyper-parameters) and ``meta`` (model, task kind,
        split seed...) to ``path``, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"format": FORMAT, "class": type(self).__name__, "params": self.get_params(),
                 "fitted": {k: v for k, v in self.__dict__.items() if k.endswith("_") and k != "network_"},
                 "network": self.network_.state_dict(), "meta": meta}
        with atomic_target(path) as tmp:
            torch.save(state, tmp)


class HeadProbeClassifier(_HeadProbe):
    """NIAH probe: the hidden state of a step -> which heads are Eq. 1 retrieval heads at that step.

    Trained with the Asymmetric Loss (``gamma_neg``, ``gamma_pos``, ``clip``; ASL authors' defaults);
    the decision threshold is the one maximising micro F1 on the validation precision-recall curve.
    """

    def __init__(self, hidden_sizes: tuple[int, ...] = PAPER_HIDDEN_SIZES, dropout: float = 0.1, lr: float = 3e-4,
                 batch_size: int = 128, max_epochs: int = 100, lr_patience: int = 3, stop_patience: int = 10,
                 grad_clip: float = 1.0, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05,
                 random_state: int = 0, device: str = "cpu") -> None:
        super().__init__(hidden_sizes, dropout, lr, batch_size, max_epochs, lr_patience, stop_patience, grad_clip,
                         random_state, device)
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip

    def _loss(self) -> torch.nn.Module:
        return AsymmetricLoss(self.gamma_neg, self.gamma_pos, self.clip)

    def _output(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw)

    def _after_fit(self, X_val: np.ndarray, Y_val: np.ndarray) -> None:
        self.threshold_ = best_threshold(Y_val, self.predict_proba(X_val))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Per step and head, the probability that the head is a retrieval head."""
        return self._predict_raw(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= self.threshold_).astype(int)

    def evaluate(self, X: np.ndarray, Y: np.ndarray) -> dict[str, float]:
        """Micro precision, recall, F1 (at the validation threshold) and AUPRC."""
        return classification_scores(Y, self.predict_proba(X), self.threshold_)

    def score(self, X: np.ndarray, Y: np.ndarray) -> float:
        return self.evaluate(X, Y)["f1"]


class HeadProbeRegressor(_HeadProbe):
    """HotpotQA probe: the hidden state of a step -> every head's Eq. 2 score at that step (MSE)."""

    def _loss(self) -> torch.nn.Module:
        return torch.nn.MSELoss(reduction="sum")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_raw(X)

    def evaluate(self, X: np.ndarray, Y: np.ndarray) -> dict[str, float]:
        """MSE, MAE and R² pooled over steps x heads."""
        return regression_scores(Y, self.predict(X))

    def score(self, X: np.ndarray, Y: np.ndarray) -> float:
        return self.evaluate(X, Y)["r2"]


def load_probe(path: str | Path) -> tuple[_HeadProbe, dict[str, Any]]:
    """A saved probe and its ``meta``; one clear error for a file that is not one."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ValueError(f"dynheads: probe={str(path)!r} cannot be read ({exc}); give a file written by a probes stage") from None
    classes = {"HeadProbeClassifier": HeadProbeClassifier, "HeadProbeRegressor": HeadProbeRegressor}
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("class") not in classes:
        raise ValueError(f"dynheads: probe={str(path)!r} is not a dynheads probe file (format {FORMAT})")
    probe = classes[state["class"]](**{**state["params"], "device": "cpu"})  # wherever it was trained, it loads on the CPU
    probe.__dict__.update(state["fitted"])
    probe.network_ = build_mlp(probe.n_features_in_, tuple(probe.hidden_sizes), probe.n_outputs_, probe.dropout)
    probe.network_.load_state_dict(state["network"])
    probe.network_.eval()
    return probe, state["meta"]
