"""Section 5's head chooser with planted inputs: what each strategy hands Algorithm 2 at each retrieval.

dynamic = the top k of the probe's prediction for the inspected hidden state; static = the top k calibrated
heads; dynamic_random = a new seeded draw at each retrieval; fixed_random = one draw for the whole answer.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from dynheads.models.harness.loaded_probe import LoadedProbe
from dynheads.models.rag.algorithm import RagSettings
from dynheads.models.rag.strategies import Strategy
from dynheads.models.harness.rag_requests import head_source

LAYERS, HEADS = 4, 6


class PlantedProbe:
    """Predicts, for hidden state h, the score vector h itself (one score per layer x head)."""

    def predict(self, hidden: np.ndarray) -> np.ndarray:
        return hidden[:, : LAYERS * HEADS]


def _lm(static_heads=((3, 1), (0, 0), (2, 5), (1, 2), (0, 4), (3, 3))):
    return SimpleNamespace(engine=SimpleNamespace(num_layers=LAYERS, num_heads=HEADS),
                           settings=SimpleNamespace(rag=RagSettings(heads=3), seed=0),
                           rag_probe=LoadedProbe(PlantedProbe(), {}, "planted.pt"), static=lambda kind: SimpleNamespace(heads=list(static_heads)))


def head_chooser(lm, sample_key):
    """Each strategy's heads at retrieval ``index`` for hidden state ``hidden``, as Algorithm 2 gets them."""
    source = head_source(lm, sample_key)
    return lambda strategy, index, hidden: strategy.heads(index, hidden, source, strategy.k or source.default_k)


def test_dynamic_takes_the_top_k_of_the_probes_prediction_for_this_hidden_state():
    choose = head_chooser(_lm(), "doc-a")
    h = np.zeros(LAYERS * HEADS + 8, dtype=np.float32)
    h[[5, 13, 22, 2]] = [0.9, 0.7, 0.8, 0.1]  # flat index = layer * HEADS + head
    assert choose(Strategy.parse("dynamic"), 0, h) == [(0, 5), (3, 4), (2, 1)]  # k = rag_heads = 3, best first
    assert choose(Strategy.parse("dynamic:1"), 0, h) == [(0, 5)]
    other = np.zeros_like(h)
    other[[0, 23, 7]] = [0.5, 0.4, 0.3]
    assert choose(Strategy.parse("dynamic"), 1, other) == [(0, 0), (3, 5), (1, 1)]  # follows the hidden state


def test_static_takes_the_top_k_calibrated_heads():
    choose = head_chooser(_lm(), "doc-a")
    assert choose(Strategy.parse("static"), 0, np.zeros(32)) == [(3, 1), (0, 0), (2, 5)]
    assert choose(Strategy.parse("static:5"), 2, np.zeros(32)) == [(3, 1), (0, 0), (2, 5), (1, 2), (0, 4)]


def test_dynamic_random_draws_anew_at_each_retrieval_and_fixed_random_keeps_one_draw():
    choose = head_chooser(_lm(), "doc-a")
    h = np.zeros(32)
    dynamic = [choose(Strategy.parse("dynamic_random"), i, h) for i in range(4)]
    fixed = [choose(Strategy.parse("fixed_random"), i, h) for i in range(4)]
    assert len({tuple(d) for d in dynamic}) == 4  # a new set each retrieval
    assert len({tuple(f) for f in fixed}) == 1  # the same set for the whole answer
    for heads in dynamic + fixed:
        assert len(set(heads)) == 3 and all(0 <= l < LAYERS and 0 <= k < HEADS for l, k in heads)
    # seeded: the same answer draws the same heads again; another document draws others
    again = head_chooser(_lm(), "doc-a")
    assert [again(Strategy.parse("dynamic_random"), i, h) for i in range(4)] == dynamic
    assert head_chooser(_lm(), "doc-b")(Strategy.parse("fixed_random"), 0, h) != fixed[0]
