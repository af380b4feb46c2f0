"""RIND (DRAGIN) and Algorithm 2's windows on hand-built inputs with planted answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynheads.models.rag.rind import (entropy, first_need, is_content_word, later_attention, rind_words, sentence_of_tokens,
                                   sentence_start, word_spans)
from dynheads.models.rag.windows import attention_windows, clusters, coverage, merge, pooled_mean, runs


def test_entropy_of_uniform_and_peaked_distributions():
    assert entropy(torch.zeros(8)) == pytest.approx(math.log(8), rel=1e-6)
    assert entropy(torch.tensor([100.0, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-6)


def test_content_words_use_the_stop_word_list():
    assert is_content_word(" Paris.") and is_content_word("1987") and is_content_word("Corliss")
    assert not is_content_word(" the") and not is_content_word(" Which") and not is_content_word(".") and not is_content_word("")


def test_later_attention_is_max_over_later_rows_then_mean_over_heads():
    rows = [np.array([[1.0], [0.0]]),                      # query at token 0 (itself)
            np.array([[0.2, 0.8], [0.6, 0.4]]),            # query at token 1
            np.array([[0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])]  # query at token 2
    got = later_attention(rows, 3)
    # token 0: head 0 max(1, .2, .1) = 1, head 1 max(0, .6, .9) = .9 -> mean .95
    np.testing.assert_allclose(got, [0.95, (0.8 + 0.4) / 2, (0.8 + 0.05) / 2])
    with pytest.raises(ValueError, match="row for each"):
        later_attention(rows[:2], 3)


def test_words_merge_sub_tokens_and_punctuation():
    assert word_spans(["The", " Eif", "fel", " Tower", ".", " It"]) == [(0, 1), (1, 3), (3, 5), (5, 6)]


def test_sentences_and_the_flagged_words_sentence_start():
    texts = ["Paris", " is", " big", ".", " Napoleon", " was", " born", " there", "."]
    assert sentence_of_tokens(texts) == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    entropies = [0.1] * 9
    entropies[4] = 3.0  # "Napoleon": uncertain
    attention = [1.0] * 9
    words = rind_words(texts, entropies, attention)
    assert [w.text for w in words] == ["Paris", "is", "big.", "Napoleon", "was", "born", "there."]
    flagged = first_need(words, threshold=1.0)
    # sentence 2's word attentions (sub-tokens summed): 1, 1, 1, 2 ("there" + "."), mean 1.25
    assert flagged.text == "Napoleon" and flagged.attention == pytest.approx(1 / 1.25)
    assert flagged.score == pytest.approx(3.0 / 1.25)
    assert sentence_start(words, flagged) == 4
    assert first_need(words, threshold=2.5) is None
    # attention rescaled to mean 1 within the sentence: a word the sentence attends twice as much scores twice
    attention[6] = 2.0
    doubled = {w.text: w for w in rind_words(texts, entropies, attention)}
    assert doubled["born"].attention == pytest.approx(2 / 1.5)
    # DRAGIN's code lets an uncertain stop word trigger ("is", before "Napoleon"); its paper's formula does not
    entropies[1] = 50.0
    words = rind_words(texts, entropies, [1.0] * 9)
    assert first_need(words, threshold=1.0).text == "is"
    assert first_need(words, threshold=1.0, stopwords="skip").text == "Napoleon"
    with pytest.raises(ValueError, match="rag_stopwords"):
        first_need(words, threshold=1.0, stopwords="never")


def test_a_words_entropy_is_the_mean_over_its_tokens_and_its_attention_the_sum():
    """DRAGIN's code: ``sum(entropies[r0:r1+1]) / (r1 - r0 + 1)`` per word, attention summed per word."""
    texts = [" Napo", "le", "on", " won", "."]
    words = rind_words(texts, [3.0, 1.0, 2.0, 0.5, 0.1], [0.5, 0.25, 0.25, 0.4, 0.6])
    assert [w.text for w in words] == ["Napoleon", "won."]
    assert words[0].entropy == pytest.approx(2.0)  # (3 + 1 + 2) / 3; the sum would be 6
    assert words[1].entropy == pytest.approx(0.3)
    # attention sums per word (1.0 and 1.0), rescaled to mean 1 in the sentence
    assert words[0].attention == pytest.approx(1.0) and words[0].score == pytest.approx(2.0)
    assert first_need(words, threshold=2.5) is None  # a summed entropy (score 6) would trigger here


def test_later_attention_renormalises_each_row_over_the_draft_keys():
    """The decoder's rows also attend the prompt; DRAGIN's pass sees the draft only, so each row is
    renormalised over draft keys before the max: scaling a row changes nothing."""
    rows = [np.array([[0.1]]), np.array([[0.05, 0.15]]), np.array([[0.02, 0.02, 0.06]])]
    np.testing.assert_allclose(later_attention(rows, 3), [1.0, 0.75, 0.6])
    scaled = [rows[0] * 3, rows[1] * 0.5, rows[2] * 10]
    np.testing.assert_allclose(later_attention(scaled, 3), later_attention(rows, 3))


def test_clusters_windows_and_merging():
    assert clusters([50, 10, 12, 30, 31], gap=5) == [[10, 12], [30, 31], [50]]
    assert merge([(0, 5), (3, 8), (10, 12), (12, 14)]) == [(0, 8), (10, 14)]
    positions = np.arange(100, 300)
    scores = np.zeros(200)
    scores[[150 - 100, 152 - 100, 153 - 100]] = [0.5, 0.9, 0.4]  # one cluster, representative 152
    scores[290 - 100] = 0.7  # near the end: the window is clipped into bounds
    got = attention_windows(scores, positions, top_positions=4, cluster_gap=8, window=10, bounds=(100, 300))
    assert got == [(147, 157), (285, 295)]
    assert attention_windows(scores, positions, top_positions=4, cluster_gap=8, window=30, bounds=(100, 300))[-1] == (270, 300)
    with pytest.raises(ValueError):
        attention_windows(scores, positions[:5])


def test_coverage_and_runs():
    windows = [(10, 20), (30, 35)]
    support = list(range(15, 25)) + [31]
    got = coverage(windows, support)
    assert got == {"visible_tokens": 15, "precision": 6 / 15, "recall": 6 / 11}
    assert coverage([], support)["precision"] is None
    assert runs([3, 4, 5, 9, 10]) == [(3, 6), (9, 11)]
    assert pooled_mean([[1.0, 3.0], [None, 2.0], 6.0]) == pytest.approx(3.0)
    assert math.isnan(pooled_mean([]))
