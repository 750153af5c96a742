"""What a checkpoint fitted beside its model, as one object: the reranker, the confidence calibrator
and the evidence they read (answer kinds, naming weights, the noisy channel), and the question wording the near
readings are tried by; loaded, saved and fitted together, so a pipeline, training's closing fit,
`kgqa fit-reranker` and every benchmark see the same set (`Fitted()`: none fitted).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch

from kgqa.data import Pairs, Question
from kgqa.kb.index import KBIndex
from kgqa.kb.triples import Fact
from kgqa.rank.answer_kinds import AnswerKinds, fit_answer_kinds
from kgqa.rank.channel import Channel, fit_channel
from kgqa.candidate import Candidate
from kgqa.rank.confidence import Calibrator, alternatives, fit_calibrator, ranking, signal_rows
from kgqa.rank.features import CandidateSet
from kgqa.rank.storage import remove_fitted
from kgqa.rank.naming import Naming, fit_naming
from kgqa.rank.reranker import Reranker, fit_reranker
from kgqa.rank.trained import TrainedPredicates, fit_trained_predicates
from kgqa.rank.unanswerable import unanswerable_views
from kgqa.rank.wording import BOUNDED, Wording, fit_wording

@dataclass
class Ranking:
    """A question's candidates as the fitted models rank them: `order` (their indices, best first),
    each one's reranker `score` (0 without the reranker: the candidates' own order stands), and for
    the first `len(confidence)` in that order their confidence (each at most the one before's) and
    the calibrator's signal rows it was read from (none without a calibrator)."""

    order: np.ndarray
    scores: np.ndarray
    confidence: np.ndarray
    signals: np.ndarray

    def candidates(self, candidate_set: CandidateSet, first: int | None = None) -> list[tuple[Candidate, np.ndarray]]:
        """The first `first` (None: all) ranked candidates with their feature rows, best first; the
        best one with the homonyms the question cannot tell from it (`alternatives`)."""
        order = self.order[:first]
        confidence = self.confidence.tolist() + [None] * (len(order) - len(self.confidence))
        ranked = [(Candidate.from_fact(candidate_set.facts[k], candidate_set.keys[k], float(self.scores[k]),
                                       confidence[rank]), candidate_set.features[k]) for rank, k in enumerate(order)]
        if ranked:
            ranked[0][0].alternatives = alternatives(candidate_set, int(self.order[0]))
        return ranked


@dataclass
class Fitted:
    """The fitted models of one checkpoint, each None where it has none (an older kgqa fitted it, or
    too few held-out questions to fit it)."""

    reranker: Reranker | None = None
    calibrator: Calibrator | None = None  # each candidate's confidence, where the reranker ranks them
    answer_kinds: AnswerKinds | None = None  # what kind of answer a question wants
    naming: Naming | None = None  # which of a question's characters name its predicate
    wording: Wording | None = None  # which two-character spans are question wording, not a name
    channel: Channel | None = None  # how well a candidate's predicate and object explain the question
    trained_predicates: TrainedPredicates | None = None  # the predicates the model trained on, where the fit saw them asked

    @classmethod
    def load(cls, checkpoint: str) -> Fitted:
        return cls(Reranker.load(checkpoint), Calibrator.load(checkpoint), AnswerKinds.load(checkpoint),
                   Naming.load(checkpoint), Wording.load(checkpoint), Channel.load(checkpoint),
                   TrainedPredicates.load(checkpoint))

    def evidence(self, index: KBIndex, question: str, facts: list[Fact]) -> dict[str, np.ndarray]:
        """By name (`features.EVIDENCE`): how well each fact's predicate fits what the question asks
        for (`AnswerKinds.scores`), how much of the question names it (`Naming.scores`), how
        plainly the question bounds its subject's mention (`Wording.beside`), whether the model
        trained on its predicate (`TrainedPredicates.flags`) and how the question is worded as
        training's questions of it (`TrainedPredicates.resemblance`); zeros (and bounded) for a
        model this set lacks (a checkpoint never fitted: the beam's order stands)."""
        kinds, naming, wording, trained = self.answer_kinds, self.naming, self.wording, self.trained_predicates
        fits = np.zeros(len(facts)) if kinds is None else kinds.scores(index, question, facts)
        named = np.zeros((len(facts), 2)) if naming is None else naming.scores(question, facts)
        # per subject surface, not per key: a subject's keys share it
        bounded = {surface: BOUNDED if wording is None else wording.beside(question, surface)
                   for surface in {fact.surface for fact in facts}}
        return {"kinds": fits, "named": named, "beside": np.array([bounded[fact.surface] for fact in facts]),
                "trained": np.zeros(len(facts)) if trained is None else trained.flags(facts),
                "resemblance": np.zeros(len(facts)) if trained is None else trained.resemblance(question, facts)}

    def channel_gains(self, questions: list[str], facts: list[list[Fact]]) -> list[np.ndarray]:
        """Per question, how much better each fact's predicate and object explain it than nothing
        does (`Channel.gains`, all the questions' facts in a few passes); zeros without a channel
        (a reranker fitted without it weighs them 0)."""
        if self.channel is None:
            return [np.zeros(len(row)) for row in facts]
        return self.channel.gains(questions, facts)

    def rank(self, candidate_set: CandidateSet, rerank: bool = True, confident: int | None = None) -> Ranking:
        """`candidate_set` ranked by the reranker (where `rerank` and there is one; ties keep the
        candidates' order, the beam's first) with the confidence of its first `confident` (None:
        all), where there is a calibrator: the calibrator reads each candidate alone, so a candidate
        is never said to be surer than one ranked before it, and the reading's `trust` scales each."""
        keys = candidate_set.keys
        reranking = rerank and self.reranker is not None and bool(keys)
        scores = self.reranker.scores(candidate_set.features) if reranking else np.zeros(len(keys))
        order = ranking(scores)
        if not (reranking and self.calibrator is not None):
            return Ranking(order, scores, np.zeros(0), np.zeros((0, 0)))
        signals = signal_rows(candidate_set, scores, order[:confident])
        confidence = np.minimum.accumulate(self.calibrator.probabilities(signals) * candidate_set.trust)
        return Ranking(order, scores, confidence, signals)

    def ordinary(self, typed: str) -> bool:
        """Whether two typed characters are ordinary question wording (so never read as a near
        name); all are, without wording counts to tell."""
        return self.wording is None or self.wording.ordinary(typed)

    def forget_index(self) -> None:
        """Drop what was cached of the index answered from before (the pipeline switched to another):
        the answer kinds' profiles of its predicates hold it, and its maps, alive."""
        if self.answer_kinds is not None:
            self.answer_kinds.profile.cache_clear()

    def save(self, checkpoint: str) -> None:
        """Each model beside the checkpoint's weights; one this set lacks is removed there (it
        belonged to an earlier fit, of what is gone)."""
        for model in fields(self):
            fitted = getattr(self, model.name)
            if fitted is None:
                remove_fitted(checkpoint, model.name)
            else:
                fitted.save(checkpoint)


def fit(index: KBIndex, pairs: Pairs, held: list[Question], seed: int,
        candidate_sets: Callable[[Fitted, KBIndex, list[str]], list[CandidateSet]], channel_epochs: int,
        device: torch.device | str = "cpu", asked: Sequence[Question] = ()) -> tuple[Fitted, float]:
    """Fit the answer kinds, naming weights and question wording on `pairs` (the questions the model
    trained on) and train the noisy channel `channel_epochs` passes over them (on `device`), then
    the reranker on `held` (questions of predicates training held out) and `asked` (questions held
    out of the predicates it kept: where there are any, the trained predicates are kept too, and
    read as features) and the calibrator over them and over the same questions made unanswerable
    (`unanswerable_views`);
    `candidate_sets(evidence, index, questions)` gives questions' candidates over an index from
    the model being fitted for, read with `evidence` (the kinds, naming weights and channel just
    fitted). Also returns the share of those questions whose gold key is among the candidates
    (the reranker's ceiling)."""
    evidence = Fitted(answer_kinds=fit_answer_kinds(index, pairs, seed), naming=fit_naming(pairs),
                      wording=fit_wording(pairs), channel=fit_channel(pairs, channel_epochs, seed, device),
                      trained_predicates=fit_trained_predicates(pairs) if asked else None)
    questions = [*held, *asked]
    sets = candidate_sets(evidence, index, [q.question for q in questions])
    golds = [q.gold() for q in questions]
    positions = [s.position(subject, predicate) for s, (subject, predicate, _) in zip(sets, golds)]
    reranker, l2 = fit_reranker([(s.features, k) for s, k in zip(sets, positions) if k is not None],
                                [gold[1] for gold, k in zip(golds, positions) if k is not None])
    if reranker is not None:  # read as `sets` were, before the reranker joins the evidence
        unanswerable = unanswerable_views(index, questions, seed, lambda copy, asked_over: candidate_sets(
            evidence, copy, asked_over))
        evidence.calibrator = fit_calibrator(sets, golds, l2, unanswerable)
    evidence.reranker = reranker
    return evidence, sum(k is not None for k in positions) / len(questions)
