from hypothesis import given, settings, strategies as st

from kgqa.text import common_subsequence, longest_common_substring, without_mention


def _textbook_subsequence(a, b):
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


@settings(max_examples=300, derandomize=True)
@given(st.text("刘晓华主讲课程固体物理ab ", max_size=12), st.text("刘晓华主讲课程固体物理ab ", max_size=12))
def test_common_subsequence_is_the_textbook_one(a, b):
    assert common_subsequence(a, b) == _textbook_subsequence(a, b)


def test_common_subsequence_examples():
    assert common_subsequence("主要讲什么课", "主讲课程") == 3
    assert common_subsequence("", "abc") == 0 and common_subsequence("abc", "abc") == 3


def test_longest_common_substring_and_the_question_without_its_mention():
    assert longest_common_substring("固体化学", "固体物理") == 2
    assert longest_common_substring(["ab", "c"], ["x", "ab", "c"]) == 2
    assert longest_common_substring("", "x") == 0
    assert without_mention("刘晓华的刘晓华主讲什么", "刘晓华") == "的刘晓华主讲什么"
