"""The predicates the model was trained on, kept where the reranker's fit also saw questions held
out of them (`TrainConfig.holdout_questions`).

Why: the reranker is fitted on held-out questions. Where those are only the questions of held-out
predicates (as dev's predicates are unseen), a predicate the model trained on is never a right
answer among them, and the fit learns to overrule the beam wherever it writes one: a person asking
about such a predicate gets another. Questions held out of the kept predicates show the fit the
other case, and with "this candidate's predicate was trained on" among the features (and the
model's likelihood and the beam's first place read apart for such a predicate), it learns where the
beam is to be trusted. A fit that saw no such questions keeps none: the features are 0 and weigh
nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kgqa.data import Pairs
from kgqa.kb.triples import Fact
from kgqa.rank.storage import read_fitted, write_fitted


@dataclass
class TrainedPredicates:
    """The gold predicates of the questions the model trained on."""

    predicates: frozenset[str]

    def flags(self, facts: list[Fact]) -> np.ndarray:
        """1 for each fact whose predicate the model trained on, else 0."""
        return np.array([float(fact.predicate in self.predicates) for fact in facts])

    def save(self, checkpoint: str) -> None:
        write_fitted(checkpoint, "trained_predicates", {"predicates": np.array(sorted(self.predicates), dtype=str)})

    @classmethod
    def load(cls, checkpoint: str) -> TrainedPredicates | None:
        """The checkpoint's trained predicates; None where its fit kept none."""
        saved = read_fitted(checkpoint, "trained_predicates", "trained predicates", ("predicates",))
        return None if saved is None else cls(frozenset(str(p) for p in saved["predicates"]))


def fit_trained_predicates(pairs: Pairs) -> TrainedPredicates:
    """The gold predicates of (question, gold target) pairs (the model's training questions)."""
    return TrainedPredicates(frozenset(gold.predicate for _, gold in pairs))
