"""KB-generated training questions: each names a real KB key's subject and predicate, its target
carries the key's first object, and the draw is seeded."""
from kgqa.kbquestions import TEMPLATES, kb_questions


def test_kb_questions_name_a_real_key_and_are_seeded(sample_kb):
    _, triples, _, index = sample_kb
    first_objects: dict[tuple[str, str, str], str] = {}
    for t in triples:
        first_objects.setdefault((t.surface, t.predicate, t.disambiguation), t.obj)
    pairs = kb_questions(index, 50, seed=3)
    assert len(pairs) == 50
    for question, (surface, predicate, disambiguation, obj) in pairs:
        assert first_objects[surface, predicate, disambiguation] == obj  # the key's answer, as KgCLUE's rule gives it
        assert any(question == template.format(s=surface, p=predicate) for template in TEMPLATES)
    assert kb_questions(index, 50, seed=3) == pairs
    assert kb_questions(index, 50, seed=4) != pairs
    assert len({target for _, target in pairs}) > 10  # drawn across the KB, not one key again and again
    assert kb_questions(index, 0, seed=3) == []
