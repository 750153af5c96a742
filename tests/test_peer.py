from kgqa.kb.build import ensure_index
from kgqa.peer import peer_answer
from kgqa.model.tokenizer import SentencePieceTokenizer

from conftest import write


def test_peer_takes_the_longest_mention_and_the_most_covered_predicate(tmp_path):
    kb = write(tmp_path / "kb.tsv", "刘晓\t主讲课程\t错\n刘晓华（教授）\t出生地\t北京\n刘晓华（教授）\t主讲课程\t《固体物理》\n")
    index = ensure_index(kb, SentencePieceTokenizer.train(["刘晓华主讲课程出生地"], 100))
    found = peer_answer(index, "刘晓华主要讲什么课啊？")
    assert found.answer() == "刘晓华（教授） ||| 主讲课程 ||| 《固体物理》"
    assert peer_answer(index, "无关") is None
