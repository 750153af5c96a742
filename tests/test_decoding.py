import pytest
import torch

from kgqa.decode.generate import constrained_generate
from kgqa.settings import DecodeSettings
from kgqa.kb.build import ensure_index
from kgqa.model.seq2seq import scratch_model
from conftest import TINY_SHAPE, fact_of


def test_a_target_is_its_three_parts_between_separators_and_text_cannot_forge_one(sample_kb):
    _, _, tokenizer, _ = sample_kb
    ids = tokenizer.encode_target("刘晓华", "主讲课程", "广东工业大学教授")
    assert ids == (tokenizer.target_prefix + tokenizer.encode("刘晓华") + [tokenizer.sep_id] + tokenizer.encode("主讲课程")
                   + [tokenizer.sep_id] + tokenizer.encode("广东工业大学教授") + [tokenizer.eos_id])
    assert tokenizer.encode("a[SEP]b").count(tokenizer.sep_id) == 0  # text can't forge a separator


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("restrict", [True, False])
def test_an_untrained_model_only_yields_kb_triples(sample_kb, seed, restrict):
    _, triples, tokenizer, index = sample_kb
    kb_keys = {(t.surface, t.predicate, t.disambiguation, t.obj) for t in triples}
    model = scratch_model(tokenizer, TINY_SHAPE, seed).eval()
    questions = ["高军英是在哪里出生的？", "完全无关的问题", "马磊静的配偶是谁？", "？"]
    plain = DecodeSettings(beams=4, top_k=4, restrict_mentions=restrict, lookahead=0.0, mention_lookahead=0.0)
    results = constrained_generate(model, tokenizer, index, questions, plain)
    assert len(results) == len(questions)
    for question, found in zip(questions, results):
        sids = index.names.mentions(question) if restrict else []
        reachable = sum(1 for sid in sids for _ in index.keys(sid)) if sids else index.key_count
        assert len(found) == min(4, reachable), "a finished beam was dropped"  # four distinct KB keys back
        assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
        for c in found:
            assert (c.surface, c.predicate, c.disambiguation, c.obj) in kb_keys
    if restrict:
        assert all(c.surface == "高军英" for c in results[0])


def test_greedy_decoding_is_constrained_too(sample_kb):
    _, triples, tokenizer, index = sample_kb
    model = scratch_model(tokenizer, TINY_SHAPE, 3).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 5)  # wild weights: the constraint must still hold
    (found,) = constrained_generate(model, tokenizer, index, ["马磊静的出生日期是？"], DecodeSettings(beams=1))
    assert fact_of(index, found[0].surface, found[0].predicate, found[0].disambiguation) is not None


def test_lookahead_steers_an_untrained_model_to_the_predicate_the_question_names(sample_kb):
    _, triples, tokenizer, index = sample_kb
    model = scratch_model(tokenizer, TINY_SHAPE, 0, copy=False).eval()  # no copy path: knows nothing of the question
    asked = [(t.surface, t.predicate) for t in triples if t.surface == triples[0].surface]
    questions = [f"{surface}的{predicate}是什么？" for surface, predicate in asked]
    results = constrained_generate(model, tokenizer, index, questions,
                                   DecodeSettings(lookahead=50.0, mention_lookahead=0.0))
    assert [found[0].predicate for found in results] == [predicate for _, predicate in asked]
    plain = constrained_generate(model, tokenizer, index, questions, DecodeSettings(lookahead=0.0, mention_lookahead=0.0))
    assert [found[0].predicate for found in plain] != [predicate for _, predicate in asked]


def test_mention_lookahead_steers_an_untrained_model_to_the_longest_mention(tmp_path):
    from kgqa.model.tokenizer import SentencePieceTokenizer
    from conftest import write

    kb = write(tmp_path / "kb.tsv", "主要\t拼音\tzhu yao\n刘晓华\t主讲课程\t《固体物理》\n刘晓\t别名\t小刘\n什么\t拼音\tshen me\n")
    tokenizer = SentencePieceTokenizer.train(["刘晓华主要讲什么课啊？拼音主讲课程别名"], 100)
    index = ensure_index(kb, tokenizer)
    model = scratch_model(tokenizer, TINY_SHAPE, 0, copy=False).eval()
    questions = ["刘晓华主要讲什么课啊？"]
    (found,) = constrained_generate(model, tokenizer, index, questions, DecodeSettings(lookahead=0.0, mention_lookahead=50.0))
    assert found[0].surface == "刘晓华"
    chosen = {constrained_generate(scratch_model(tokenizer, TINY_SHAPE, seed, copy=False).eval(), tokenizer, index,
                                   questions, DecodeSettings(lookahead=0.0, mention_lookahead=0.0))[0][0].surface
              for seed in range(4)}
    assert chosen != {"刘晓华"}  # without the evidence, untrained models pick other mentions


def test_the_processors_name_a_bad_argument(sample_kb):
    from kgqa.decode.processors import Lookahead, TrieConstraint, TrieWalker

    _, _, tokenizer, index = sample_kb
    walker = TrieWalker(index, tokenizer, [[]])
    with pytest.raises(ValueError, match="`beams`"):
        TrieConstraint(walker, 0)
    with pytest.raises(ValueError, match="`lookahead`"):
        Lookahead(walker, ["问题"], 4, lookahead=-1.0)
    with pytest.raises(ValueError, match="`mention_lookahead`"):
        Lookahead(walker, ["问题"], 4, mention_lookahead=float("nan"))
