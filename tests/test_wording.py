import math
import random

from kgqa.data import Question, training_pairs
from kgqa.rank.wording import BOUNDED, ORDINARY, Wording, fit_wording
from kgqa.spelling import Homophones

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


def test_a_name_that_runs_on_into_other_name_like_characters_is_told_from_one_wording_bounds():
    wording = Wording({"请问": 40, "主要": 30, "的使": 12})
    # 请问|喇叭|主要: bounded by wording on both sides, as plainly as its less common side
    assert wording.beside("请问喇叭主要用于什么？", "喇叭") == math.log1p(30)
    # 玩具|喇叭: the name runs on into characters no question uses as wording (玩具喇叭 is the name)
    assert wording.beside("请问玩具喇叭主要用于什么？", "喇叭") == 0.0
    assert wording.beside("請問玩具喇叭主要用於什麼？", "喇叭") == 0.0  # typed in another script, the same
    # the question's edge, a title mark, a Latin letter: bounded; a name it does not spell: nothing known
    assert wording.beside("《喇叭》主要用于什么？", "喇叭") == math.log1p(30)
    assert wording.beside("喇叭", "喇叭") == BOUNDED == wording.beside("请问AB喇叭", "喇叭")
    assert wording.beside("请问小号主要用于什么？", "喇叭") == BOUNDED


def test_a_homophone_typo_replaces_one_character_of_the_name_by_the_commonest_of_its_sound():
    homophones = Homophones(["刘晓华主要讲什么课？", "小华是谁？", "小小的华山"])
    typed = homophones.typo("刘晓华主要讲什么课？", "刘晓华", random.Random(0))
    assert typed == "刘小华主要讲什么课？"  # 晓 and 小 sound xiao; 小 is the commoner; 刘 and 华 have no other
    assert homophones.typo("刘晓华主要讲什么课？", "张三", random.Random(0)) is None
