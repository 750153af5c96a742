"""Which of a question's characters name its predicate, learned from train's questions.

How much of the question a predicate covers counts every shared character alike, so 在线播放平台
covers 「在哪里？」 by its 在 as much as a predicate the question names. A character's *naming
weight* is the share of train's questions holding it (their subject's mention taken out) whose
gold predicate holds it too: 在, 的 and 是 name a predicate rarely, 址, 距 and 曲 often. The weights
are per character, not per predicate, so they carry over to dev's and test's predicates, which
training never shows; the reranker reads the weighted cover as features (`features.py`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from kgqa.data import Pairs
from kgqa.rank.storage import read_fitted, unreadable, write_fitted
from kgqa.kb.triples import Fact
from kgqa.text import without_mention

PRIOR, PRIOR_QUESTIONS = 0.3, 1.0  # a character's weight before any question: PRIOR, worth PRIOR_QUESTIONS


@dataclass
class Naming:
    """Per character: (train questions whose gold predicate holds it too, train questions holding it)."""

    counts: dict[str, tuple[int, int]]

    def weight(self, character: str) -> float:
        named, seen = self.counts.get(character, (0, 0))
        return (named + PRIOR * PRIOR_QUESTIONS) / (seen + PRIOR_QUESTIONS)

    def scores(self, question: str, facts: list[Fact]) -> np.ndarray:
        """One row per fact: (the naming weight of the characters its predicate shares with the
        question without the fact's mention, the naming weight of all that question's characters)."""
        rows = np.zeros((len(facts), 2))
        weights: dict[str, dict[str, float]] = {}  # per mention: each remaining character's weight
        for k, fact in enumerate(facts):
            if fact.surface not in weights:
                # in the question's order, not a set's: a float sum's order, and so its last bit,
                # would otherwise change with the process's string hashing
                weights[fact.surface] = {c: self.weight(c) for c in dict.fromkeys(without_mention(question, fact.surface))}
            rest = weights[fact.surface]
            rows[k] = (sum(rest[c] for c in dict.fromkeys(fact.predicate) if c in rest), sum(rest.values()))
        return rows

    def save(self, checkpoint: str) -> None:
        characters = sorted(self.counts)
        write_fitted(checkpoint, "naming", {"characters": np.array(characters, dtype=str),
                                            "named": [self.counts[c][0] for c in characters],
                                            "seen": [self.counts[c][1] for c in characters]})

    @classmethod
    def load(cls, checkpoint: str) -> Naming | None:
        """The checkpoint's naming weights; None where it has none (fitted by an older kgqa)."""
        saved = read_fitted(checkpoint, "naming", "naming weights", ("characters", "named", "seen"))
        if saved is None:
            return None
        characters, named, seen = saved["characters"], saved["named"], saved["seen"]
        if not (characters.shape == named.shape == seen.shape and characters.ndim == 1):
            raise unreadable(checkpoint, "naming", "naming weights", "characters, named and seen differ in shape")
        return cls({str(c): (int(n), int(k)) for c, n, k in zip(characters, named, seen)})


def fit_naming(pairs: Pairs) -> Naming:
    """Naming weights counted over (question, gold target) pairs (train's, `data.training_pairs`)."""
    named: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for question, gold in pairs:
        for c in set(without_mention(question, gold.surface)):
            seen[c] += 1
            named[c] += c in gold.predicate
    return Naming({c: (named[c], seen[c]) for c in sorted(seen)})
