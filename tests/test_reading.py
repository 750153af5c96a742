"""A question's words matched to the KB's names however they are typed: the spelling rule
(`kgqa.spelling`), the index's views by spelling key and sound (`kgqa.kb.spellings`), the reading
the model is given (`kgqa.reading`), and the pipeline's choice between it and its near reading."""
import pytest

from conftest import TINY_SHAPE, write
from kgqa.settings import DecodeSettings
from kgqa.kb.build import build_index
from kgqa.kb.index import KBIndex
from kgqa.model.seq2seq import scratch_model
from kgqa import pipeline
from kgqa.pipeline import KGQA
from kgqa.rank.fitted import Fitted
from kgqa.rank.confidence import SIGNAL_NAMES, Calibrator
from kgqa.rank.features import FEATURE_NAMES
from kgqa.rank.reranker import Reranker
from kgqa.rank.wording import ORDINARY, Wording
from kgqa.reading import read
from kgqa.spelling import fold, folded, how_spelled, model_text, sound
from kgqa.explanation import explain

# Names written as a KB writes them, each with enough facts to be the KB's main entity of its
# name, beside dictionary-like words with one fact each.
PEOPLE = {"刘晓华": "主讲课程", "三栋屋村": "村域面积", "沙特阿拉伯": "首都", "ISO14001认证": "发证机构",
          "iPhone 4": "屏幕尺寸", "IPHONE4": "产地", "《活着》": "作者", "活着": "拼音", "Adobe Photoshop": "开发商",
          "刘 德华": "出生地", "兰利号航空母舰": "舰长", "达·芬奇的恶魔": "导演", "陈华": "籍贯", "茶具": "产地",
          "利昂": "发色"}
WORDS = ["主要", "什么", "面积", "首都", "认证", "作者", "是几号", "十几号", "球衣", "墨尔本", "墨尔本市", "兰利号", "达·芬奇",
         "晨华", "失查", "哪里", "里昂"]


def _kb(tmp_path, people=PEOPLE, words=WORDS) -> str:
    lines = [f"{name}\t{predicate}\t值{i}\n" for i, (name, predicate) in enumerate(people.items())]
    lines += [f"{name}\t其他{k}\t值\n" for name in people for k in range(6)]  # the KB knows much of them
    lines += [f"{word}\t释义\t一个词\n" for word in words]
    lines += ["墨尔本\t人口\t500万\n", "墨尔本\t国家\t澳大利亚\n"]  # more of 墨尔本 than of 墨尔本市
    return write(tmp_path / "kb.tsv", "".join(lines))


@pytest.fixture
def index(tmp_path, tokenizer):
    directory = str(tmp_path / "index")
    build_index(_kb(tmp_path), tokenizer, directory)
    return KBIndex(directory, tokenizer)


def test_fold_is_one_key_for_width_case_script_spaces_and_marks():
    assert fold("ＩＳＯ１４００１認證") == fold("iso14001认证") == fold("ISO14001认证") == "iso14001认证"
    assert fold("劉曉華") == fold("刘 晓 华") == "刘晓华"
    assert fold("《活着》") == fold("「活着」") == fold("活着")
    assert fold(fold("多纹颌须鮈")) == fold("多纹颌须鮈")  # a fold folds to itself
    assert fold("沙特啊拉伯") != fold("沙特阿拉伯") and sound(fold("沙特啊拉伯")) == sound(fold("沙特阿拉伯"))
    assert len(sound("三栋屋存ab")) == len("三栋屋存ab")  # a character a character


def test_folded_says_where_each_character_came_from():
    text, origin = folded("《活 着》ＡＢ")
    assert text == "活着ab" and origin == [1, 3, 5, 6]


def test_the_model_reads_width_and_script_folded_but_case_and_punctuation_as_typed():
    assert model_text("劉曉華講ＡＢ１？，Abc") == "刘晓华讲AB1？，Abc"


@pytest.mark.parametrize("typed, kb, said", [
    ("劉曉華", "刘晓华", "script"), ("ＩＳＯ１４００１认证", "ISO14001认证", "width"),
    ("iso14001认证", "ISO14001认证", "case"), ("刘 晓 华", "刘晓华", "spacing"), ("活着", "《活着》", "marks"),
    ("iso１４００１認證", "ISO14001认证", "width, case, script"),
    ("三栋屋存", "三栋屋村", "one character (sounds alike)"), ("三栋屋", "三栋屋", "as written"),
    ("兰利号航母", "兰利号航空母舰", "a short form (2 characters left out)"), ("沙特阿伯", "沙特阿拉伯",
                                                                          "a short form (one character left out)")])
