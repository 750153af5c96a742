"""The predicates the model was trained on, and how its training questions asked each, kept where
the reranker's fit also saw questions held out of them (`TrainConfig.holdout_questions`).

Why: the reranker is fitted on held-out questions. Where those are only the questions of held-out
predicates (as dev's predicates are unseen), a predicate the model trained on is never a right
answer among them, and the fit learns to overrule the beam wherever it writes one: a person asking
about such a predicate gets another. Questions held out of the kept predicates show the fit the
other case, and with "this candidate's predicate was trained on" among the features (and the
model's likelihood and the beam's first place read apart for such a predicate), it learns where the
beam is to be trusted. A fit that saw no such questions keeps none: the features are 0 and weigh
nothing.

How the training questions asked a predicate tells the confidence the two cases apart: a question
about a fact the KB lacks falls back on another predicate of its subject, often a trained one, and
is worded unlike the questions that asked it (「北岭是哪个省的」 is not asked as 所在地区's questions
were); a person asking about the trained predicate words it much as they did
(`TrainedPredicates.resemblance`, a signal of the confidence only).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kgqa.data import Pairs
from kgqa.kb.triples import Fact
from kgqa.rank.storage import read_fitted, write_fitted
from kgqa.spelling import fold
from kgqa.text import question_cues, without_mention


def _jaccard(a: set[str], b: set[str]) -> float:
    shared = len(a & b)
    return shared / max(len(a) + len(b) - shared, 1)


@dataclass
class TrainedPredicates:
    """The gold predicates of the questions the model trained on, each with the wording of those
    questions (spelling keys, `spelling.fold`, their subject's mention taken out; none where an
    earlier kgqa fitted them)."""

    wordings: dict[str, tuple[str, ...]]

    @property
    def predicates(self) -> frozenset[str]:
        return frozenset(self.wordings)

    @cached_property
    def _asked(self) -> dict[str, list[set[str]]]:
        """Per trained predicate, the cues of each training question's wording."""
        return {predicate: [question_cues(rest) for rest in rests] for predicate, rests in self.wordings.items()}

    def flags(self, facts: list[Fact]) -> np.ndarray:
        """1 for each fact whose predicate the model trained on, else 0."""
        return np.array([float(fact.predicate in self.wordings) for fact in facts])

    def resemblance(self, question: str, facts: list[Fact]) -> np.ndarray:
        """For each fact of a trained predicate, how much `question` (its mention of the fact's
        subject taken out) is worded as a training question that asked the predicate: the most
        cues (`question_cues`) shared with one of them over the cues of both (Jaccard); 0 for
        other facts."""
        key, asked, out = fold(question), self._asked, np.zeros(len(facts))
        rests: dict[str, set[str]] = {}  # per subject surface: a question's facts share few
        for k, fact in enumerate(facts):
            if fact.predicate in asked:
                if fact.surface not in rests:
                    rests[fact.surface] = question_cues(without_mention(key, fold(fact.surface)))
                mine = rests[fact.surface]
                out[k] = max((_jaccard(mine, theirs) for theirs in asked[fact.predicate]), default=0.0)
        return out

    def save(self, checkpoint: str) -> None:
        asked = [(predicate, rest) for predicate in sorted(self.wordings) for rest in self.wordings[predicate]]
        write_fitted(checkpoint, "trained_predicates", {  # "predicates" alone: what an earlier kgqa reads
            "predicates": np.array(sorted(self.wordings), dtype=str),
            "asked_predicates": np.array([predicate for predicate, _ in asked], dtype=str),
            "asked_wordings": np.array([rest for _, rest in asked], dtype=str)})

    @classmethod
    def load(cls, checkpoint: str) -> TrainedPredicates | None:
        """The checkpoint's trained predicates; None where its fit kept none. One an earlier kgqa
        fitted keeps no wordings: nothing resembles them (the reranker reads its predicates as
        before; its calibrator, over other signals, is not read)."""
        saved = read_fitted(checkpoint, "trained_predicates", "trained predicates", ("predicates",),
                            ("asked_predicates", "asked_wordings"))
        if saved is None:
            return None
        wordings: dict[str, list[str]] = {str(predicate): [] for predicate in saved["predicates"]}
        for predicate, rest in zip(saved.get("asked_predicates", []), saved.get("asked_wordings", [])):
            wordings[str(predicate)].append(str(rest))
        return cls({predicate: tuple(rests) for predicate, rests in wordings.items()})


def fit_trained_predicates(pairs: Pairs) -> TrainedPredicates:
    """The gold predicates of (question, gold target) pairs (the model's training questions), and
    how each question asked its own."""
    wordings: dict[str, list[str]] = {}
    for question, gold in pairs:
        wordings.setdefault(gold.predicate, []).append(without_mention(fold(question), fold(gold.surface)))
    return TrainedPredicates({predicate: tuple(rests) for predicate, rests in wordings.items()})
