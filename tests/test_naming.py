import os

import numpy as np
import pytest

from kgqa.data import Question, training_pairs
from kgqa.errors import KgqaError
from kgqa.kb.triples import Fact
from kgqa.rank.naming import PRIOR, Naming, fit_naming

QUESTIONS = [("甲校在哪里？", "甲校 ||| 校址 ||| 东路1号"), ("乙校在哪里？", "乙校 ||| 地址 ||| 西路2号"),
             ("丙校的校址是哪里？", "丙校 ||| 校址 ||| 南路3号"), ("丁在哪一年出生？", "丁 ||| 出生年份 ||| 1990年"),
             ("在线看的平台是什么？", "在线 ||| 播放平台 ||| 腾讯视频")]


def _questions():
    return training_pairs(Question(i, q, a) for i, (q, a) in enumerate(QUESTIONS))


def test_a_characters_weight_is_how_often_it_names_the_gold_predicate():
    naming = fit_naming(_questions())
    assert naming.counts["在"] == (0, 3)  # in three questions (not the fifth: its mention 在线 is taken out)
    assert naming.counts["址"] == (1, 1)
    assert naming.weight("址") > PRIOR > naming.weight("在")
    assert naming.weight("从未见过") == PRIOR


def test_a_predicate_the_question_names_outweighs_one_sharing_a_function_character():
    naming = fit_naming(_questions())
    answers = [Fact("戊校", "在线播放平台", "", ["腾讯视频"]), Fact("戊校", "校址", "", ["北路4号"])]
    named = naming.scores("戊校的校址在哪里？", answers)
    assert named[1, 0] > named[0, 0] > 0  # 校址 by 校 and 址, 在线播放平台 by 在 only
    assert named[0, 1] == named[1, 1] == pytest.approx(sum(naming.weight(c) for c in set("的校址在哪里？")))


def test_naming_weights_are_saved_and_read_back(tmp_path):
    naming = fit_naming(_questions())
    naming.save(str(tmp_path))
    assert Naming.load(str(tmp_path)) == naming
    assert Naming.load(str(tmp_path / "none")) is None
    (tmp_path / "naming.npz").write_bytes(b"many")
    with pytest.raises(KgqaError, match="unreadable naming weights"):
        Naming.load(str(tmp_path))
    assert np.array_equal(naming.scores("问", []), np.zeros((0, 2)))


def test_naming_scores_are_the_same_bits_whatever_the_process_string_hashing():
    import subprocess
    import sys

    script = ("from kgqa.kb.triples import Fact\n"
              "from kgqa.rank.naming import Naming\n"
              "naming = Naming({c: (i % 7, 9 + i % 5) for i, c in enumerate('的是什么哪里出生地点时间作者国家一二三四五六七八')})\n"
              "answers = [Fact('刘晓华', p, '', ['x']) for p in ('出生地点', '国家作者时间', '什么哪里一二三')]\n"
              "print([x.hex() for x in naming.scores('刘晓华的出生地点是什么哪里国家一二三四五六七八时间？', answers).ravel()])\n")
    found = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert len(found) == 1, found
