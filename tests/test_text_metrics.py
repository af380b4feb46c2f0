"""contains_exact (the paper's NIAH accuracy) and rouge_l (ROUGE-L F-measure)."""

from __future__ import annotations

import pytest

from dynheads.metrics.text import contains_exact, rouge_l

UUID = "3f2a1b2c-1111-4aaa-8bbb-123456789abc"
ONE_OFF = "3f2a1b2c-1111-4aaa-8bbb-123456789abd"  # last character differs
NEEDLE = f"The magic word is {UUID}."


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (UUID, 1.0),
        (NEEDLE, 1.0),
        (f"Sure! {UUID} is the magic word, I think.", 1.0),
        (f"The magic word is {ONE_OFF}.", 0.0),  # one character off scores 0
        (UUID[:-1], 0.0),  # truncated
        (UUID.upper(), 0.0),  # case-sensitive
        (UUID.replace("-", " "), 0.0),
        ("", 0.0),
        (None, 0.0),
    ],
)
def test_contains_exact(response, expected):
    assert contains_exact(response, UUID) == expected


def test_contains_exact_rejects_empty_target():
    with pytest.raises(ValueError, match="target"):
        contains_exact("anything", "")


def test_rouge_l_identical_is_one():
    assert rouge_l(NEEDLE, NEEDLE) == pytest.approx(1.0)


def test_rouge_l_one_char_off_is_high_but_below_one():
    score = rouge_l(f"The magic word is {ONE_OFF}.", NEEDLE)
    # rouge_score splits the UUID into its 5 hyphen groups: 8 of 9 tokens match.
    assert score == pytest.approx(8 / 9)
    assert 0.8 < score < 1.0
    assert contains_exact(f"The magic word is {ONE_OFF}.", UUID) == 0.0


def test_rouge_l_bare_uuid_and_unrelated():
    assert rouge_l(UUID, NEEDLE) == pytest.approx(2 * 1.0 * (5 / 9) / (1.0 + 5 / 9))  # P=1, R=5/9
    assert rouge_l("I do not know.", NEEDLE) == 0.0
    assert rouge_l("", NEEDLE) == 0.0
    assert rouge_l(None, NEEDLE) == 0.0


def test_rouge_l_is_case_insensitive_unlike_accuracy():
    assert rouge_l(NEEDLE.upper(), NEEDLE) == pytest.approx(1.0)
    assert contains_exact(NEEDLE.upper(), UUID) == 0.0