def test_how_a_spelling_differs_is_said_in_words(typed, kb, said):
    assert how_spelled(typed, kb) == said


@pytest.mark.parametrize("typed, text", [
    ("劉曉華主要講什麼課啊？", "刘晓华主要讲什么课啊？"),  # traditional characters
    ("刘 晓 华 主要 讲什么课啊？", "刘晓华主要讲什么课啊？"),  # spaces
    ("ｉｓｏ１４００１认证是哪里发的？", "ISO14001认证是哪里发的？"),  # full-width, lower case
    ("ISO14001認證是哪里发的？", "ISO14001认证是哪里发的？"),
    ("adobe photoshop是谁开发的？", "Adobe Photoshop是谁开发的？"),
    ("刘德华出生在哪？", "刘 德华出生在哪？"),  # the KB's name holds a space
    ("三栋屋存的面积是多少？", "三栋屋村的面积是多少？"),  # a homophone typo
    ("沙特啊拉伯的首都是哪？", "沙特阿拉伯的首都是哪？"),
    ("兰利号航母的舰长是谁？", "兰利号航空母舰的舰长是谁？"),  # a short form
    ("沙特阿伯的首都是哪？", "沙特阿拉伯的首都是哪？"),  # a character left out
])
def test_a_name_typed_otherwise_is_read_as_the_kb_spells_it(index, typed, text):
    reading = read(index, typed)
    assert reading.text == text
    assert reading.matches and all(m.surface in text for m in reading.matches)
    assert index.names.surface_id(reading.matches[0].surface) in reading.mentions


def test_a_question_that_spells_its_names_as_the_kb_does_is_read_as_typed(index):
    for question in ["刘晓华主要讲什么课啊？", "《活着》的作者是谁？", "活着的拼音？", "iPhone 4的屏幕尺寸？",
                     "IPHONE4的产地？", "Adobe Photoshop是谁开发的？", "刘 德华出生在哪？"]:
        reading = read(index, question)
        assert (reading.text, reading.matches) == (question, [])


def test_names_one_spelling_key_apart_both_stay_answerable(index):
    # iPhone 4 / IPHONE4 and 《活着》 / 活着 fold alike: each spelt exactly is read as itself, and one
    # typed otherwise is read as the closer, the other kept as a mention
    reading = read(index, "iphone 4的屏幕尺寸？")
    assert reading.text == "iPhone 4的屏幕尺寸？"
    assert {index.names.surface(sid) for sid in reading.mentions} >= {"iPhone 4", "IPHONE4"}
    assert read(index, "IPHONE 4的产地？").text == "iPhone 4的产地？"  # typed in one case: its space decides
    assert read(index, "iPhone4的产地？").text == "iPhone 4的产地？"  # in mixed case: its case too


def test_a_name_typed_in_another_case_is_read_as_the_kb_name_of_the_same_letters_and_spaces(tmp_path, tokenizer):
    # caps lock changes a name's case, not its letters or spaces: BLINGBLING is blingbling, not
    # BLING BLING (one space away, but ten letters in another case)
    directory = str(tmp_path / "index")
    build_index(_kb(tmp_path, {"blingbling（甜品品牌）": "创立于", "BLING BLING": "启用时间"}, ["什么"]), tokenizer, directory)
    index = KBIndex(directory, tokenizer)
    reading = read(index, "你知道BLINGBLING是什么时候建立吗？")
    assert reading.text == "你知道blingbling是什么时候建立吗？"
    assert {index.names.surface(sid) for sid in reading.mentions} >= {"blingbling", "BLING BLING"}
    assert read(index, "bling bling的启用时间？").text == "BLING BLING的启用时间？"


def test_a_sound_alike_is_not_read_into_a_question_that_names_what_the_kb_holds_more_of(index):
    # 是几号 sounds like the word 十几号, 墨尔本是 like 墨尔本市: the KB's names the question spells win
    assert read(index, "墨尔本是几号球衣？").text == "墨尔本是几号球衣？"
    assert read(index, "墨尔本是什么？").matches == []


def test_a_near_name_the_gates_hold_back_is_offered_as_a_near_reading(index):
    # 墨尔本是 sounds like 墨尔本市, but the KB holds more of 墨尔本: as gated, the question stands;
    # a near reading reads the sound-alike, for the pipeline to weigh (test_pipeline_near)
    reading = read(index, "墨尔本是什么？")
    assert reading.text == "墨尔本是什么？" and reading.matches == []
    (near,) = reading.near
    assert near.text == "墨尔本市什么？" and near.near == [] and near.near_name == "墨尔本市"
    assert [str(m) for m in near.matches] == ["the question's 墨尔本是 ≈ the KB's 墨尔本市 (one character (sounds alike))"]
    assert index.names.surface_id("墨尔本市") in near.mentions
    # a two-character name is never read by the gates, only offered (沉华 for 陈华)
    reading = read(index, "沉华的籍贯是哪里？")
    assert reading.text == "沉华的籍贯是哪里？" and [n.text for n in reading.near] == ["陈华的籍贯是哪里？"]
    # nothing near held back: no near reading; a near name read as gated is in both
    assert read(index, "刘晓华主要讲什么课啊？").near == []
    assert read(index, "三栋屋存的村域面积？").near == []


