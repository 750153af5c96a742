"""Confidence, abstention and ambiguous subjects: the calibrator's probabilities mean what they
say, a question without its fact or entity teaches "wrong", homonyms the question cannot tell
apart are named, and a minimum confidence turns a doubtful answer into no answer."""

import os

import numpy as np
import pytest

from kgqa.settings import DecodeSettings
from kgqa.errors import KgqaError
from kgqa.journal import prediction_record, leaderboard_record
from kgqa.model.seq2seq import scratch_model
from kgqa.pipeline import KGQA
from kgqa.candidate import Candidate, reply_json
from kgqa.rank.fitted import Fitted
from kgqa.rank.storage import read_fitted, write_fitted
from kgqa.rank.confidence import (SIGNAL_NAMES, TOP, UNANSWERABLE_WEIGHT, Calibrator, alternatives, calibration_rows,
                                  fit_calibrator, ranking, signal_rows)
from kgqa.rank.features import FEATURE_NAMES, CandidateSet
from kgqa.rank.reranker import Reranker
from kgqa.rank.trained import TrainedPredicates
from kgqa.rank.unanswerable import unanswerable_views
from kgqa.rank.wording import BOUNDED
from kgqa.data import read_questions
from kgqa.kb.triples import split_subject
from kgqa.explanation import explain

from conftest import SAMPLE, TINY_SHAPE


def test_the_calibrators_probabilities_match_how_often_it_is_right(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(8000, len(SIGNAL_NAMES)))  # enough that fitting every signal's noise costs little
    right = (rng.random(8000) < 1 / (1 + np.exp(-(2 * rows[:, 0] - 1)))).astype(float)
    fitted = Calibrator.fit(rows[:6000], right[:6000], np.ones(6000))
    p = fitted.probabilities(rows[6000:])
    bins = np.digitize(p, np.linspace(0, 1, 11)[1:-1])
    gaps = [abs(p[bins == b].mean() - right[6000:][bins == b].mean()) * (bins == b).mean()
            for b in range(10) if (bins == b).any()]
    assert sum(gaps) < 0.04  # expected calibration error on questions it was not fitted on
    fitted.save(str(tmp_path))
    fields = ("features", "mean", "std", "weights", "bias", "refuse_below")
    saved = read_fitted(str(tmp_path), "calibrator", "calibrator", fields)
    write_fitted(str(tmp_path), "calibrator", {**saved, **{  # a file with its signals in another order
        field: saved[field][::-1] for field in ("mean", "std", "weights", "features")}})
    assert Calibrator.load(str(tmp_path)).probabilities(rows[6000:]) == pytest.approx(p)
    # rescaled to answers that are right more often than it says: the same order, their rate on average
    often = (rng.random(2000) < np.minimum(1.0, p + 0.2)).astype(float)
    rescaled = fitted.rescaled(fitted.logits(rows[6000:]), often)
    assert (np.argsort(rescaled.probabilities(rows[6000:])) == np.argsort(p)).all()
    assert rescaled.probabilities(rows[6000:]).mean() == pytest.approx(often.mean(), abs=1e-3)


def _candidates(index, question, surface, trained=frozenset(), likelihood=0.0, asked=None):
    """Every key of `surface` as one question's candidates (likelihoods all `likelihood`), those of
    a predicate in `trained` flagged as the model's training predicates (`asked`: how training's
    questions worded each, `TrainedPredicates.wordings`)."""
    sid = index.names.surface_id(surface)
    keys = [key for key, _, _ in index.keys(sid)] if sid is not None else []
    facts = [index.fact(k) for k in keys]
    taught = TrainedPredicates({predicate: (asked or {}).get(predicate, ()) for predicate in trained})
    return CandidateSet(question, keys, facts, [], {
        "likelihoods": np.full((len(keys), 4), likelihood),
        "prominence": np.array([index.prominence(k) for k in keys]).reshape(-1, 3),
        "kinds": np.zeros(len(keys)), "named": np.zeros((len(keys), 2)), "channel": np.zeros(len(keys)),
        "trained": taught.flags(facts), "beside": np.full(len(keys), BOUNDED),
        "resemblance": taught.resemblance(question, facts)})


