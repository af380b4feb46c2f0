"""Train / validation / test split by generation (document), never by step.

Why: adjacent decode steps of one answer share almost all of their context, so a split by step would
put near-copies of training rows into the test set and flatter every probe. Whole generations go to
one split each, in a seeded random order.
"""

from __future__ import annotations

import numpy as np


def split_by_generation(groups: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, validation and test splits; every generation lies in exactly one.

    ``groups[i]``: the generation of row ``i``. Generations are shuffled with ``seed`` and cut at the
    cumulative ``fractions`` of the number of generations (each split gets at least one generation
    when there are at least three).
    """
    groups = np.asarray(groups)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"dynheads: split fractions must be three non-negative numbers summing to 1, got {fractions}")
    names = np.unique(groups)
    if len(names) < 3:
        raise ValueError(f"dynheads: a train/validation/test split by generation needs at least 3 generations, got {len(names)}")
    order = np.random.default_rng(seed).permutation(names)
    n = len(order)
    n_train = min(max(int(round(fractions[0] * n)), 1), n - 2)
    n_val = min(max(int(round(fractions[1] * n)), 1), n - n_train - 1)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return tuple(np.flatnonzero(np.isin(groups, part)) for part in parts)  # type: ignore[return-value]


def split_train_validation(groups: np.ndarray, validation: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a train / validation split by generation (for a pool whose test set lies elsewhere,
    e.g. HotpotQA train examples with dev examples as the test)."""
    groups = np.asarray(groups)
    names = np.unique(groups)
    if len(names) < 2:
        raise ValueError(f"dynheads: a train/validation split by generation needs at least 2 generations, got {len(names)}")
    order = np.random.default_rng(seed).permutation(names)
    n_val = min(max(int(round(validation * len(order))), 1), len(order) - 1)
    return np.flatnonzero(np.isin(groups, order[n_val:])), np.flatnonzero(np.isin(groups, order[:n_val]))