def test_each_near_name_is_a_reading_of_its_own(index):
    # 是查 sounds like the word 失查 and 查具 like 茶具: one reading each would overlap, and of the
    # two-character ones only the name the KB holds most of is offered (ordinary words sound like
    # many short names); of the names a span sounds like, it is read as the one the KB holds most of
    reading = read(index, "哪里是查具的产地？")
    assert [(n.text, n.near_name) for n in reading.near] == [("哪里是茶具的产地？", "茶具")]
    # a two-character span typed as ordinary question wording is no near name, and so leaves the cap
    # to the next: here 是查 (失查), once 查具 counts as wording
    reading = read(index, "哪里是查具的产地？", ordinary=lambda typed: typed == "查具")
    assert [(n.near_name, n.near_kind) for n in reading.near] == [("失查", "short")]
    (near,) = read(index, "沉华的籍贯是哪里？").near
    # not 晨华, a word the KB holds less of
    assert (near.near_typed, near.near_name, near.near_kind) == ("沉华", "陈华", "short")
    # a name the question spells (里昂, a word) that sounds like one the KB holds more of (利昂) is
    # offered as that, after the held-back near names
    reading = read(index, "里昂三栋屋存的发色是什么？")
    assert reading.text == "里昂三栋屋村的发色是什么？" and [n.near_kind for n in reading.near] == ["alike"]
    assert [(n.text, n.near_name) for n in reading.near] == [("利昂三栋屋村的发色是什么？", "利昂")]
    reading = read(index, "里昂的发色是墨尔本是？")
    assert [(n.near_name, n.near_kind) for n in reading.near] == [("墨尔本市", "held"), ("利昂", "alike")]


def test_a_name_cut_short_is_not_read_as_the_longer_one(index):
    assert read(index, "达·芬奇的名字是怎么来的？").matches == []
    assert read(index, "兰利号的舰长是谁？").matches == []


def test_a_latin_name_is_never_cut_out_of_a_word(index):
    reading = read(index, "WHATIPHONE4ISTHAT的产地？")
    assert reading.matches == [] and reading.text == "WHATIPHONE4ISTHAT的产地？"


def test_a_kb_in_traditional_characters_is_read_as_it_spells_its_names(tmp_path, tokenizer):
    directory = str(tmp_path / "index")
    build_index(_kb(tmp_path, {"劉曉華": "主講課程", "沙特阿拉伯": "首都"}, ["主要", "什麼"]), tokenizer, directory)
    index = KBIndex(directory, tokenizer)
    assert read(index, "刘晓华主要讲什么课啊？").text.startswith("劉曉華")
    assert read(index, "劉曉華主要講什麼課啊？").text.startswith("劉曉華")


def test_an_index_built_with_other_spelling_tables_is_rebuilt_in_the_cache(tmp_path, tokenizer, monkeypatch):
    import json
    import os

    from kgqa.errors import KgqaError
    from kgqa.kb.build import ensure_index

    kb = _kb(tmp_path)
    index = ensure_index(kb, tokenizer)
    segment = os.path.join(index.directory, index.manifest.segments[0].name, "segment.json")
    with open(segment, encoding="utf-8") as handle:
        header = json.load(handle)
    with open(segment, "w", encoding="utf-8") as handle:
        json.dump(header | {"spelling": "opencc 0.1, pypinyin 0.1"}, handle)
    with pytest.raises(KgqaError, match="built with other spelling tables .* rebuild this index"):
        KBIndex(index.directory, tokenizer)
    assert read(ensure_index(kb, tokenizer), "劉曉華主要講什麼課啊？").text == "刘晓华主要讲什么课啊？"