def test_the_confidence_reads_a_candidate_of_a_trained_predicate_apart_and_a_fit_without_any_ignores_it(sample_kb):
    _, _, _, index = sample_kb
    found = _candidates(index, "胡洋英是哪个学校毕业的？", "胡洋英", trained={"毕业院校"}, likelihood=-2.0,
                        asked={"毕业院校": ("是哪个学校毕业的?", "毕业于哪所大学?")})
    school = found.position("胡洋英（杭州作家）", "毕业院校")
    born = found.position("胡洋英（杭州作家）", "出生日期")
    rows = signal_rows(found, np.zeros(len(found.keys)), np.array([school, born]))
    column = {name: SIGNAL_NAMES.index(name) for name in
              ("predicate_trained", "trained_log_likelihood", "log_likelihood", "trained_beam_first",
               "trained_resemblance")}
    assert rows[0, column["predicate_trained"]] == 1.0 and rows[1, column["predicate_trained"]] == 0.0
    assert rows[0, column["trained_resemblance"]] == 1.0 and rows[1, column["trained_resemblance"]] == 0.0
    assert rows[0, column["trained_log_likelihood"]] == rows[0, column["log_likelihood"]] != 0.0
    assert rows[1, column["trained_log_likelihood"]] == 0.0
    # a calibrator fitted where no candidate was of a trained predicate (no question held out of
    # them) gives those signals no weight: its confidences are what they were without them
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(2000, len(SIGNAL_NAMES)))
    apart = [SIGNAL_NAMES.index(name) for name in SIGNAL_NAMES if name.startswith(("predicate_trained", "trained_"))]
    noise[:, apart] = 0.0
    right = (rng.random(2000) < 1 / (1 + np.exp(-noise[:, 0]))).astype(float)
    fitted = Calibrator.fit(noise, right, np.ones(2000))
    assert len(apart) == 5 and all(fitted.weights[i] == 0.0 for i in apart)


def test_a_question_without_its_gold_key_or_entity_has_no_right_candidate(sample_kb):
    _, _, _, index = sample_kb
    found = _candidates(index, "胡洋英是哪个学校毕业的？", "胡洋英")
    gold = found.position("胡洋英（杭州作家）", "毕业院校")
    assert gold is not None
    without = found.without(lambda a: a == found.facts[gold])
    assert len(without.keys) == len(found.keys) - 1 and without.position("胡洋英（杭州作家）", "毕业院校") is None
    assert without.features.shape == (len(found.keys) - 1, len(FEATURE_NAMES))
    # 40 held-out questions of two predicates, in two folds: each fold scored by a reranker of the other
    golds = [("胡洋英（杭州作家）", "毕业院校", "武汉大学")] * 20 + [("胡洋英（杭州作家）", "出生日期", "1956年8月23日")] * 20
    found = [_candidates(index, "胡洋英是哪个学校毕业的？", "胡洋英")] * 20 + \
        [_candidates(index, "胡洋英是什么时候出生的？", "胡洋英")] * 20
    rows, right, weights, answers = calibration_rows(found, golds, 1e-3)
    assert rows.shape[1] == len(SIGNAL_NAMES) and len(rows) == len(right) == len(weights) == len(answers)
    # as it is, a question may be right; with its gold key or entity gone it never is
    assert right[weights == 1.0].any() and not right[weights < 1.0].any()
    assert answers.sum() == 40 and (weights[answers] == 1.0).all()  # one answer per question as it is
    # read over a KB without the gold key (its other keys as candidates): rows weighed as a real
    # question, never right, never the answer to the question as it is
    gone = [[f.without(lambda a: a.predicate == gold[1])] for f, gold in zip(found, golds)]
    more = calibration_rows(found, golds, 1e-3, gone)
    assert len(more[0]) == len(rows) + 40 * TOP and more[1].sum() == right.sum() and more[3].sum() == 40
    assert (more[2] == UNANSWERABLE_WEIGHT).sum() == (weights == UNANSWERABLE_WEIGHT).sum() + 40 * TOP


def test_held_out_questions_are_read_again_over_a_copy_of_the_kb_without_their_entity_or_gold_key(sample_kb):
    _, _, tokenizer, index = sample_kb
    held = [q for q in read_questions(f"{SAMPLE}/train.json", need_answers=True)][:24]
    asked = []

    def subject_keys(over, questions):
        """As a pipeline would: here each held-out question's candidates are the keys its gold
        subject's surface has left (a typed one's: none)."""
        asked.append((over, questions))
        surfaces = [split_subject(q.gold()[0])[0] for q in held] + [""] * (len(questions) - len(held))
        return [_candidates(over, question, surface) for question, surface in zip(questions, surfaces)]

    views = unanswerable_views(index, held, 0, subject_keys)
    (copy, questions), = asked
    assert copy.directory != index.directory and not os.path.exists(copy.directory)  # read, then removed
    assert not [name for name in os.listdir(os.path.dirname(index.directory)) if name.startswith(".kgqa-unanswerable")]
    assert len(views) == len(held) and questions[:len(held)] == [q.question for q in held]
    kinds = set()
    for q, (as_written, *typed) in zip(held, views):
        subject, predicate, _ = q.gold()
        surface, disambiguation = split_subject(subject)
        left = [f for f in as_written.facts if f.disambiguation == disambiguation]
        assert not [f for f in left if f.predicate == predicate]  # the gold key is gone either way
        kinds.add("fact" if left else "entity")
        assert len(typed) <= 1 and (not typed or (not left and typed[0].question != q.question))
        assert index.names.surface_id(surface) is not None  # the index itself keeps it all
    assert kinds == {"fact", "entity"} and sum(len(v) == 2 for v in views) > 0


