"""HotpotQA answer/supporting-fact scores must equal the official hotpot_evaluate_v1.py per example."""

from __future__ import annotations

import pytest

from dynheads.metrics.qa import (
    exact_match_score,
    f1_score,
    normalize_answer,
    supporting_fact_scores,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("U.S.A.", "usa"),
        ("  a   lot\tof\nspace  ", "lot of space"),
        ("An apple, a day!", "apple day"),
        ("the-end", "theend"),  # punctuation goes first, so no article is left to remove
        ("Theater", "theater"),  # \b: articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower", 1.0),
        ("U.S.A.", "usa", 1.0),
        ("  New   York ", "new york", 1.0),
        ("Yes", "yes", 1.0),
        ("", "", 1.0),  # two empty normalised strings are equal
        ("New York City", "new york", 0.0),
        ("", "paris", 0.0),
    ],
)
def test_exact_match(prediction, gold, expected):
    assert exact_match_score(prediction, gold) == expected
    assert isinstance(exact_match_score(prediction, gold), float)


def test_f1_partial_overlap_hand_computed():
    # "the big red dog" -> [big, red, dog]; "red dog barks" -> [red, dog, barks]; common = {red, dog} = 2
    # P = 2/3, R = 2/3, F1 = 2PR/(P+R) = 2/3
    f1, prec, recall = f1_score("the big red dog", "red dog barks")
    assert prec == pytest.approx(2 / 3)
    assert recall == pytest.approx(2 / 3)
    assert f1 == pytest.approx(2 / 3)


def test_f1_asymmetric_precision_recall():
    # [new, york] vs [new, york, city]: common 2, P = 2/2 = 1, R = 2/3, F1 = 2*(2/3)/(5/3) = 0.8
    assert f1_score("New York", "New York City") == pytest.approx((0.8, 1.0, 2 / 3))


def test_f1_counts_repeated_tokens_as_multiset():
    # [dog, dog, dog] vs [dog]: Counter overlap is min(3, 1) = 1, P = 1/3, R = 1, F1 = 0.5
    assert f1_score("dog dog dog", "dog") == pytest.approx((0.5, 1 / 3, 1.0))


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("yes", "no"),
        ("no", "yes"),
        ("no", "no way"),  # plain token F1 would be 2/3; the yes/no rule makes it 0
        ("no way", "no"),
        ("Yes, it is", "yes"),  # normalises to "yes it is" != "yes"
        ("noanswer", "no answer"),
    ],
)
def test_f1_yes_no_rule(prediction, gold):
    assert f1_score(prediction, gold) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(("prediction", "gold"), [("yes", "yes"), ("No.", "no"), ("YES", " yes ")])
def test_f1_yes_no_match(prediction, gold):
    assert f1_score(prediction, gold) == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [("Paris", "London"), ("", "paris"), ("paris", ""), ("the", "a")],  # last: both normalise to ""
)
def test_f1_no_overlap_is_zero(prediction, gold):
    assert f1_score(prediction, gold) == (0.0, 0.0, 0.0)


def test_supporting_fact_scores_hand_computed():
    gold = [["Paris", 0], ["Paris", 2], ["Eiffel Tower", 1]]
    predicted = [
        ("Paris", 0),  # tp
        ("Eiffel Tower", 1),  # tp
        ("Eiffel Tower", 1),  # duplicate: sets count it once
        ("Eiffel Tower", 3),  # fp
        ("paris", 2),  # fp: titles are compared verbatim (case-sensitive)
    ]
    # tp = 2, fp = 2, fn = 1 (("Paris", 2) missed)
    # prec = 2/4 = 0.5, recall = 2/3, f1 = 2 * 0.5 * (2/3) / (0.5 + 2/3) = (2/3) / (7/6) = 4/7, em = 0
    scores = supporting_fact_scores(predicted, gold)
    assert set(scores) == {"sp_em", "sp_f1", "sp_prec", "sp_recall"}
    assert scores["sp_prec"] == pytest.approx(0.5)
    assert scores["sp_recall"] == pytest.approx(2 / 3)
    assert scores["sp_f1"] == pytest.approx(4 / 7)
    assert scores["sp_em"] == 0.0


def test_supporting_fact_scores_exact():
    gold = [["Paris", 0], ["Eiffel Tower", 1]]
    # tp = 2, fp = 0, fn = 0: every score is 1; list vs tuple and order do not matter
    scores = supporting_fact_scores([("Eiffel Tower", 1), ("Paris", 0)], gold)
    assert scores == {"sp_em": 1.0, "sp_f1": 1.0, "sp_prec": 1.0, "sp_recall": 1.0}


def test_supporting_fact_scores_empty_prediction_and_official_quirk():
    # tp = 0, fp = 0, fn = 1: prec = 0 (no prediction), recall = 0, f1 = 0, em = 0
    assert supporting_fact_scores([], [["Paris", 0]]) == {
        "sp_em": 0.0, "sp_f1": 0.0, "sp_prec": 0.0, "sp_recall": 0.0,
    }
    # both empty: fp + fn == 0 so em = 1, but prec/recall/f1 stay 0 as in the official script
    assert supporting_fact_scores([], []) == {"sp_em": 1.0, "sp_f1": 0.0, "sp_prec": 0.0, "sp_recall": 0.0}


def test_supporting_fact_sent_id_type_matters():
    # ("Paris", "0") is not ("Paris", 0): tp = 0, fp = 1, fn = 1 -> all zero, as the official script
    assert supporting_fact_scores([("Paris", "0")], [("Paris", 0)])["sp_f1"] == 0.0


def test_supported_by_asks_whether_the_answers_new_words_are_in_the_context_given():
    from dynheads.metrics.qa import new_content_words, supported_by

    context = "Title: Paris\nParis is the capital of France. The Eiffel Tower opened in 1889 on the Champ de Mars."
    question = "When did the tower in Paris open?"
    assert new_content_words("The tower in Paris opened in 1889.", question) == ["opened", "1889"]
    assert supported_by("The tower in Paris opened in 1889.", context, question) is True  # a sentence answer
    assert supported_by("1889", context, question) is True
    assert supported_by("It opened in 1925 in London.", context, question) is False  # 2 of 3 new words not there
    assert supported_by("Champ de Mars, 1889, engineers", context, question) is True  # 1 of 4 absent: within 0.25
    assert supported_by("Champ de Mars, 1889, engineers, architects", context, question) is False  # 2 of 5 absent
    assert supported_by("Yes.", context, question) is None and supported_by("The answer is no.", context, question) is None
    assert supported_by("The tower in Paris", context, question) is None  # restates the question: claims nothing
    assert supported_by("", context, question) is None
