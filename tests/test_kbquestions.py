"""KB-generated training questions: each names a real KB key's subject and predicate, and the
draw is seeded."""
from kgqa.kbquestions import TEMPLATES, kb_questions


def test_kb_questions_name_a_real_key_and_are_seeded(sample_kb):
    _, triples, _, index = sample_kb
    keys = {(t.surface, t.predicate, t.disambiguation) for t in triples}
    pairs = kb_questions(index, 50, seed=3)
    assert len(pairs) == 50
    for question, (surface, predicate, disambiguation) in pairs:
        assert (surface, predicate, disambiguation) in keys
        assert any(question == template.format(s=surface, p=predicate) for template in TEMPLATES)
    assert kb_questions(index, 50, seed=3) == pairs
    assert kb_questions(index, 50, seed=4) != pairs
    assert len({target for _, target in pairs}) > 10  # drawn across the KB, not one key again and again
    assert kb_questions(index, 0, seed=3) == []
