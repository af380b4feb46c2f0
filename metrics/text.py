"""Text-matching metrics shared by the NIAH task and later experiments.

Both are pure functions of two strings, so they can score lm-eval responses, run_suite outputs or
saved sample logs alike.

- :func:`contains_exact` is the paper's *accuracy* (Appendix A.1): 1.0 iff the response contains the
  whole target string (the UUID), character for character and case-sensitive; 0.0 otherwise, "even
  if there is only a one-character difference".
- :func:`rouge_l` is ROUGE-L (Lin, 2004) F-measure from the ``rouge_score`` package with its default
  tokenizer (lower-cases, splits on anything that is not a letter or digit, no stemming). A UUID
  therefore counts as five tokens (its hyphen-separated groups), so a response that copies the needle
  with one character wrong loses one token of the longest common subsequence: high, but below 1.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["contains_exact", "rouge_l"]


def contains_exact(response: str | None, target: str) -> float:
    """1.0 iff ``target`` occurs verbatim (case-sensitive) somewhere in ``response``, else 0.0.

    An empty ``target`` is a caller bug (it would match everything), so it raises ``ValueError``.
    A ``None`` response (no generation) scores 0.0.
    """
    if not target:
        raise ValueError("contains_exact: target must be a non-empty string")
    if not response:
        return 0.0
    return 1.0 if target in response else 0.0


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str | None, reference: str) -> float:
    """ROUGE-L F-measure of ``prediction`` against ``reference``, in [0, 1].

    Symmetric in its arguments up to the precision/recall naming; 0.0 when either side has no
    alphanumeric token (including an empty or ``None`` prediction).
    """
    if not prediction or not reference:
        return 0.0
    # rouge_score's API is score(target, prediction).
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)
