import numpy as np
import pytest
import torch

from kgqa.candidate import Candidate
from kgqa.kb.triples import Fact
from kgqa.model import stepper
from kgqa.model.seq2seq import scratch_model
from kgqa.pipeline import KGQA, DecodeSettings
from kgqa.model.likelihood import token_log_probs
from kgqa.rank.fitted import Fitted
from kgqa.rank.features import EVIDENCE, FEATURE_NAMES, candidate_features
from kgqa.rank.naming import Naming
from kgqa.rank.storage import read_fitted, write_fitted
from kgqa.rank.reranker import Reranker

from conftest import TINY_SHAPE

@pytest.fixture
def sample(sample_kb):
    _, triples, tokenizer, index = sample_kb
    return triples, tokenizer, index


def test_fit_learns_which_feature_marks_the_gold_candidate(tmp_path):
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(200):
        features = rng.normal(size=(6, len(FEATURE_NAMES)))
        gold = int(rng.integers(6))
        features[gold, FEATURE_NAMES.index("literal")] += 3.0  # gold is the one the question names
        examples.append((features, gold))
    reranker = Reranker.fit(examples)
    assert int(np.argmax(np.abs(reranker.weights))) == FEATURE_NAMES.index("literal")
    hits = sum(int(np.argmax(reranker.scores(f))) == g for f, g in examples)
    assert hits >= 180
    reranker.save(str(tmp_path))
    assert Reranker.load(str(tmp_path)) == reranker
    assert Reranker.load(str(tmp_path / "elsewhere")) is None


def test_token_log_probs_agree_with_the_model_loss(sample):
    _, tokenizer, index = sample
    model = scratch_model(tokenizer, TINY_SHAPE, 0).eval()
    question = "马磊静的配偶是谁？"
    groups = [group for sid in index.names.mentions(question) for group, _, _ in index.keys(sid)][:5]
    targets = [tokenizer.encode_target(a.surface, a.predicate, a.disambiguation) for a in map(index.fact, groups)]
    found = token_log_probs(model, tokenizer, [question], [targets], 128)[0]
    for target, log_probs in zip(targets, found):
        total, length = log_probs.sum(), len(log_probs)
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
    model = scratch_model(tokenizer, TINY_SHAPE, 1).eval()
    weights = [0.0] * len(FEATURE_NAMES)
    weights[FEATURE_NAMES.index("named_per_character")] = 1.0
    reranker = Reranker([0.0] * len(FEATURE_NAMES), [1.0] * len(FEATURE_NAMES), weights)
    qa = KGQA(model, tokenizer, index, DecodeSettings(beams=2, top_k=50), Fitted(reranker, naming=Naming({})))
    questions = ["马磊静的配偶是谁？", "完全无关的问题"]
    found = qa.ask(questions)
    assert len(found) == 2
    assert len(found[0]) > 2  # every key of the written subject, not only the 2 beams
    for candidates in found:
        for c in candidates:
            assert (c.surface, c.predicate, c.disambiguation, c.obj) in kb_keys
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert found[0][0].predicate == "配偶"  # covered whole by the question: ranked first


def test_a_batch_is_encoded_once_for_the_beam_and_the_likelihoods_and_keeps_top_k(sample, monkeypatch):
    _, tokenizer, index = sample
    model = scratch_model(tokenizer, TINY_SHAPE, 1).eval()
    reranker = Reranker([0.0] * len(FEATURE_NAMES), [1.0] * len(FEATURE_NAMES), [0.1] * len(FEATURE_NAMES))
    questions = ["马磊静的配偶是谁？", "高军英是在哪里出生的？", "完全无关的问题"]
    # int8 (the default on a CPU) too: each row's activations are quantised by their own scale
    qa = KGQA(model, tokenizer, index, DecodeSettings(beams=2, top_k=3), Fitted(reranker, naming=Naming({})))
    alone = [qa.ask([q])[0] for q in questions]
    encoded = []
    init = stepper.Encoded.__init__
    monkeypatch.setattr(stepper.Encoded, "__init__", lambda self, *args: encoded.append(1) or init(self, *args))
    together = qa.ask(questions)
    assert len(encoded) == 1
    assert all(len(found) <= 3 for found in together)
    assert max(len(found) for found in together) == 3
    assert [[c.key for c in found] for found in together] == [[c.key for c in found] for found in alone]
    assert [c.score for found in together for c in found] == pytest.approx([c.score for found in alone for c in found],
                                                                          abs=1e-4)


def _features(question, keys, facts, likelihoods, beam, prominence, kinds, named, channel, trained=None):
    """`candidate_features` with each evidence column given in EVIDENCE's order (no predicate
    trained on, unless `trained` says)."""
    trained = np.zeros(len(keys)) if trained is None else np.asarray(trained, dtype=float)
    columns = dict(zip(EVIDENCE, (likelihoods, np.array(prominence).reshape(-1, 3), kinds, named, channel, trained)))
    return candidate_features(question, keys, facts, beam, columns)


