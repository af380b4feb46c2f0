"""HotpotQA answer and supporting-fact scores, identical to the official evaluation script.

Why: the paper ("Retrieval Heads are Dynamic", Lin et al.) reports exact match (EM) and F1 on HotpotQA.
Those numbers are only comparable with the paper and with the HotpotQA leaderboard if every prediction is
scored exactly as the official script ``hotpot_evaluate_v1.py`` scores it (Yang et al., 2018;
https://github.com/hotpotqa/hotpot/blob/master/hotpot_evaluate_v1.py). This module re-implements its
per-example functions with the standard library only (no ``ujson``), keeping the same normalisation order,
the same special case and the same arithmetic:

- :func:`normalize_answer` is ``white_space_fix(remove_articles(remove_punc(lower(s))))``: lower-case,
  drop every ``string.punctuation`` character, replace the words ``a``/``an``/``the`` with a space, then
  collapse whitespace. Punctuation goes first, so ``"U.S.A."`` becomes ``"usa"`` and ``"the-end"`` becomes
  ``"theend"`` (no article left to remove).
- :func:`f1_score` is token-level F1 over the normalised, whitespace-split answers (multiset overlap via
  ``Counter``). **Yes/no rule:** if either normalised side is ``"yes"``, ``"no"`` or ``"noanswer"`` and the
  two normalised strings differ, the score is ``(0, 0, 0)`` even when tokens overlap; so ``"no"`` against
  ``"no way"`` scores 0, not the 2/3 plain token F1 would give. Comparison questions are answered yes/no,
  and the rule stops a bare "yes"/"no" from earning partial credit on a longer answer (and vice versa).
- :func:`exact_match_score` is 1.0 iff the normalised strings are equal (two empty strings are equal).
- :func:`supporting_fact_scores` is the script's ``update_sp`` for one example: predicted and gold
  ``(title, sent_id)`` pairs become sets of tuples (duplicates count once; titles compared verbatim,
  sentence ids compared by value and type, as the script does), then true/false positives/negatives give
  precision, recall, F1 and EM. As in the script, an empty prediction against an empty gold set has EM 1
  but precision, recall and F1 0.

The script's corpus-level numbers are the means of these per-example scores over all gold examples (a
missing prediction counts as 0); its joint scores multiply answer and supporting-fact precision/recall per
example. Those aggregations belong to the task, not here.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["normalize_answer", "f1_score", "exact_match_score", "supporting_fact_scores"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_YES_NO = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """The official answer normalisation: lower-case, strip punctuation, remove articles, fix whitespace."""
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_score(prediction: str, ground_truth: str) -> tuple[float, float, float]:
    """Official token-level ``(f1, precision, recall)`` of ``prediction`` against ``ground_truth``.

    ``(0.0, 0.0, 0.0)`` when either normalised side is "yes"/"no"/"noanswer" and they differ, or when
    no token is shared (which includes an empty prediction or gold answer).
    """
    pred = normalize_answer(prediction)
    gold = normalize_answer(ground_truth)
    zero = (0.0, 0.0, 0.0)
    if pred in _YES_NO and pred != gold:
        return zero
    if gold in _YES_NO and pred != gold:
        return zero
    pred_tokens = pred.split()
    gold_tokens = gold.split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return zero
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1, precision, recall


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 iff the normalised prediction equals the normalised gold answer, else 0.0."""
    return 1.0 if normalize_answer(prediction) == normalize_answer(ground_truth) else 0.0


def supporting_fact_scores(
    predicted: Iterable[Sequence], gold: Iterable[Sequence]
) -> dict[str, float]:
    """Official ``update_sp`` for one example: ``{"sp_em", "sp_f1", "sp_prec", "sp_recall"}``.

    ``predicted`` and ``gold`` are iterables of ``(title, sent_id)`` pairs (lists or tuples).
    """
    pred_set = set(map(tuple, predicted))
    gold_set = set(map(tuple, gold))
    tp = len(pred_set & gold_set)
    fp = len(pred_set - gold_set)
    fn = len(gold_set - pred_set)
    prec = 1.0 * tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = 1.0 * tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * prec * recall / (prec + recall) if prec + recall > 0 else 0.0
    em = 1.0 if fp + fn == 0 else 0.0
    return {"sp_em": em, "sp_f1": f1, "sp_prec": prec, "sp_recall": recall}


YES_NO = frozenset({"yes", "no"})
LEAD_WORDS = frozenset({"answer"})  # "The answer is ...": no claim of its own
UNSUPPORTED_SHARE = 0.25  # more than this share of an answer's new content words absent from the context: not supported


def new_content_words(prediction: str, question: str = "") -> list[str]:
    """The words an answer adds to its question: normalised as the official scorer normalises, without the
    question's words, scikit-learn's English stop words, yes / no and "answer" (a restated question claims nothing)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    asked = set(normalize_answer(question).split())
    return [w for w in normalize_answer(prediction).split()
            if w not in asked and w not in ENGLISH_STOP_WORDS and w not in YES_NO and w not in LEAD_WORDS]


def supported_by(prediction: str, context: str, question: str = "", tolerance: float = UNSUPPORTED_SHARE) -> bool | None:
    """Whether an answer is supported by the context it was given: False when more than ``tolerance`` of the words it
    adds to its question (:func:`new_content_words`) do not occur in the context, the hallucination study's
    faithfulness label on HotpotQA's gold paragraphs. None when it adds no word (a bare yes / no, an empty answer, a
    restated question): its support cannot be read off the text.

    Why words, not the answer as one span: SmolLM2 answers in sentences that restate the question ("The motorway
    ends in Colne."), whose exact span no context holds; why a tolerance: a sentence answer carries function words
    ("compared", "called") that the context need not hold, and a cut-off last word ("sc"). Why not F1 against the
    gold answer: that labels correctness, and a model may answer faithfully from its context and still be wrong."""
    new = new_content_words(prediction, question)
    if not new:
        return None
    known = set(normalize_answer(context).split())
    return sum(w not in known for w in new) / len(new) <= tolerance
