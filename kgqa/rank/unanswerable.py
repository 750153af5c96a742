"""Held-out questions the KB cannot answer, as the confidence calibrator learns from them.

A question about an entity or a fact the KB lacks is not a question whose right candidate is merely
missing from the list: decoded over a KB without it, the beam writes something else, a shorter KB
name inside the one typed (灭火器 of 酸碱灭火器), a common word that is also a KB name (简介), a
homonym, another predicate of the subject. The calibrator is to learn what that looks like, so the
held-out questions are decoded once more over a copy of the index (`kb.update.updated_copy`: it
shares the index's files, and costs its change) without, for half their gold subjects (drawn by
the seed), every triple of the entity, and for the others, every triple of their gold key. The
questions whose entity is gone are also asked as typed with a homophone in its name (a pinyin
input method's slip, `spelling.Homophones`): a name the KB lacks, typed like one it holds.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Callable

from kgqa.data import Question
from kgqa.kb.index import KBIndex
from kgqa.kb.triples import split_subject
from kgqa.kb.update import updated_copy
from kgqa.rank.features import CandidateSet
from kgqa.spelling import Homophones

GONE_ENTITIES = 0.5  # the share of the held-out gold subjects removed whole; the others lose their gold key


def unanswerable_views(index: KBIndex, held: list[Question], seed: int,
                       candidate_sets: Callable[[KBIndex, list[str]], list[CandidateSet]]) -> list[list[CandidateSet]]:
    """Per held-out question, its candidate sets over a copy of `index` without its gold entity or
    its gold key (see the module): as written, and typed with a homophone where its entity is gone
    and its name has a character to mistype; `candidate_sets(index, questions)` reads them."""
    golds = [q.gold() for q in held]
    rng = random.Random(seed)
    subjects = sorted({subject for subject, _, _ in golds})
    gone = set(rng.sample(subjects, round(len(subjects) * GONE_ENTITIES)))
    homophones = Homophones([q.question for q in held])
    typed = {i: typo for i, (q, (subject, _, _)) in enumerate(zip(held, golds))
             if subject in gone and (typo := homophones.typo(q.question, split_subject(subject)[0], rng))}
    # beside the index: a link cannot cross filesystems, and the copy is mostly links
    with tempfile.TemporaryDirectory(dir=os.path.dirname(index.directory), prefix=".kgqa-unanswerable-") as scratch:
        changes = os.path.join(scratch, "removed.tsv")
        with open(changes, "w", encoding="utf-8") as out:
            for subject, predicate, obj in _removed(index, golds, gone):
                out.write(f"-\t{subject}\t{predicate}\t{obj}\n")
        copy = updated_copy(index, changes, os.path.join(scratch, "index"))
        read = candidate_sets(copy, [q.question for q in held] + list(typed.values()))
    as_typed = dict(zip(typed, read[len(held):]))
    return [[read[i]] + ([as_typed[i]] if i in as_typed else []) for i in range(len(held))]


def _removed(index: KBIndex, golds: list[tuple[str, str, str]], gone: set[str]) -> set[tuple[str, str, str]]:
    """The (S with its disambiguation, P, O) triples to remove: every one of a subject in `gone`,
    and each gold key's of the others."""
    removed: set[tuple[str, str, str]] = set()
    for subject, gold_predicate, _ in golds:
        surface, disambiguation = split_subject(subject)
        sid = index.names.surface_id(surface)
        for _, predicate, said, objects in index.subject_triples(sid) if sid is not None else []:
            if said == disambiguation and (subject in gone or predicate == gold_predicate):
                removed.update((subject, predicate, obj) for obj in objects)
    return removed
