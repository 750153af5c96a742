"""The synonym feature: a predicate's words said in the question as themselves or as a Cilin synonym."""
import pytest

from kgqa.rank.synonyms import synonym_covered


@pytest.mark.parametrize("predicate, rest, share", [
    ("出生地", "在哪里诞生的？", 2 / 3),  # 出生 = 诞生; 地 not said
    ("特点", "有什么特征？", 1.0),  # 特点 = 特征
    ("特点", "有什么特点？", 1.0),  # said as itself
    ("配偶", "的职业是什么？", 0.0),
    ("", "什么？", 0.0),
])
def test_a_predicate_is_covered_by_its_synonyms_in_the_question(predicate, rest, share):
    assert synonym_covered(predicate, rest) == pytest.approx(share)
