"""RIND: when does a draft need retrieval? (DRAGIN, Su et al. 2024; paper Section 5, Algorithm 1 line 6).

DRAGIN's "Real-time Information Needs Detection" scores every word of a draft, as its code
(``src/generate.py``, ``AttnWeightRAG``) does it:

* **uncertainty** -- the entropy of the greedy step's predictive distribution, **averaged** over the
  word's tokens (``sum(entropies[r0:r1+1]) / (r1 - r0 + 1)``);
* **influence** -- the most attention any draft token at or after the word pays it (last layer; each
  query row renormalised over the draft tokens, since DRAGIN reads it from a prompt-free pass over the
  draft alone; max over query rows per head, then the mean over heads; *summed* over the word's
  tokens), rescaled to mean 1 within the word's sentence;
* **semantics** -- DRAGIN's code lets *any* word trigger retrieval (its spaCy content-word filter only
  chooses query words afterwards, and in-context retrieval forms no query), so the default
  ``stopwords="trigger"`` does the same; ``stopwords="skip"`` applies its paper's formula instead (a stop
  word scores 0), with scikit-learn's maintained ``ENGLISH_STOP_WORDS`` (spaCy's tagger model is not on
  PyPI).

A word whose score exceeds the threshold marks an information need; generation is retracted to the
start of that word's sentence. Sentences come from pysbd (a maintained rule-based splitter; DRAGIN uses
spaCy's). Pure functions over what the decoder recorded: hand-built inputs test them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RIND_THRESHOLD = 1.2
"""Score a word must exceed. DRAGIN's released HotpotQA configs use 1.2 (Llama-2-13B-chat, Vicuna-13B) and 1.3
(Llama-2-7B-chat); its earlier configs 1.4 for all three."""

STOPWORD_RULES = ("trigger", "skip")
"""``trigger``: any word may trigger (DRAGIN's code); ``skip``: stop words score 0 (DRAGIN's paper formula)."""


def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


def is_content_word(text: str) -> bool:
    """A word with a letter or digit that is not a stop word (punctuation and case ignored)."""
    core = "".join(ch for ch in text.lower() if ch.isalnum() or ch == "'").strip("'")
    return bool(core) and any(ch.isalnum() for ch in core) and core not in stop_words()


def entropy(logits: "torch.Tensor") -> float:  # noqa: F821 - torch is imported lazily
    """Natural-log entropy of ``softmax(logits)`` (one step's predictive distribution), in float32: the engine's
    :func:`~dynheads.models.engine.scores.step_entropy` (imported here lazily: this module is torch-free at import)."""
    from ..engine.scores import step_entropy

    return float(step_entropy(logits.flatten())[0])


def later_attention(rows: Sequence[np.ndarray], n_tokens: int) -> np.ndarray:
    """Per draft token, the most attention a draft query at or after it pays it: max over rows, mean over heads.

    ``rows[j]``: ``[heads, j + 1]`` last-layer attention of the query *at draft token j* over draft
    tokens ``0 .. j`` (the row is recorded when token j is fed back), renormalised here to sum to 1 per
    head as in DRAGIN's draft-only pass. Token i is read by rows ``j >= i`` (DRAGIN's causal attention
    includes the token itself).
    """
    if n_tokens == 0:
        return np.zeros(0)
    if len(rows) < n_tokens:
        raise ValueError(f"dynheads: RIND needs a row for each of the {n_tokens} draft tokens, got {len(rows)}")
    heads = rows[0].shape[0]
    best = np.zeros((heads, n_tokens))
    for j in range(n_tokens):
        row = np.asarray(rows[j], dtype=np.float64)[:, : j + 1]
        total = row.sum(axis=1, keepdims=True)
        row = np.divide(row, total, out=np.zeros_like(row), where=total > 0)  # a softmax over draft keys only
        best[:, : j + 1] = np.maximum(best[:, : j + 1], row)
    return best.mean(axis=0)


@dataclass(frozen=True)
class Word:
    """One draft word: tokens ``start .. end - 1``, its sentence, the three RIND factors and the score."""

    text: str
    start: int
    end: int
    sentence: int
    entropy: float
    attention: float
    content: bool

    @property
    def score(self) -> float:
        """Entropy x rescaled attention, DRAGIN's code's value (the content factor is applied by :func:`first_need`)."""
        return self.entropy * self.attention


def word_spans(token_texts: Sequence[str]) -> list[tuple[int, int]]:
    """Token ranges of words: a token that starts with whitespace (or follows one that ends with it) starts
    a new word, so punctuation and sub-word pieces join the word before them (DRAGIN's merging)."""
    spans: list[tuple[int, int]] = []
    for i, text in enumerate(token_texts):
        starts = i == 0 or not text or not token_texts[i - 1] or text[:1].isspace() or token_texts[i - 1][-1:].isspace()
        if starts:
            spans.append((i, i + 1))
        else:
            spans[-1] = (spans[-1][0], i + 1)
    return spans


def sentence_of_tokens(token_texts: Sequence[str]) -> list[int]:
    """The pysbd sentence index of every token of the draft text ``"".join(token_texts)``."""
    import pysbd

    text = "".join(token_texts)
    starts = [span.start for span in pysbd.Segmenter(language="en", clean=False, char_span=True).segment(text)] or [0]
    out, offset = [], 0
    for piece in token_texts:
        anchor = offset + (len(piece) - len(piece.lstrip()) if piece.strip() else 0)  # first visible character
        out.append(max(0, int(np.searchsorted(starts, anchor, side="right")) - 1))
        offset += len(piece)
    return out


def rind_words(token_texts: Sequence[str], entropies: Sequence[float], attention: Sequence[float]) -> list[Word]:
    """The RIND factors of every word of a draft (token-level inputs, one entry per draft token).

    Special tokens should be given as ``""`` (they form their own non-content word).
    """
    if not (len(token_texts) == len(entropies) == len(attention)):
        raise ValueError("dynheads: RIND needs one text, entropy and attention value per draft token")
    sentences = sentence_of_tokens(token_texts)
    raw = []
    for start, end in word_spans(token_texts):
        text = "".join(token_texts[start:end])
        mean_entropy = float(sum(entropies[start:end])) / (end - start)
        raw.append((text, start, end, sentences[start], mean_entropy, float(sum(attention[start:end]))))
    words = []
    for sentence in sorted({r[3] for r in raw}):
        members = [r for r in raw if r[3] == sentence]
        mean = sum(r[5] for r in members) / len(members)
        for text, start, end, sid, ent, att in members:
            words.append(Word(text.strip(), start, end, sid, ent, att / mean if mean > 0 else 0.0, is_content_word(text)))
    return sorted(words, key=lambda w: w.start)


def first_need(words: Sequence[Word], threshold: float, stopwords: str = "trigger") -> Word | None:
    """The first word whose RIND score exceeds ``threshold`` (None: the draft needs no retrieval);
    with ``stopwords="skip"`` only content words count (see :data:`STOPWORD_RULES`)."""
    if stopwords not in STOPWORD_RULES:
        raise ValueError(f"dynheads: rag_stopwords={stopwords!r}; choose {' or '.join(STOPWORD_RULES)}")
    return next((w for w in words if w.score > threshold and (stopwords == "trigger" or w.content)), None)


def sentence_start(words: Sequence[Word], flagged: Word) -> int:
    """Token index where the flagged word's sentence begins (Algorithm 1 retracts the draft to it)."""
    return min(w.start for w in words if w.sentence == flagged.sentence)