def test_held_out_questions_of_one_predicate_fit_no_calibrator_rather_than_nans(sample_kb):
    # every question in one fold: no fold has others to be scored by, so no rows (it wrote NaNs)
    _, _, _, index = sample_kb
    golds = [("胡洋英（杭州作家）", "毕业院校", "武汉大学")] * 40
    found = [_candidates(index, "胡洋英是哪个学校毕业的？", "胡洋英")] * 40
    assert len(calibration_rows(found, golds, 1e-3)[0]) == 0
    assert fit_calibrator(found, golds, 1e-3) is None


def test_homonyms_the_question_cannot_tell_apart_are_named_and_one_it_can_is_not(sample_kb):
    _, _, _, index = sample_kb
    vague = _candidates(index, "胡洋英是哪个学校毕业的？", "胡洋英")
    chosen = vague.position("胡洋英（杭州作家）", "毕业院校")
    assert alternatives(vague, chosen) == [("胡洋英（杭州教授）", "长沙大学")]
    said = _candidates(index, "当作家的胡洋英是哪个学校毕业的？", "胡洋英")
    assert alternatives(said, said.position("胡洋英（杭州作家）", "毕业院校")) == []
    # and the probability of such rivals is a signal of the answer's confidence
    scores = np.zeros(len(vague.keys))
    scores[chosen] = 2.0
    order = ranking(scores)
    rows = signal_rows(vague, scores, order[:1])
    assert order[0] == chosen and rows[0, SIGNAL_NAMES.index("rival_share")] > 0


def _calibrated(sample_kb, settings: DecodeSettings, weights: list[float] | None = None, bias: float = 0.0):
    """A pipeline over the sample KB (a random model) ranking by the likelihood alone, with a
    calibrator of `weights` (zeros: a coin) and `bias`."""
    _, _, tokenizer, index = sample_kb
    width = len(FEATURE_NAMES)
    reranker = Reranker([0.0] * width, [1.0] * width, [1.0] + [0.0] * (width - 1))
    calibrator = Calibrator([0.0] * len(SIGNAL_NAMES), [1.0] * len(SIGNAL_NAMES),
                            weights or [0.0] * len(SIGNAL_NAMES), bias)
    return KGQA(scratch_model(tokenizer, TINY_SHAPE, 0), tokenizer, index, settings, Fitted(reranker, calibrator))


def test_a_minimum_confidence_turns_a_doubtful_answer_into_no_answer(sample_kb):
    question = ["胡洋英是哪个学校毕业的？"]
    qa = _calibrated(sample_kb, DecodeSettings(top_k=3))
    found = qa.ask(question)[0]
    assert [c.confidence for c in found] == pytest.approx([0.5] * 3)  # zero weights: a coin
    with pytest.raises(KgqaError, match="calibrator"):
        KGQA(qa.model, qa.tokenizer, qa.index, DecodeSettings(min_confidence=0.6), Fitted(qa.fitted.reranker))
    doubtful = _calibrated(sample_kb, DecodeSettings(top_k=3, min_confidence=0.6))
    assert doubtful.ask(question)[0][0].answer() == found[0].answer()  # still ranked: only the answer is withheld
    record = prediction_record(_question(), found, doubtful.settings)
    assert record["answer"] == "" and record["confidence"] == 0.5 and len(record["candidates"]) == 3
    assert leaderboard_record(_question(), found, DecodeSettings(min_confidence=0.0))["answer"] == found[0].answer()
    assert reply_json(found, 0.6) == {"answer": None, "confidence": 0.5}
    assert reply_json(found, 0.4)["answer"] == found[0].answer()
    assert reply_json([], 0.6)["answer"] == ""  # nothing reachable is not the same as not sure
    explained = explain(doubtful, question[0])
    assert not explained.answered and explained.as_json()["answer"] is None
    assert explained.as_json()["confidence"] == 0.5


def test_a_candidate_is_never_said_to_be_surer_than_one_ranked_before_it(sample_kb):
    # a calibrator that reads the first-ranked as the least sure: left alone, it would put the
    # second above the first
    qa = _calibrated(sample_kb, DecodeSettings(top_k=3), [-4.0 if name == "top" else 0.0 for name in SIGNAL_NAMES])
    question = "胡洋英是哪个学校毕业的？"
    for confidences in ([c.confidence for c in qa.ask([question])[0]],
                        [r.candidate.confidence for r in explain(qa, question).candidates[:3]]):
        assert confidences == pytest.approx([1 / (1 + np.exp(4.0))] * 3)  # the first's, not the others' 0.5


