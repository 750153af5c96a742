import pytest

from kgqa.metrics import f1, score, segments


def test_segments_split_cjk_and_keep_latin_words():
    assert segments("刘晓华 ABC  def！") == ["刘", "晓", "华", "abc", "def", "！"]


def test_f1_uses_the_longest_common_substring():
    assert f1("固体物理", "固体物理") == 1.0
    assert f1("固体化学", "固体物理") == pytest.approx(0.5)
    assert f1("", "x") == 0.0


def test_score_table():
    gold = ["A ||| p ||| 固体物理", "B ||| q ||| 北京"]
    table = score(["A ||| p ||| 固体物理", "B ||| q ||| 北京市"], gold)
    assert table["EM_O"] == 50.0
    assert table["F1_O"] == pytest.approx(100 * (1 + 0.8) / 2)
    assert table["score"] == pytest.approx((50 + 90) / 2)
    assert table["EM_S"] == 100.0 and table["EM_SPO"] == 50.0
    assert score(["", ""], gold)["score"] == 0.0
