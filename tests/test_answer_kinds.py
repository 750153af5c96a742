import json
import random

import numpy as np
import pytest

from kgqa.data import Target, read_questions, training_pairs
from kgqa.errors import KgqaError
from kgqa.kb.build import ensure_index
from kgqa.kb.predicates import PREDICATE_SAMPLE
from kgqa.model.tokenizer import SentencePieceTokenizer
from kgqa.rank.answer_kinds import AnswerKinds, fit_answer_kinds, object_forms

from conftest import fact_of, write

# Four kinds of answer, each held by two predicates: train's questions ask with the first, the
# test's with the second, which training never shows (as dev's predicates are not train's).
KINDS = {
    "distance": (("距离", "里程"), lambda r: f"{r.randint(2, 900)}公里"),
    "address": (("校址", "地址"), lambda r: f"{r.choice('东西南北')}{r.choice('安平和')}路{r.randint(1, 300)}号"),
    "person": (("作者", "创始人"), lambda r: r.choice("张王李赵") + r.choice("明华强伟")),
    "date": (("成立时间", "建成日期"), lambda r: f"{r.randint(1900, 2020)}年{r.randint(1, 12)}月"),
}
ASK = {"distance": "{}有多远？", "address": "{}在哪里？", "person": "谁写了{}？", "date": "{}是什么时候的事？"}
NAMES = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"


def _subject(n: int) -> str:
    return NAMES[n % 20] + NAMES[n // 20] + "园"


def _world(tmp_path):
    """A KB of subjects holding one predicate of each kind (the train or the test set of names)
    and train questions asking for each kind with train's predicates."""
    rng = random.Random(0)
    lines, questions = [], []
    for n in range(120):
        subject = _subject(n)
        side = 0 if n < 90 else 1
        for kind, (predicates, value) in KINDS.items():
            lines.append(f"{subject}\t{predicates[side]}\t{value(rng)}")
        if side == 0:
            kind = rng.choice(sorted(KINDS))
            predicate = KINDS[kind][0][0]
            obj = next(line.split("\t")[2] for line in lines if line.startswith(subject + "\t" + predicate + "\t"))
            questions.append({"id": n, "question": ASK[kind].format(subject),
                              "answer": f"{subject} ||| {predicate} ||| {obj}"})
    kb = write(tmp_path / "kb.tsv", "\n".join(lines) + "\n")
    train = write(tmp_path / "train.json", "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    tokenizer = SentencePieceTokenizer.train(lines, 300)
    return ensure_index(kb, tokenizer, str(tmp_path / "index")), training_pairs(read_questions(train, need_answers=True))


def test_a_predicates_objects_are_a_sample_across_the_whole_kb(tmp_path):
    lines = [f"{chr(0x4e00 + i)}山\t海拔\t{i}米" for i in range(200)] + ["甲山\t别名\t甲峰", "乙山\t别名\t乙峰"]
    kb = write(tmp_path / "kb.tsv", "\n".join(random.Random(1).sample(lines, len(lines))) + "\n")
    index = ensure_index(kb, SentencePieceTokenizer.train(["".join(lines)], 100), str(tmp_path / "index"))
    heights = index.predicates.objects("海拔")
    assert len(heights) == PREDICATE_SAMPLE and len(set(heights)) == PREDICATE_SAMPLE
    assert set(heights) <= {f"{i}米" for i in range(200)}
    # drawn across the KB, not the first subjects in the index's (sorted) order
    assert max(int(h[:-1]) for h in heights) > 2 * PREDICATE_SAMPLE
    assert sorted(index.predicates.objects("别名")) == ["乙峰", "甲峰"]
    assert index.predicates.objects("身高") == []
    again = ensure_index(kb, index.tokenizer, str(tmp_path / "index2"))
    assert again.predicates.objects("海拔") == heights  # seeded: the same sample each build


def test_object_forms_read_numbers_units_and_endings():
    assert {"unit a", "has 0", "length 4"} <= object_forms("3200000ly")
    assert {"last 号", "unit 号", "before 路", "first 黑"} <= object_forms("黑龙江省绥化市北四西路183号")
    assert {"first 《", "last 》"} <= object_forms("《星河》")
    assert "has 0" not in object_forms("张明")


def test_answer_kinds_learned_on_train_predicates_pick_the_right_kind_of_unseen_ones(tmp_path):
    index, questions = _world(tmp_path)
    kinds = fit_answer_kinds(index, questions, seed=0)
    right = 0
    for n in range(90, 120):
        subject = _subject(n)
        answers = [fact_of(index, subject, KINDS[kind][0][1], "") for kind in sorted(KINDS)]
        for asked, kind in enumerate(sorted(KINDS)):
            scores = kinds.scores(index, ASK[kind].format(subject), answers)
            right += int(np.argmax(scores) == asked)
    assert right == 30 * len(KINDS)  # chance: a quarter


def test_answer_kinds_are_saved_and_read_back(tmp_path):
    index, questions = _world(tmp_path)
    kinds = fit_answer_kinds(index, questions, seed=0)
    kinds.save(str(tmp_path))
    again = AnswerKinds.load(str(tmp_path))
    answers = [fact_of(index, _subject(100), KINDS[kind][0][1], "") for kind in sorted(KINDS)]
    question = ASK["distance"].format(_subject(100))
    assert np.allclose(again.scores(index, question, answers), kinds.scores(index, question, answers), atol=1e-6)
    assert AnswerKinds.load(str(tmp_path / "none")) is None
    write(tmp_path / "answer_kinds.npz", b"not a numpy archive")
    with pytest.raises(KgqaError, match="unreadable answer kinds"):
        AnswerKinds.load(str(tmp_path))


def test_no_answer_kinds_without_a_gold_key_in_the_kb(tmp_path):
    index, questions = _world(tmp_path)
    assert fit_answer_kinds(index, [(question, Target("不在园", "距离", "", "")) for question, _ in questions]) is None