def test_a_question_naming_nothing_the_kb_holds_gets_no_confidence(sample_kb):
    # README's own example asked of the sample KB, which holds neither 刘晓华 nor the predicate: a
    # calibrator sure of everything (as the sample's, fitted on a few dozen questions, was of this
    # one: 0.98) gives its guess no confidence, while a question naming a KB subject keeps its own
    qa = _calibrated(sample_kb, DecodeSettings(min_confidence=0.5), bias=4.0)
    for question in ("刘晓华主要讲什么课啊？", "这个东西是什么？"):
        explained = explain(qa, question)
        assert explained.mentions == [] and explained.chosen is not None  # a best guess, shown as such
        assert explained.chosen.confidence == 0.0 and not explained.answered
        assert qa.ask([question])[0][0].confidence == 0.0
    assert qa.ask(["胡洋英是哪个学校毕业的？"])[0][0].confidence == pytest.approx(1 / (1 + np.exp(-4.0)))


def _question():
    from kgqa.data import Question
    return Question(1, "胡洋英是哪个学校毕业的？")


def test_a_candidate_without_confidence_is_printed_as_before():
    plain = Candidate("胡洋英", "毕业院校", "杭州作家", "武汉大学", 1.0, 3)
    assert plain.as_json() == {"answer": "胡洋英（杭州作家） ||| 毕业院校 ||| 武汉大学", "score": 1.0}


def test_the_refusal_threshold_is_the_lowest_confidence_whose_answers_above_are_surely_95_percent_right():
    from kgqa.rank.confidence import refusal_threshold

    confidences = np.repeat([0.9, 0.8, 0.7], 100)
    right = np.concatenate([np.ones(100), np.ones(97), np.zeros(3), np.ones(80), np.zeros(20)])
    assert refusal_threshold(confidences, right) == 0.8  # 197 of 200 right; 277 of 300 is not 95%
    assert refusal_threshold(confidences, right, precision=0.85) == 0.7
    # ten answers all right are too few to say 95% (Wilson's lower bound 0.79): refuse all
    assert refusal_threshold(np.full(10, 0.9), np.ones(10)) == 1.0
    # a tie is kept or refused whole: the 60 answers at 0.9 (50 right) go together, and with them it is not 90%
    tied = np.repeat([0.95, 0.9, 0.8], [100, 60, 40])
    right = np.concatenate([np.ones(150), np.zeros(10), np.ones(20), np.zeros(20)])
    assert refusal_threshold(tied, right, precision=0.9) == 0.95


def test_where_a_person_asks_the_checkpoints_threshold_refuses_and_a_file_answers_every_question(sample_kb):
    question = ["胡洋英是哪个学校毕业的？"]
    qa = _calibrated(sample_kb, DecodeSettings(top_k=3))  # a coin: 0.5 for every candidate
    qa.fitted.calibrator.refuse_below = 0.6
    asked = KGQA(qa.model, qa.tokenizer, qa.index, DecodeSettings(top_k=3), qa.fitted)  # min_confidence None
    assert asked.settings.min_confidence == 0.6 and not explain(asked, question[0]).answered
    filed = KGQA(qa.model, qa.tokenizer, qa.index, DecodeSettings(top_k=3, min_confidence=0.0), qa.fitted)
    assert filed.settings.min_confidence == 0.0 and explain(filed, question[0]).answered
    unranked = KGQA(qa.model, qa.tokenizer, qa.index, DecodeSettings(top_k=3, rerank=False), qa.fitted)
    assert unranked.settings.min_confidence == 0.0  # no reranker at work: no confidence to refuse by


def test_the_refusal_threshold_is_saved_with_the_calibrator(tmp_path):
    width = len(SIGNAL_NAMES)
    Calibrator([0.0] * width, [1.0] * width, [0.5] * width, 0.1, refuse_below=0.73).save(str(tmp_path))
    assert Calibrator.load(str(tmp_path)).refuse_below == pytest.approx(0.73)
    saved = read_fitted(str(tmp_path), "calibrator", "calibrator", ("features", "mean", "std", "weights", "bias"))
    write_fitted(str(tmp_path), "calibrator", saved)  # as an earlier kgqa saved it, without a threshold
    with pytest.raises(KgqaError, match="no refuse_below: fitted by an earlier kgqa; `kgqa fit-reranker` fits it again"):
        Calibrator.load(str(tmp_path))