def test_object_features_tell_a_number_asked_for_from_a_name_already_given():
    question = "刘晓华多少岁了？"
    answers = [Fact("刘晓华", "年龄", "", ["45"]), Fact("刘晓华", "姓名", "", ["刘晓华"]),
               Fact("刘晓华", "职业", "", ["教授"])]
    rows = _features(question, [0, 1, 2], answers, np.zeros((3, 4)), [], [(0, 1, 1)] * 3, np.zeros(3),
                              np.zeros((3, 2)), np.zeros(3))
    column = {name: rows[:, i].tolist() for i, name in enumerate(FEATURE_NAMES)}
    assert column["number_asked"] == [1.0, 0.0, 0.0]
    assert column["number"] == [1.0, 0.0, 0.0]
    assert column["object_in_question"] == [0.0, 1.0, 0.0]
    assert column["object_covered"] == [0.0, 1.0, 0.0]
    asked_name = _features("刘晓华的职业是什么？", [0], answers[:1], np.zeros((1, 4)), [], [(0, 1, 1)],
                                    np.zeros(1), np.zeros((1, 2)), np.zeros(1))
    assert asked_name[0, FEATURE_NAMES.index("number_asked")] == 0.0  # a digit the question does not ask for


def test_an_object_repeating_its_subjects_name_is_told_from_one_borrowed_from_another_entity():
    answers = [Fact("唐平", "现任", "广东工业大学自动化学院教授", ["广东工业大学自动化学院教授"]),
               Fact("唐平", "现名", "广东工业大学自动化学院教授", ["深圳华强方特"]),
               Fact("滕州二中", "校址", "", ["滕州市善南路266号"]), Fact("滕州二中", "地址", "", [""])]
    rows = _features("唐平现在职位是什么？", [0, 1, 2, 3], answers, np.zeros((4, 4)), [], [(0, 1, 1)] * 4,
                              np.zeros(4), np.zeros((4, 2)), np.zeros(4))
    column = dict(zip(FEATURE_NAMES, rows.T.tolist()))
    assert column["object_in_subject"] == pytest.approx([1.0, 0.0, 2 / 10, 0.0])  # 滕州 of 10 characters; "": none
    assert column["subject_in_object"] == pytest.approx([13 / 15, 0.0, 2 / 4, 0.0])  # of 唐平 and its disambiguation


def test_feature_rows_are_in_the_order_of_their_names():
    answers = [Fact("刘晓华", "主讲课程", "广东工业大学教授", ["《固体物理》"]), Fact("刘晓", "别名", "", ["小刘"])]
    likelihoods = np.array([[-2.0, 4.0, -3.0, 6.0], [-9.0, 3.0, -1.0, 2.0]])  # the key's, then its object's
    rows = _features("刘晓华主要讲什么课程？", [7, 8], answers, likelihoods, [], [(0, 5, 20), (1, 9, 3)],
                              np.array([1.0, -3.0]), np.array([[2.0, 4.0], [0.0, 4.0]]), np.array([1.5, -2.5]))
    assert rows.shape == (2, len(FEATURE_NAMES))
    column = dict(zip(FEATURE_NAMES, rows.T.tolist()))
    assert column["log_likelihood"] == [-2.0, -9.0] and column["mean_log_likelihood"] == [-0.5, -3.0]
    assert column["object_log_likelihood"] == [-3.0, -1.0] and column["mean_object_log_likelihood"] == [-0.5, -0.5]
    assert column["named_per_character"] == [0.5, 0.0] and column["predicate_chars"] == [4.0, 2.0]
    assert column["named"] == [2.0, 0.0] and column["named_share"] == [0.5, 0.0] and column["best_named"] == [1.0, 0.0]
    assert column["mention_chars"] == [3.0, 2.0] and column["longest_mention"] == [1.0, 0.0]
    assert column["has_disambiguation"] == [1.0, 0.0]
    assert column["kind_fit"] == [1.0, -3.0] and column["kind_share"] == [1.0, 1.0]  # each its subject's only one
    assert column["channel_gain"] == [1.5, -2.5]
    assert column["predicate_trained"] == [0.0, 0.0] and column["trained_mean_log_likelihood"] == [0.0, 0.0]


