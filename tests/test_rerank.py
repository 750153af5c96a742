import numpy as np
import pytest
import torch

from kgqa.index import Answer, ensure_index
from kgqa.kb import read_kb
from kgqa.model import ScratchShape, scratch_model
from kgqa.pipeline import KGQA, DecodeSettings
from kgqa.rerank import FEATURES, Reranker, candidate_features, log_likelihoods
from kgqa.tokenizer import SentencePieceTokenizer

from conftest import SAMPLE

TINY = ScratchShape(d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    kb = f"{SAMPLE}/kb.tsv"
    triples = list(read_kb(kb))
    tokenizer = SentencePieceTokenizer.train((t.surface + t.predicate + t.disambiguation for t in triples), 400)
    index = ensure_index(kb, tokenizer, str(tmp_path_factory.mktemp("index")))
    return triples, tokenizer, index


def test_fit_learns_which_feature_marks_the_gold_candidate(tmp_path):
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(200):
        features = rng.normal(size=(6, len(FEATURES)))
        gold = int(rng.integers(6))
        features[gold, FEATURES.index("literal")] += 3.0  # gold is the one the question names
        examples.append((features, gold))
    reranker = Reranker.fit(examples)
    assert int(np.argmax(np.abs(reranker.weights))) == FEATURES.index("literal")
    hits = sum(int(np.argmax(reranker.scores(f))) == g for f, g in examples)
    assert hits >= 180
    reranker.save(str(tmp_path))
    assert Reranker.load(str(tmp_path)) == reranker
    assert Reranker.load(str(tmp_path / "elsewhere")) is None


def test_log_likelihoods_agree_with_the_model_loss(sample):
    _, tokenizer, index = sample
    model = scratch_model(tokenizer, TINY, 0).eval()
    question = "马磊静的配偶是谁？"
    groups = [group for sid in index.mentions(question) for group, _, _ in index.groups(sid)][:5]
    targets = [tokenizer.encode_target(a.surface, a.predicate, a.disambiguation) for a in map(index.answer, groups)]
    found = log_likelihoods(model, tokenizer, [question], [targets])[0]
    for target, (total, length) in zip(targets, found):
        labels = torch.tensor([target])
        source = torch.tensor([tokenizer.encode_question(question)])
        with torch.no_grad():
            logits = model(input_ids=source, labels=labels).logits  # CopyT5 returns log-probabilities
        loss = torch.nn.functional.cross_entropy(logits[0], labels[0]).item()
        assert length == labels.shape[1]
        assert total / length == pytest.approx(-loss, abs=1e-4)


def test_reranked_answers_are_kb_keys_beyond_the_beam(sample):
    triples, tokenizer, index = sample
    kb_keys = {(t.surface, t.predicate, t.disambiguation, t.obj) for t in triples}
    model = scratch_model(tokenizer, TINY, 1).eval()
    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("predicate_covered")] = 1.0
    reranker = Reranker([0.0] * len(FEATURES), [1.0] * len(FEATURES), weights)
    qa = KGQA(model, tokenizer, index, DecodeSettings(beams=2, top_k=50), reranker)
    questions = ["马磊静的配偶是谁？", "完全无关的问题"]
    found = qa.answer(questions)
    assert len(found) == 2
    assert len(found[0]) > 2  # every key of the written subject, not only the 2 beams
    for candidates in found:
        for c in candidates:
            assert (c.surface, c.predicate, c.disambiguation, c.obj) in kb_keys
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert found[0][0].predicate == "配偶"  # covered whole by the question: ranked first


def test_object_features_tell_a_number_asked_for_from_a_name_already_given():
    question = "刘晓华多少岁了？"
    answers = [Answer("刘晓华", "年龄", "", ["45"]), Answer("刘晓华", "姓名", "", ["刘晓华"]),
               Answer("刘晓华", "职业", "", ["教授"])]
    rows = candidate_features(question, [0, 1, 2], answers, np.zeros((3, 2)), [])
    column = {name: rows[:, i].tolist() for i, name in enumerate(FEATURES)}
    assert column["number_asked"] == [1.0, 0.0, 0.0]
    assert column["number"] == [1.0, 0.0, 0.0]
    assert column["object_in_question"] == [0.0, 1.0, 0.0]
    assert column["object_covered"] == [0.0, 1.0, 0.0]
    asked_name = candidate_features("刘晓华的职业是什么？", [0], answers[:1], np.zeros((1, 2)), [])
    assert asked_name[0, FEATURES.index("number_asked")] == 0.0  # a digit the question does not ask for
