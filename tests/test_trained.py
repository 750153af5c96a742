"""The trained predicates' wording: a question worded as training's questions of a predicate
resembles them, one that falls back on the predicate (it asks about another the KB lacks) does not,
however the question is typed."""
import numpy as np
import pytest

from kgqa.data import Target
from kgqa.kb.triples import Fact
from kgqa.rank.storage import write_fitted
from kgqa.rank.trained import TrainedPredicates, fit_trained_predicates

PAIRS = [("胡洋英是哪个学校毕业的？", Target("胡洋英", "毕业院校", "杭州作家", "武汉大学")),
         ("李娜秀毕业于哪所大学？", Target("李娜秀", "毕业院校", "", "西安大学")),
         ("王芳是什么时候出生的？", Target("王芳", "出生日期", "", "1956年8月23日"))]


def _facts(surface):
    return [Fact(surface, predicate, "", ["x"]) for predicate in ("毕业院校", "出生日期", "所属省份")]


def test_training_questions_are_kept_by_predicate_without_their_subject():
    trained = fit_trained_predicates(PAIRS)
    assert trained.predicates == {"毕业院校", "出生日期"}
    # as spelling keys (`spelling.fold`): full-width marks as half-width
    assert trained.wordings == {"毕业院校": ("是哪个学校毕业的?", "毕业于哪所大学?"), "出生日期": ("是什么时候出生的?",)}
    assert trained.flags(_facts("张三")).tolist() == [1.0, 1.0, 0.0]


def test_a_question_worded_as_trainings_resembles_it_and_a_fallback_or_an_untrained_predicate_does_not():
    trained = fit_trained_predicates(PAIRS)
    asked = trained.resemblance("张三是哪个学校毕业的？", _facts("张三"))
    assert asked[0] == 1.0 and asked[1] < 0.5 and asked[2] == 0.0  # 所属省份: not trained on
    # a question about the province falls back on the school: worded unlike training's school questions
    fallback = trained.resemblance("张三是哪个省的？", _facts("张三"))
    assert fallback[0] < 0.5 and fallback[0] < asked[0]
    assert 0.0 < trained.resemblance("张三毕业于哪所学校？", _facts("张三"))[0] < 1.0  # in part as each
    # typed in traditional characters and full-width, read as the KB spells
    assert trained.resemblance("張三是哪個學校畢業的?", _facts("張三")).tolist() == pytest.approx(asked.tolist())
    assert trained.resemblance("张三是哪个学校毕业的？", []).shape == (0,)


def test_without_training_wordings_nothing_resembles():
    assert TrainedPredicates({"毕业院校": ()}).resemblance("张三是哪个学校毕业的？", _facts("张三")).tolist() == \
        [0.0, 0.0, 0.0]
    assert np.array_equal(TrainedPredicates({}).flags(_facts("张三")), np.zeros(3))


def test_trained_predicates_an_earlier_kgqa_saved_are_read_without_wordings(tmp_path):
    write_fitted(str(tmp_path), "trained_predicates", {"predicates": np.array(["毕业院校"], dtype=str)})
    earlier = TrainedPredicates.load(str(tmp_path))
    assert earlier.predicates == {"毕业院校"} and earlier.wordings == {"毕业院校": ()}  # no wording; the reranker reads them as before
    assert earlier.resemblance("张三是哪个学校毕业的？", _facts("张三")).tolist() == [0.0, 0.0, 0.0]
    fit_trained_predicates(PAIRS).save(str(tmp_path))
    assert TrainedPredicates.load(str(tmp_path)) == fit_trained_predicates(PAIRS)
