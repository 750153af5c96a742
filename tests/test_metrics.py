import pytest

from kgqa.metrics import f1, score

# Pairs where the longest common subsequence, the longest common substring and a word-level F1
# disagree, or where normalisation matters: empty strings, mixed Latin/CJK, spaces, full-width
# punctuation, case.
HARD = [
    ("", ""), ("", "x"), ("x", ""), ("固体物理", "固体物理"), ("固体化学", "固体物理"), ("北京市", "北京"),
    ("主要讲什么课", "主讲课程"), ("刘晓华 ABC  def！", "刘晓华abc def!"), ("Harry  Potter", "harry potter"),
    ("１９８４年", "1984年"), ("《星河》", "星河"), ("a b c", "abc"), ("  ", ""), ("ＡＢＣ", "abc"),
    ("1958年12月1日", "1958年1月21日"), ("中华人民共和国", "中国"), ("ab", "ba"), ("上海（城市）", "上海"),
]


def _official_f1(a: str, b: str) -> float:
    """KgCLUE's f1_sim as its scorer computes it, with the LCS library it uses (pylcs)."""
    pylcs = pytest.importorskip("pylcs")
    a, b = " ".join(a.lower().split()), " ".join(b.lower().split())
    return 0.0 if not a and not b else 2.0 * pylcs.lcs(a, b) / (len(a) + len(b))


@pytest.mark.parametrize("a, b", HARD)
def test_f1_equals_the_official_scorer_on_hard_pairs(a, b):
    assert f1(a, b) == pytest.approx(_official_f1(a, b), abs=1e-12)


def test_f1_is_the_longest_common_subsequence_not_substring():
    assert f1("主要讲什么课", "主讲课程") == pytest.approx(2 * 3 / 10)  # 主, 讲, 课 in order
    assert f1("ab", "ba") == pytest.approx(0.5)
    assert f1("", "") == 0.0 and f1("", "x") == 0.0
    assert f1("Harry  Potter", "harry potter") == 1.0


def test_score_table_has_the_official_fields():
    gold = ["A ||| p ||| 固体物理", "B ||| q ||| 北京"]
    table = score(["A ||| p ||| 固体物理", "B ||| q ||| 北京市"], gold)
    assert table["EM_O"] == 50.0
    assert table["F1_O"] == pytest.approx(100 * (1 + 0.8) / 2)
    assert table["score"] == pytest.approx((50 + 90) / 2)
    assert table["EM_S"] == 100.0 and table["EM_All"] == 50.0
    assert table["F1_All"] == pytest.approx(100 * (1 + 2 * 4 / 9) / 2, abs=1e-3)  # bq北京市 vs bq北京: LCS 4 of 5 + 4 chars
    assert score(["", ""], gold)["score"] == 0.0
