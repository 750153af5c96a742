from kgqa.data import Question, training_pairs
from kgqa.rank.wording import ORDINARY, Wording, fit_wording

QUESTIONS = [("甲校在哪里？", "甲校 ||| 校址 ||| 东路1号"), ("你知道乙校在哪里吗？", "乙校 ||| 地址 ||| 西路2号"),
             ("哪里哪里是丙校的校址？", "丙校 ||| 校址 ||| 南路3号"), ("哪里是哪里人？", "哪里 ||| 籍贯 ||| 北京"),
             ("丁在哪裡出生？", "丁 ||| 出生地 ||| 上海")]


def _wording() -> Wording:
    return fit_wording(training_pairs(Question(i, q, a) for i, (q, a) in enumerate(QUESTIONS)))


def test_a_bigram_is_counted_once_per_question_outside_its_subject_and_as_its_spelling_key():
    counts = _wording().counts
    # twice in the third question, not in the fourth (its subject is 哪里), traditional 哪裡 as 哪里
    assert counts["哪里"] == 4
    assert counts["在哪"] == 3
    # nothing of a subject, nor across it: 校在 of 甲校在, 是哪 of 哪里是哪里人 (subject 哪里)
    assert not {"甲校", "乙校", "校在", "是哪"} & set(counts)
    assert counts["里是"] == 1  # the third question's, not the fourth's (its 哪里 is its subject)


def test_a_span_is_ordinary_wording_where_enough_questions_hold_it_whatever_its_spelling():
    wording = Wording({"什么": ORDINARY, "哪里": ORDINARY - 1})
    assert wording.ordinary("什么") and wording.ordinary("什麼") and wording.ordinary("什 么")
    assert not wording.ordinary("哪里")  # too few questions
    assert not wording.ordinary("沉华") and not wording.ordinary("什么人")  # unseen; not two characters
