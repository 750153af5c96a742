"""Candidate targets scored as one prefix tree per question: each shared prefix once, the same
log-likelihoods as one padded row per target."""
import numpy as np
import pytest

from kgqa.model import target_tree
from kgqa.model.likelihood import token_log_probs
from kgqa.model.stepper import Stepper
from kgqa.model.target_tree import TargetTree

from test_stepper import QUESTIONS, _model


def test_a_tree_holds_each_prefix_once_and_runs_the_decoder_where_a_target_goes_on():
    tree = TargetTree([[7, 8, 9], [7, 8, 6], [7, 5], [7, 8, 9]])
    assert len(tree.token) == 6  # root, 7, 7 8, 7 8 9, 7 8 6, 7 5
    assert tree.paths[0] == tree.paths[3] and tree.paths[0] == [1, 2, 3]
    assert list(tree.inner) == [0, 1, 2]  # the root, "7", "7 8": the leaves need no decoder step
    tokens, depths, ancestors = tree.inputs(start_id=0)
    assert tokens == [0, 7, 8] and depths == [0, 1, 2]
    assert ancestors.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    edges = np.array([0.0, -1.0, -2.0, -3.0, -4.0, -5.0])
    assert [p.tolist() for p in tree.token_log_probs(edges)] == [[-1, -2, -3], [-1, -2, -4], [-1, -5], [-1, -2, -3]]


@pytest.mark.parametrize("kind", ["copy", "t5", "t5 v1.1", "bart"])
def test_the_tree_gives_each_targets_log_likelihood_as_padded_rows_do(sample_kb, monkeypatch, kind):
    _, _, tokenizer, index = sample_kb
    model = _model(tokenizer, kind)
    targets = []
    for question in QUESTIONS:  # each question's mentions' keys: a subject's predicates share its prefix
        keys = [key for sid in index.names.mentions(question) for key, _, _ in index.keys(sid)][:30] or [0, 1, 2]
        targets.append([tokenizer.encode_target(a.surface, a.predicate, a.disambiguation)
                        for a in map(index.fact, keys)])
    assert sum(len(t) for t in targets) > 20
    monkeypatch.setattr(target_tree, "_HEAD_ROWS", 7)  # the output layer in several slices too
    tree = token_log_probs(model, tokenizer, QUESTIONS, targets, 128, 48)  # small passes: several of them
    for asked in ([[]], [[], targets[1]]):  # a question without candidates scores none, alone or not
        found = token_log_probs(model, tokenizer, QUESTIONS[:len(asked)], asked, 128)
        assert [[len(t) for t in f] for f in found] == [[len(t) for t in keys] for keys in asked]
    monkeypatch.setattr(Stepper, "handles", staticmethod(lambda model: False))
    rows = token_log_probs(model, tokenizer, QUESTIONS, targets, 128)
    for ours, theirs, keys in zip(tree, rows, targets):
        assert [len(t) for t in ours] == [len(t) for t in theirs] == [len(t) for t in keys]
        for a, b in zip(ours, theirs):
            assert np.allclose(a, b, atol=1e-4), np.abs(a - b).max()
