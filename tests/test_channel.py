"""The noisy channel: a question's wording is explained better by its own predicate and object than
by its subject's other facts, the gain is the same however questions are batched, and it is saved,
loaded and refused as the other fitted models are."""
import os

import numpy as np
import pytest

from kgqa.data import read_questions, training_pairs
from kgqa.errors import KgqaError
from kgqa.kb.triples import Fact, read_kb
from kgqa.rank.channel import Channel, fit_channel
from conftest import SAMPLE

EPOCHS = 30


@pytest.fixture(scope="module")
def trained():
    """The channel trained on the sample's train questions; their facts by subject."""
    pairs = training_pairs(read_questions(os.path.join(SAMPLE, "train.json"), need_answers=True))
    facts: dict[str, list] = {}
    for triple in read_kb(os.path.join(SAMPLE, "kb.tsv")):
        facts.setdefault(triple.surface, []).append(triple)
    return fit_channel(pairs, EPOCHS, seed=0), pairs, facts


def _facts(triples) -> list[Fact]:
    return [Fact(t.surface, t.predicate, t.disambiguation, [t.obj]) for t in triples]


def test_a_question_is_explained_best_by_its_own_predicate(trained):
    channel, pairs, facts = trained
    pairs = pairs[:120]
    rows = [_facts(facts[gold.surface]) for _, gold in pairs]
    gains = channel.gains([question for question, _ in pairs], rows)
    best = [row[int(np.argmax(gain))].predicate == gold.predicate for row, gain, (_, gold) in zip(rows, gains, pairs)]
    others = {len({f.predicate for f in row}) for row in rows}
    assert min(others) >= 2  # each question has rivals to beat
    assert np.mean(best) >= 0.8


def test_gains_do_not_depend_on_the_batch(trained):
    channel, pairs, facts = trained
    questions = [question for question, _ in pairs[:6]]
    rows = [_facts(facts[gold.surface]) for _, gold in pairs[:6]]
    together = channel.gains(questions, rows)
    alone = [channel.gains([q], [row])[0] for q, row in zip(questions, rows)]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert channel.gains(["谁？"], [[]])[0].shape == (0,)


def test_saved_and_loaded_it_gives_the_same_gains_and_a_damaged_file_is_refused(trained, tmp_path):
    channel, pairs, facts = trained
    assert Channel.load(str(tmp_path)) is None
    channel.save(str(tmp_path))
    loaded = Channel.load(str(tmp_path))
    question, gold = pairs[0]
    row = _facts(facts[gold.surface])
    np.testing.assert_allclose(loaded.gains([question], [row])[0], channel.gains([question], [row])[0], atol=1e-5)
    with open(tmp_path / "channel.npz", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 8)
    with pytest.raises(KgqaError, match="channel.npz"):
        Channel.load(str(tmp_path))


def test_no_epochs_no_channel():
    assert fit_channel([], 3, seed=0) is None
    pairs = training_pairs(read_questions(os.path.join(SAMPLE, "train.json"), need_answers=True))
    assert fit_channel(pairs, 0, seed=0) is None
