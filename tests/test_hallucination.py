"""Hallucination detection (issue 21): labels, signals, detectors and their intervals, on data with a known answer."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dynheads.metrics.hallucination import (absence_share, agg_auroc, answer_steps, scored_steps, copy_labels, lookback_ratios,
                                            token_ends)
from dynheads.probes.evaluation import class_stratified_weights, detector_draws, generation_weights, weighted_auroc
from dynheads.probes.hallucination import (CONFOUNDS, CS, PRE_TOKEN, REFERENCES, TRAINED, SignalScore, TracedAnswer,
                                           cv_folds, feature_tables, fit_and_score, make_detector)
from dynheads.suite.hallucination.data import traced_answer, unmasked_lines
from dynheads.suite.hallucination.stage import conjecture, evaluate_level, split_by_cell, transfer, within_strata
from dynheads.tasks.hotpotqa_sf.utils import answer_span as hotpotqa_span
from dynheads.tasks.niah_uuid.utils import answer_span as niah_span

UUID = "3f2a9c1e-77b0-4d2e-9a41-0c5e6b7d8f90"


def pieces_decoder(pieces: list[str]):
    """A decode function over a toy vocabulary: token i is ``pieces[i]``."""
    return lambda ids: "".join(pieces[i] for i in ids)


# ---------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("response, answer", [
    (f"The magic word is {UUID}.", UUID),
    (f'The Magic Word Is: "{UUID}"', UUID),
    ("The magic word is **serendipity**, as stated.", "serendipity"),
    (f"{UUID} is the word", UUID),
    ("", ""),
])
def test_niah_answer_span(response, answer):
    start, end = niah_span(response)
    assert response[start:end] == answer


@pytest.mark.parametrize("response, answer", [
    ("Paris", "Paris"), ("Answer: \"Paris\"\nmore", "Paris"), ("\n\n  A: yes  \n", "yes"), ("Answer:\nParis", "Paris"),
    ("Answer: A", "A"), ("", ""),
])
def test_hotpotqa_answer_span_is_the_extracted_answer(response, answer):
    start, end = hotpotqa_span(response)
    assert response[start:end] == answer


def test_token_ends_and_answer_steps():
    pieces = ["The", " magic", " word", " is", " 3f", "2a", "9c", ".", ""]
    ends = token_ends(pieces_decoder(pieces), list(range(len(pieces))))
    assert ends == [3, 9, 14, 17, 20, 22, 24, 25, 25]
    text = "".join(pieces)
    span = niah_span(text)
    assert answer_steps(ends, span) == [4, 5, 6]  # " 3f" overlaps the answer; "." and the empty EOS do not
    assert answer_steps(ends, (len(text), len(text))) == [0, 1, 2, 3, 4, 5, 6, 7]  # blank answer: every step with text
    assert scored_steps(ends, span) == [4, 5, 6]
    assert answer_steps(ends, (30, 40)) == [] and scored_steps(ends, (30, 40)) == list(range(9))  # no overlap: the whole response


def test_copy_labels_align_by_character_offset():
    faithful = ["The", " magic", " word", " is", " " + UUID[:4], UUID[4:13], UUID[13:], "."]
    text = "".join(faithful)
    ends = token_ends(pieces_decoder(faithful), list(range(len(faithful))))
    assert copy_labels(text, ends, niah_span(text), UUID) == {4: False, 5: False, 6: False}
    # one wrong character in the middle token: only that token is hallucinated
    wrong = faithful[:5] + [UUID[4:8] + "x" + UUID[9:13]] + faithful[6:]
    text = "".join(wrong)
    ends = token_ends(pieces_decoder(wrong), list(range(len(wrong))))
    assert copy_labels(text, ends, niah_span(text), UUID) == {4: False, 5: True, 6: False}
    # an invented word: every answer token is hallucinated; so is a token running past the UUID's end
    invented = ["The", " magic", " word", " is", " seren", "dipity", "."]
    text = "".join(invented)
    ends = token_ends(pieces_decoder(invented), list(range(len(invented))))
    assert copy_labels(text, ends, niah_span(text), UUID) == {4: True, 5: True}
    longer = ["The", " magic", " word", " is", " " + UUID, "ab"]
    text = "".join(longer)
    ends = token_ends(pieces_decoder(longer), list(range(len(longer))))
    assert copy_labels(text, ends, niah_span(text), UUID) == {4: False, 5: True}


# ---------------------------------------------------------------------------------------------- signals
def test_lookback_ratio_is_lookback_lens_eq1():
    mass = np.array([[0.9, 0.0], [0.5, 1.0], [0.2, 0.0]])
    got = lookback_ratios(mass, prompt_tokens=10)
    assert np.allclose(got[0], 1.0)  # no header, no generated token visible yet
    # step 1: one generated key; mean on context 0.05 vs 0.5 on the new token
    assert got[1, 0] == pytest.approx(0.05 / (0.05 + 0.5))
    assert got[1, 1] == pytest.approx(1.0)
    # step 2: two generated keys sharing 0.8; no attention on the context gives 0
    assert got[2, 0] == pytest.approx(0.02 / (0.02 + 0.4))
    assert got[2, 1] == 0.0
    # as its authors count: the response header's 2 tokens are new tokens from step 0 on, the context is the other 8
    header = lookback_ratios(mass, prompt_tokens=10, response_header=2)
    assert header[0, 0] == pytest.approx((0.9 / 8) / (0.9 / 8 + 0.1 / 2)) and header[0, 1] == 0.0
    assert header[2, 0] == pytest.approx((0.2 / 8) / (0.2 / 8 + 0.8 / 4))


def test_absence_share_and_lm_eval_auroc():
    heads = [[[1, 2]], [], [[0, 0], [3, 1]], []]
    assert absence_share(heads, [0, 1, 2, 3]) == 0.5
    assert absence_share(heads, [1, 3]) == 1.0
    assert np.isnan(absence_share(heads, []))
    assert agg_auroc([(0.9, True), (0.1, False), (0.5, True), (0.5, False)]) == pytest.approx(0.875)
    assert np.isnan(agg_auroc([(0.9, True), (0.1, True)]))


def test_weighted_auroc_equals_scikit_learn_with_ties_and_draw_weights():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 30, 400)
    y = rng.integers(0, 2, 400)
    score = np.round(rng.normal(size=400) + 0.8 * y, 1)  # rounded: many ties
    weights = generation_weights(groups, seed=1, resamples=40)
    _, index = np.unique(groups, return_inverse=True)
    drawn = detector_draws(y, score, groups, weights)
    for row, w in enumerate(weights):
        assert drawn["auroc"][row] == pytest.approx(roc_auc_score(y, score, sample_weight=w[index]), abs=1e-12)
        assert drawn["auprc"][row] == pytest.approx(average_precision_score(y, score, sample_weight=w[index]), abs=1e-12)
    one_class = weighted_auroc(np.ones(5), np.arange(5.0), np.arange(5), np.ones((1, 5)))
    assert np.isnan(one_class).all()


# ---------------------------------------------------------------------------------------------- detectors
LEAD = 2  # planted answers: steps 0-1 are the lead-in, the answer starts at step 2


def planted_answers(n: int, seed: int, heads: int = 12, dim: int = 8, steps: int = 6, where: str = "lead",
                    lengths: tuple[int, ...] = (50,)) -> list[TracedAnswer]:
    """Answers whose label is planted, at the steps ``where`` says (``lead``: the lead-in and the answer's first step,
    which a before-the-token detector reads; ``answer``: only after the first answer step, which it must not read):
    hallucinated answers put little attention on the target and look back less at head 3, and have no active head at
    their answer steps (the by-construction reference, always planted). Hidden state and uncertainty carry nothing;
    prompt lengths cycle through ``lengths`` independently of the label."""
    rng = np.random.default_rng(seed)
    out = []
    planted = slice(0, LEAD + 1) if where == "lead" else slice(LEAD + 1, steps)
    for i in range(n):
        label = bool(i % 2)
        active = rng.random((steps, heads)) < 0.3
        active[LEAD:] = rng.random((steps - LEAD, heads)) < (0.02 if label else 0.3)
        mass = rng.uniform(0.6, 0.9, (steps, heads))
        target = rng.uniform(0.0, 0.1, (steps, heads))
        if label:
            mass[planted, 3] = rng.uniform(0.1, 0.3, mass[planted, 3].shape)
        else:
            target[planted, 5] = rng.uniform(0.6, 0.9, target[planted, 5].shape)
        token_labels = {t: bool(label and t % 2) for t in range(LEAD, steps)}
        out.append(TracedAnswer(group=f"doc{seed}-{i}", cell=(i % 4,), label=label, steps=list(range(LEAD, steps)),
                                active=active, context_mass=mass, prompt_tokens=lengths[(i // 2) % len(lengths)],
                                hidden=rng.normal(size=(steps, dim)), entropy=rng.random(steps), token_prob=rng.random(steps),
                                target_mass=target, response_header=0, depth=0.5, stratum=lengths[(i // 2) % len(lengths)],
                                step_labels=token_labels, extra_labels={"other": not label}))
    return out


def answer_level(answers: list[TracedAnswer]) -> tuple:
    """The answer-level table (main label) of ``answers``, as the stage builds it."""
    return feature_tables(answers).answer_table()


def aurocs(train: list[TracedAnswer], test: list[TracedAnswer]) -> dict[str, float]:
    (xa, ya, ga), (xb, yb, _) = answer_level(train), answer_level(test)
    scores, unfitted, _ = fit_and_score(xa, ya, xb, groups=ga)
    assert unfitted == []
    return {name: roc_auc_score(yb, s) for name, s in scores.items()}


def test_planted_signals_are_found_and_noise_is_not():
    auroc = aurocs(planted_answers(60, 0), planted_answers(40, 1))
    assert set(auroc) == set(PRE_TOKEN) | {"context_length", "needle_depth"} | set(REFERENCES)  # no position per answer
    assert auroc["target_absence"] > 0.95 and auroc["target_mass"] > 0.95 and auroc["lookback_lens"] > 0.9
    assert auroc["absence"] > 0.95 and auroc["retrieval_heads"] > 0.9  # the reference reads the answer's own steps
    assert auroc["lookback_mean"] > 0.6  # one head of 12 looks back less: the untrained mean sees it, weakly
    assert 0.25 < auroc["hidden_state"] < 0.75 and 0.25 < auroc["entropy"] < 0.75 and 0.25 < auroc["min_prob"] < 0.75
    assert auroc["context_length"] == auroc["needle_depth"] == 0.5  # one length, one depth: nothing to read


def test_detectors_before_the_token_cannot_see_a_signal_planted_after_it():
    """The signal planted only after the answer's first step: every before-the-token detector is at chance, the
    by-construction reference (the answer's own steps) still finds the label."""
    auroc = aurocs(planted_answers(80, 0, where="answer"), planted_answers(60, 1, where="answer"))
    for name in ("target_absence", "target_mass", "lookback_lens", "lookback_mean"):
        assert 0.3 < auroc[name] < 0.7, (name, auroc[name])
    assert auroc["absence"] > 0.95


def test_tables_read_the_lead_in_the_answer_steps_and_the_other_label():
    answers = planted_answers(4, 0)
    x, y, groups = answer_level(answers)
    a = answers[1]
    assert x["absence"][1, 0] == pytest.approx(np.mean(~a.active[LEAD:].any(axis=1)))  # reference: the answer's steps
    assert x["min_prob"][1, 0] == pytest.approx(1 - a.token_prob[: LEAD + 1].min())  # the lead-in and the first step
    assert x["target_absence"][1, 0] == pytest.approx(np.mean(1 - a.target_mass[: LEAD + 1].max(axis=1)))
    assert x["lookback_lens"].shape == (4, 12) and x["hidden_state"].shape == (4, 8) and "answer_position" not in x
    assert list(y) == [0, 1, 0, 1] and list(feature_tables(answers).answer_table("other")[1]) == [1, 0, 1, 0]
    sx, sy, sgroups = feature_tables(answers).step_table()
    assert len(sy) == 4 * 4 and list(sgroups[:4]) == [answers[0].group] * 4
    # token level: the token of step t (first labelled t = LEAD) is predicted from step t - 1; the reference reads t
    assert sx["entropy"][4, 0] == pytest.approx(answers[1].entropy[LEAD - 1])
    assert sx["absence"][4, 0] == float(not answers[1].active[LEAD].any())
    assert list(sx["answer_position"][:4, 0]) == [0, 1, 2, 3]


def test_confounds_read_length_and_within_strata_exposes_them():
    """Labels set by context length alone: the length-only baseline separates them, and its AUROC within length
    strata is 0.5; a planted signal keeps its AUROC within strata."""
    answers = planted_answers(48, 2, lengths=(1000, 2000))
    for a in answers:
        a.label = a.prompt_tokens == 2000  # hallucinated exactly at the longer length
    x, y, groups = answer_level(answers)
    strata = np.array([a.stratum for a in answers])
    weights = class_stratified_weights(groups, y, seed=0, resamples=200)
    length = within_strata(y, x["context_length"][:, 0], groups, strata, weights, len(y))
    assert roc_auc_score(y, x["context_length"][:, 0]) == 1.0
    assert "no stratum holds both classes" in length["note"]  # each length holds one class: nothing to compare within
    mixed = planted_answers(48, 3, lengths=(1000, 2000))
    x, y, groups = answer_level(mixed)
    strata = np.array([a.stratum for a in mixed])
    weights = class_stratified_weights(groups, y, seed=0, resamples=200)
    assert within_strata(y, x["context_length"][:, 0], groups, strata, weights, len(y))["estimate"] == 0.5
    planted = within_strata(y, x["target_absence"][:, 0], groups, strata, weights, len(y))
    assert planted["estimate"] > 0.95 and planted["low"] > 0.8 and set(planted["strata"]) == {"1000", "2000"}


def test_one_class_training_leaves_trained_detectors_out_and_untrained_ones_in():
    train = answer_level([a for a in planted_answers(20, 0) if not a.label])
    test = answer_level(planted_answers(10, 1))
    scores, unfitted, _ = fit_and_score(train[0], train[1], test[0])
    assert sorted(unfitted) == sorted(set(TRAINED) - {"answer_position"})
    assert set(scores) == (set(PRE_TOKEN) | set(REFERENCES)) - set(TRAINED)
    assert set(CONFOUNDS) <= set(TRAINED)  # oriented on the training rows, so one class there leaves them out too
    with pytest.raises(ValueError, match="unknown hallucination detector 'psychic'"):
        make_detector("psychic")
    with pytest.raises(ValueError, match="one feature per row"):
        SignalScore().fit(np.zeros((3, 2)))


def test_regularisation_is_chosen_on_training_folds_that_keep_documents_whole():
    y = np.array([0, 1] * 12)
    groups = np.repeat(np.arange(12), 2)  # two rows per document, one of each class
    folds = cv_folds(y, groups, seed=0)
    assert len(folds) == 5
    for train, test in folds:
        assert set(groups[train]).isdisjoint(groups[test]) and set(y[test]) == {0, 1}
    assert cv_folds(np.array([0, 0, 1]), np.array([0, 1, 2]), 0) is None  # one positive document: C stays fixed
    (xa, ya, ga), (xb, _, _) = answer_level(planted_answers(40, 0)), answer_level(planted_answers(20, 1))
    _, _, strengths = fit_and_score(xa, ya, xb, groups=ga)
    assert set(strengths) == set(TRAINED) - {"answer_position"} and all(c in CS for c in strengths.values())
    _, _, fixed = fit_and_score(xa, ya, xb, c=0.5, groups=ga)
    assert set(fixed.values()) == {0.5}


def test_evaluate_level_pairs_with_lookback_lens_and_states_the_balance():
    train, test = answer_level(planted_answers(60, 0)), answer_level(planted_answers(30, 2))
    level = evaluate_level(train, test, c=1.0, seed=0)
    assert level["test"] == {"rows": 30, "positives": 15, "documents": 30}
    target = level["detectors"]["target_absence"]
    assert target["auroc"]["low"] > 0.8 and target["auroc"]["n"] == 30
    assert "minus_reference" not in level["detectors"]["lookback_lens"]
    diff = level["detectors"]["hidden_state"]["minus_reference"]["auroc"]
    assert diff["high"] < 0 and diff["p"] < 0.01  # noise loses to the planted lookback signal
    from dynheads.suite.hallucination.tables import decided_differences

    decided = decided_differences({"niah": {"answer": level}})
    assert decided[("niah", "answer", "hidden_state", "auroc")]["verdict"] == "not supported"
    assert decided[("niah", "answer", "hidden_state", "auroc")]["family_size"] == 2 * (len(level["detectors"]) - 1)
    assert conjecture(level)["estimate"] == pytest.approx(target["auroc"]["estimate"] - 0.5)
    assert conjecture(level)["detector"] == "target_absence"
    assert conjecture(level)["p"] < 0.01 and conjecture(level)["test"] == "label permutation"
    assert (conjecture(level)["positives"], conjecture(level)["negatives"]) == (15, 15)
    assert (diff["positive_units"], diff["negative_units"]) == (15, 15)  # what the per-class minimum reads
    few = evaluate_level(train, answer_level(planted_answers(30, 2)[:14] + [a for a in planted_answers(30, 2)[14:] if not a.label]),
                         c=1.0, seed=0)
    few_decided = decided_differences({"niah": {"answer": few}})
    positives = few["conjecture"]["positive_units"]
    assert positives < 10 and few_decided[("niah", "answer", "hidden_state", "auroc")]["verdict"] == (
        f"insufficient n ({positives} positive units < 10)")
    one_class = evaluate_level(train, answer_level([a for a in planted_answers(10, 3) if a.label]), 1.0, 0)
    assert one_class["detectors"] == {} and "one class" in one_class["note"]
    assert conjecture(one_class) is None


def test_transfer_trains_on_one_section_and_tests_on_the_other():
    niah, hot = planted_answers(40, 0), hotpotqa_planted(30, 1)
    out = transfer(answer_level(niah), answer_level(hot), seed=0)
    assert out["train"]["documents"] == 40 and out["test"]["documents"] == 30  # never a row of the other section
    assert out["auroc"]["estimate"] > 0.9 and out["auroc"]["p"] < 0.01  # the same planted lookback signal transfers
    flipped = [dataclasses.replace(a, label=not a.label) for a in hot]
    assert transfer(answer_level(niah), answer_level(flipped), seed=0)["auroc"]["estimate"] < 0.1
    one = transfer(answer_level([a for a in niah if a.label]), answer_level(hot), seed=0)
    assert "one class" in one["note"]


def test_split_by_cell_keeps_cells_whole():
    answers = planted_answers(40, 0)
    train, test = split_by_cell(answers, 0.34, seed=0)
    assert {a.cell for a in train}.isdisjoint({a.cell for a in test}) and len(train) + len(test) == 40
    with pytest.raises(ValueError, match="at least 2 cells"):
        split_by_cell([a for a in answers if a.cell == (0,)], 0.34, 0)


# ---------------------------------------------------------------------------------------------- the stage
def hotpotqa_planted(n: int, seed: int) -> list[TracedAnswer]:
    """Planted answers shaped as HotpotQA's: one cell, no depth, no token labels, and the second label ``em0``."""
    return [dataclasses.replace(a, cell=(0,), depth=None, stratum=None, step_labels={},
                                extra_labels={"em0": a.label or i % 3 == 0})
            for i, a in enumerate(planted_answers(n, seed))]


def test_a_stage_run_builds_each_answers_features_and_lookback_ratios_once(tmp_path, monkeypatch):
    """One stage run builds each answer's per-step features (the lookback ratios among them) exactly once, and
    every table, level and label of its section reads them: NIAH's answer and token levels, HotpotQA's F1 and EM
    labels, and the transfer test. Counted per answer by wrapping the builder and ``lookback_ratios``."""
    import dynheads.probes.hallucination as detectors
    from dynheads.suite.hallucination import data, stage

    niah = [dataclasses.replace(a, cell=(i % 3,)) for i, a in enumerate(planted_answers(24, 0))]  # mixed cells
    hot_train, hot_test = hotpotqa_planted(20, 1), hotpotqa_planted(12, 2)
    monkeypatch.setattr(data, "niah_answers", lambda suite: niah)
    monkeypatch.setattr(data, "hotpotqa_answers", lambda suite, f1_threshold: (hot_train, hot_test))
    gold_train, gold_test = hotpotqa_planted(16, 4), hotpotqa_planted(12, 5)
    monkeypatch.setattr(data, "gold_answers", lambda suite: (gold_train, gold_test, {"train": 3, "dev": 1}))
    built, ratios = Counter(), Counter()
    step_features, lookback_ratios = TracedAnswer.step_features, detectors.lookback_ratios

    def counted_features(answer, *args):
        built[answer.group] += 1
        return step_features(answer, *args)

    def counted_ratios(mass, *args):
        ratios[id(mass)] += 1
        return lookback_ratios(mass, *args)

    monkeypatch.setattr(TracedAnswer, "step_features", counted_features)
    monkeypatch.setattr(detectors, "lookback_ratios", counted_ratios)
    suite = SimpleNamespace(profile={"hallucination": {"c": None, "f1_threshold": 0.5, "test_share": 0.34,
                                                       "niah": {"lengths": [50], "depths": [0.5], "runs": 24}}},
                            seed=3, name="planted", dir=tmp_path)
    summary = stage.run(suite)
    answers = niah + hot_train + hot_test + gold_train + gold_test
    assert built == Counter(a.group for a in answers)
    assert ratios == Counter(id(a.context_mass) for a in answers)
    assert all(summary[section][level]["detectors"] for section, level in (("niah", "answer"), ("niah", "token"),
                                                                           ("hotpotqa", "f1"), ("hotpotqa", "em0"),
                                                                           ("hotpotqa_gold", "faithful")))
    assert summary["transfer"]["niah_to_hotpotqa"]["test"]["documents"] == 12  # tested on the gold-paragraph answers
    assert summary["transfer"]["niah_to_hotpotqa"]["auroc"]["estimate"] > 0.8
    text = (tmp_path / "hallucination.md").read_text()
    assert "before the judged token" in text and "reads the judged token" in text and "within length strata" in text
    assert "C = {" not in text and "L2 strength C chosen by cross-validation" in text
    assert "(yes / no, empty, restated) left out (no label): 3 train, 1 dev." in text


# ---------------------------------------------------------------------------------------------- trace signals
def write_trace(folder: Path, steps: list[dict], masses: tuple[str, ...] = ("context_mass", "target_mass")) -> Path:
    """One unmasked NIAH trace line with its sidecar, laid out as the engine writes it (3 layers x 2 heads)."""
    from dynheads.traces import append_lines, append_vectors, sidecar_path, trace_path

    path, rng = trace_path(folder, "niah_uuid"), np.random.default_rng(0)
    vectors = append_vectors(sidecar_path(path), rng.normal(size=(len(steps), 4)), np.zeros((len(steps), 6)), "float32",
                             masses={name: rng.uniform(0.2, 0.9, (len(steps), 6)) for name in masses}, response_header=3)
    append_lines(path, [{"task": "niah_uuid", "doc_id": 7, "mask": "none", "response": "abc", "input_ids": list(range(20)),
                         "steps": steps, "vectors": vectors}])
    return path


def complete_steps() -> list[dict]:
    """Three traced steps storing every signal; a retrieval head (layer 1, head 0) fires at step 1 only."""
    return [{"token_id": t, "heads": [[1, 0]] if t == 1 else [], "entropy": 0.5 + t, "token_prob": 0.9 - t / 10}
            for t in range(3)]


def read_answer(folder: Path) -> TracedAnswer:
    """The folder's one unmasked line as the stage reads it."""
    ((line, path),) = unmasked_lines(folder, "niah_uuid")
    return traced_answer(line, path, 2, lambda ids: "abc"[: len(ids)], (0, 3), False, (0,))


def test_a_complete_trace_line_gives_the_stored_signals(tmp_path):
    write_trace(tmp_path, complete_steps())
    answer = read_answer(tmp_path)
    assert answer.active.sum() == 1 and answer.active[1, 1 * 2 + 0]  # step 1's head (layer 1, head 0), no other
    assert list(answer.entropy) == [0.5, 1.5, 2.5] and list(answer.token_prob) == pytest.approx([0.9, 0.8, 0.7])
    assert answer.context_mass.shape == answer.target_mass.shape == (3, 6) and answer.steps == [0, 1, 2]
    assert answer.response_header == 3


@pytest.mark.parametrize("signal", ["heads", "entropy", "token_prob", "context_mass", "target_mass"])
def test_a_trace_line_missing_a_signal_fails_naming_the_file_and_the_fix(tmp_path, signal):
    """A signal the trace does not store is never filled in (a step without ``heads`` would read as "no head
    fired", i.e. absence 1): one error line naming the document, the file, the signal and the fix."""
    steps = complete_steps()
    if signal not in ("context_mass", "target_mass"):
        del steps[1][signal]
    path = write_trace(tmp_path, steps, masses=tuple(m for m in ("context_mass", "target_mass") if m != signal))
    with pytest.raises(ValueError) as error:
        read_answer(tmp_path)
    message = str(error.value)
    assert "document 7" in message and str(path) in message and signal in message, message
    assert message.endswith("delete the cell folder and rerun") and "\n" not in message