class _Sure(KGQA):
    """A pipeline whose best answer for a reading (its subject's surface, its confidence) is given
    per text (the test's model and calibrator); a reading the test leaves out must not be tried."""

    def __init__(self, *args, sure: dict[str, tuple[str, float]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sure = sure

    def _surest(self, candidate_set) -> tuple[str, float]:
        return self.sure[candidate_set.question]


def test_a_near_reading_is_taken_only_where_its_answer_is_about_the_near_name_and_surer_by_the_margin(index, tokenizer):
    model = scratch_model(tokenizer, TINY_SHAPE, 0)
    width = len(FEATURE_NAMES)
    reranker = Reranker([0.0] * width, [1.0] * width, [1.0] + [0.0] * (width - 1))
    calibrator = Calibrator([0.0] * len(SIGNAL_NAMES), [1.0] * len(SIGNAL_NAMES), [0.0] * len(SIGNAL_NAMES), 0.0)

    def chosen(typed: str, sure: dict[str, tuple[str, float]], wording: Wording | None = Wording({}), **settings) -> str:
        qa = _Sure(model, tokenizer, index, DecodeSettings(**settings), Fitted(reranker, calibrator, wording=wording),
                   sure=sure)
        explanation = explain(qa, typed)
        assert [c.subject for c in qa.ask([typed, "刘晓华主要讲什么课啊？"])[0]] == [explanation.chosen.subject]
        return explanation.reading.text

    typed, near = "墨尔本是什么？", "墨尔本市什么？"
    assert chosen(typed, {typed: ("墨尔本", 0.3), near: ("墨尔本市", 0.9)}) == near
    assert chosen(typed, {typed: ("墨尔本", 0.3), near: ("什么", 0.9)}) == typed  # surer, but not about 墨尔本市
    assert chosen(typed, {typed: ("墨尔本", 0.3), near: ("墨尔本市", 0.38)}) == typed  # not by the margin (0.1)
    assert chosen(typed, {typed: ("墨尔本", 0.3), near: ("墨尔本市", 0.38)}, near_margin=0.05) == near
    assert chosen(typed, {typed: ("墨尔本", 0.3)}, near_margin=1.0) == typed  # no room: none tried
    assert chosen(typed, {typed: ("墨尔本", 0.9), near: ("墨尔本市", 0.3)}) == typed
    assert chosen(typed, {typed: ("墨尔本", 0.85)}) == typed  # sure enough as gated: none tried
    # of several near readings the surest; one reading a name the question spells as another that
    # sounds alike only where the gated answer is less sure still
    typed, near, alike = "里昂的发色是墨尔本是？", "里昂的发色是墨尔本市？", "利昂的发色是墨尔本是？"
    assert chosen(typed, {typed: ("里昂", 0.3), near: ("墨尔本市", 0.5), alike: ("利昂", 0.8)}) == alike
    assert chosen(typed, {typed: ("里昂", 0.3), near: ("墨尔本市", 0.8), alike: ("利昂", 0.5)}) == near
    assert chosen(typed, {typed: ("里昂", 0.6), near: ("墨尔本市", 0.5)}) == typed
    # a two-character near name only where what was typed is not ordinary question wording (ordinary
    # words sound like many short names), and never without the checkpoint's wording counts to say
    typed, near = "沉华的籍贯是哪里？", "陈华的籍贯是哪里？"
    assert chosen(typed, {typed: ("沉华", 0.7), near: ("陈华", 0.9)}) == near
    assert chosen(typed, {typed: ("沉华", 0.85)}) == typed
    assert chosen(typed, {typed: ("沉华", 0.5)}, wording=Wording({"沉华": ORDINARY})) == typed
    assert chosen(typed, {typed: ("沉华", 0.5)}, wording=None) == typed


def test_an_answer_from_a_near_reading_is_as_sure_as_the_near_name_is_trusted(index, tokenizer, monkeypatch):
    model = scratch_model(tokenizer, TINY_SHAPE, 0)
    width = len(FEATURE_NAMES)
    reranker = Reranker([0.0] * width, [1.0] * width, [1.0] + [0.0] * (width - 1))
    calibrator = Calibrator([0.0] * len(SIGNAL_NAMES), [1.0] * len(SIGNAL_NAMES), [0.0] * len(SIGNAL_NAMES), 0.0)
    monkeypatch.setattr(pipeline, "NEAR_TRUST", 0.6)
    typed, near = "墨尔本是什么？", "墨尔本市什么？"
    for sure, confidence in [(0.9, 0.5 * 0.6), (0.3, 0.5)]:  # the calibrator says 0.5 of everything
        qa = _Sure(model, tokenizer, index, DecodeSettings(), Fitted(reranker, calibrator),
                   sure={typed: ("墨尔本", 0.3), near: ("墨尔本市", sure)})
        assert explain(qa, typed).chosen.confidence == pytest.approx(confidence)
        assert qa.ask([typed])[0][0].confidence == pytest.approx(confidence)
    without = KGQA(model, tokenizer, index, DecodeSettings(), Fitted(reranker))  # no calibrator to weigh it: as gated
    assert explain(without, typed).reading.text == typed