def test_a_predicate_trained_on_is_read_apart_with_the_models_likelihood_and_the_beams_first_place():
    answers = [Fact("刘晓华", "主讲课程", "", ["《固体物理》"]), Fact("刘晓华", "职业", "", ["教授"])]
    beam = [Candidate("刘晓华", "职业", "", "教授", score=-9.0, key=8)]
    likelihoods = np.array([[-2.0, 4.0, 0.0, 0.0], [-9.0, 3.0, 0.0, 0.0]])
    rows = _features("刘晓华主要讲什么课程？", [7, 8], answers, likelihoods, beam, [(0, 5, 20), (0, 9, 20)],
                     np.zeros(2), np.zeros((2, 2)), np.zeros(2), trained=[0.0, 1.0])
    column = dict(zip(FEATURE_NAMES, rows.T.tolist()))
    assert column["predicate_trained"] == [0.0, 1.0]
    assert column["trained_log_likelihood"] == [0.0, -9.0] and column["trained_mean_log_likelihood"] == [0.0, -3.0]
    assert column["trained_beam_first"] == [0.0, 1.0] and column["beam_first"] == [0.0, 1.0]


def test_a_subjects_length_is_its_spelling_keys():
    # BLING BLING and blingbling name the same thing spelt two ways: neither is the longer mention
    answers = [Fact("BLING BLING", "启用时间", "", ["968年"]), Fact("blingbling", "创立于", "甜品品牌", ["2011年"]),
               Fact("bling", "别名", "", ["闪"])]
    rows = _features("BLINGBLING是什么时候建立的？", [1, 2, 3], answers, np.zeros((3, 4)), [],
                              [(0, 5, 20), (1, 9, 3), (2, 1, 1)], np.zeros(3), np.zeros((3, 2)), np.zeros(3))
    column = dict(zip(FEATURE_NAMES, rows.T.tolist()))
    assert column["mention_chars"] == [10.0, 10.0, 5.0] and column["longest_mention"] == [1.0, 1.0, 0.0]


def test_a_predicate_is_weighed_by_how_common_it_is_and_its_kind_fit_among_its_subjects_others():
    answers = [Fact("刘晓华", p, "", ["x"]) for p in ("主讲课程", "讲授课程", "职业")] + [Fact("刘晓", "别名", "", ["y"])]
    prominence = [(0, 10, 3), (0, 300, 3), (0, 300, 3), (1, 2, 1)]  # (subject entity, KB keys with the
    # predicate, KB keys of the subject)
    kinds = np.array([2.0, 0.0, 0.0, 5.0])  # how well each fits what the question asks for
    rows = _features("刘晓华讲什么课？", [0, 1, 2, 3], answers, np.zeros((4, 4)), [], prominence, kinds,
                              np.zeros((4, 2)), np.zeros(4))
    column = dict(zip(FEATURE_NAMES, rows.T.tolist()))
    e = np.exp(2.0)
    assert column["kind_share"] == pytest.approx([e / (e + 2), 1 / (e + 2), 1 / (e + 2), 1.0])  # within a subject
    assert column["predicate_prominence"] == pytest.approx(np.log1p([10, 300, 300, 2]).tolist())
    assert column["commoner_siblings"] == [1.0, 0.0, 0.0, 0.0]  # ranked within its own subject only
    assert column["commonest_of_subject"] == [0.0, 1.0, 1.0, 1.0]
    assert column["subject_prominence"] == pytest.approx(np.log1p([3, 3, 3, 1]).tolist())


def test_saved_weights_are_paired_with_features_by_name_not_position(tmp_path):
    n = len(FEATURE_NAMES)
    reranker = Reranker([0.0] * n, [1.0] * n, [float(i) for i in range(n)])
    reranker.save(str(tmp_path))
    fields = ("features", "mean", "std", "weights")
    saved = read_fitted(str(tmp_path), "reranker", "reranker", fields)
    # the same reranker, its features listed the other way round
    write_fitted(str(tmp_path), "reranker", {field: saved[field][::-1] for field in fields})
    assert Reranker.load(str(tmp_path)).weights == reranker.weights
    saved["features"][0] = "a feature this kgqa does not compute"
    write_fitted(str(tmp_path), "reranker", saved)
    assert Reranker.load(str(tmp_path)) is None


def test_candidate_keys_lead_with_the_beam_then_the_best_covered_and_stop_at_the_limit(sample):
    from kgqa.candidate import Candidate
    from kgqa.rank.candidate_keys import candidate_keys
    from kgqa.text import common_subsequence

    _, _, index = sample
    question = "马磊静的配偶是谁？"
    mentions = index.names.mentions(question)
    keys = [key for key, _, _ in index.keys(mentions[0])]
    beam = [Candidate.from_fact(index.fact(keys[-1]), keys[-1], -1.0), Candidate.from_fact(index.fact(keys[0]), keys[0], -2.0)]
    found = candidate_keys(index, question, beam, mentions)
    assert found[:2] == [keys[-1], keys[0]]  # the beam's keys first, in the beam's order
    covers = [common_subsequence(question, index.fact(key).predicate) for key in found[2:]]
    assert covers == sorted(covers, reverse=True)  # then the others, best covered first
    assert len(set(found)) == len(found)
    assert candidate_keys(index, question, beam, mentions, limit=3) == found[:3]
    assert candidate_keys(index, question, [], mentions) == []
