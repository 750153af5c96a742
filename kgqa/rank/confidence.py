"""Confidence: the probability that a candidate's object is the right answer, from the evidence the
pipeline already has (the reranker's scores over the question's candidates and its margin, the
beam, how much of the question the key covers, how well its object fits the kind asked for and its
subject, rival homonyms), by a logistic calibrator fitted on
held-out training questions and saved beside the reranker.

Why a calibrator, not the reranker's score: the score ranks one question's candidates against each
other and says nothing of how sure a ranking is across questions; a question about a fact the KB
lacks still has a best candidate. The calibrator is fitted on what such questions look like: each
held-out question is scored by a reranker fitted on the other predicates' questions (as dev's are
scored by one that never saw them), once as it is, and once more as it would be with its gold key,
then its gold entity, missing from the KB (the candidates without them, their features computed
again); and once as decoded over a copy of the KB that lacks them, as written and typed with a
homophone (`rank.unanswerable`): there the beam writes what a question about something the KB
lacks gets, a shorter name inside the one typed, a common word, a name that sounds alike. In these,
no candidate is right (but for one of a homonym holding the same object).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from kgqa.kb.triples import Fact
from kgqa.kb.triples import join_subject
from kgqa.spelling import normalize
from kgqa.rank.features import FEATURE_NAMES, CandidateSet
from kgqa.rank.storage import per_feature, write_fitted
from kgqa.rank.reranker import MIN_EXAMPLES, Reranker, predicate_folds

TOP = 3  # ranked candidates per question the calibrator learns from
MISSING_WEIGHT = 0.5  # weight of each question with its gold key or entity removed, against 1 as it is
UNANSWERABLE_WEIGHT = 1.0  # weight of each decoded over a KB without them: a question as real as one the KB answers
FOLDS = 5  # each held-out question's reranker is fitted on the other four fifths: near the whole's
MARGIN_CAP = 10.0  # a candidate without a rival of another object is this far ahead
# the share of answers right above the refusal threshold a fit chooses (`refusal_threshold`): where a
# person asks (`kgqa ask`, `kgqa serve`), an answer below it is said to be no answer in the KB
REFUSAL_PRECISION = 0.95
WILSON_Z = 1.645  # the lower end of a one-sided 95% interval: how sure that share is
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass
class Signal:
    """What one ranked candidate's confidence is computed from."""

    rank: int
    score: float  # the reranker's
    object_share: float  # the reranker's probability (softmax over the candidates) of this candidate's object
    margin: float  # its score less the best score of a candidate with another object
    rival_share: float  # the probability of keys of a homonym, same predicate, another object
    kind_gap: float  # how much better another object's predicate fits the kind of answer asked for
    beside: float  # how plainly the question bounds its subject's mention (`Wording.beside`)
    resemblance: float  # its wording against training's questions of its predicate (`TrainedPredicates.resemblance`)
    features: np.ndarray  # its reranker features, FEATURE_NAMES' order
    question_chars: int
    surface_chars: int
    candidates: int


SIGNALS: dict[str, Callable[[Signal], float]] = {
    "score": lambda s: s.score,
    "log_object_share": lambda s: math.log(max(s.object_share, 1e-9)),
    "margin": lambda s: s.margin,
    "top": lambda s: float(s.rank == 0),
    "rival_share": lambda s: s.rival_share,
    # a question asking for a kind (a school, a place, a date) whose answer is not of it while another
    # candidate's is: the best kind fit among candidates of another object, less this one's (0: none fits better)
    "kind_gap": lambda s: s.kind_gap,
    "log_candidates": lambda s: math.log1p(s.candidates),
    # low where the subject's mention runs on into other name-like characters (酸碱|灭火器): the
    # question likely names something longer, which the KB lacks
    "wording_beside": lambda s: s.beside,
    # the share of the question its subject's mention takes up
    "subject_share": lambda s: s.surface_chars / max(s.question_chars, 1),
    # how the question is worded as training's questions of the candidate's predicate were (0 for a
    # predicate not trained on, and where the fit saw no question held out of the trained predicates,
    # `trained.py`): a question about something the KB lacks that falls back on a trained predicate
    # is worded otherwise
    "trained_resemblance": lambda s: s.resemblance,
    # (the last four: a candidate of a predicate the model trained on, and the model's reading of it
    # apart, 0 where the fit saw no question held out of the trained predicates, `trained.py`: a
    # question about something the KB lacks falls back on a trained predicate of its subject, which
    # the model reads otherwise than one a person asks about)
    **{name: (lambda column: lambda s: float(s.features[column]))(_COLUMN[name])
       for name in ("log_likelihood", "mean_log_likelihood", "object_log_likelihood", "mean_object_log_likelihood",
                    "named_per_character", "named_share", "literal",
                    "synonym_covered", "in_beam", "beam_first", "disambiguation_covered", "object_in_question",
                    "number_asked", "object_in_subject", "subject_in_object", "kind_fit", "kind_share",
                    "predicate_prominence", "named", "best_named", "longest_mention", "mention_chars",
                    "has_disambiguation", "channel_gain", "predicate_trained", "trained_log_likelihood",
                    "trained_mean_log_likelihood", "trained_beam_first")},
}
SIGNAL_NAMES = tuple(SIGNALS)


def ranking(scores: np.ndarray) -> np.ndarray:
    """The candidates' positions, best score first; ties keep the candidates' order (the beam's first)."""
    return np.argsort(-scores, kind="stable")


def signal_rows(candidate_set: CandidateSet, scores: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """One row of SIGNALS per candidate of `ranked` (positions in `candidate_set`, best first, as
    `ranking` orders them: the first is rank 0), the question's candidates scored `scores`."""
    share = np.exp(scores - scores.max()) if len(scores) else scores
    share = share / share.sum() if len(scores) else share
    objects = [fact.objects[0] for fact in candidate_set.facts]
    fits = candidate_set.features[:, _COLUMN["kind_fit"]]
    by_object: dict[str, float] = {}
    for obj, p in zip(objects, share):
        by_object[obj] = by_object.get(obj, 0.0) + float(p)
    rows = []
    for rank, k in enumerate(ranked):
        fact = candidate_set.facts[k]
        others = [i for i in range(len(scores)) if objects[i] != objects[k]]
        best_rival = max((scores[i] for i in others), default=scores[k] - MARGIN_CAP)
        kind_gap = max(0.0, max((float(fits[i]) for i in others), default=float(fits[k])) - float(fits[k]))
        rival_share = sum(float(share[i]) for i, other in enumerate(candidate_set.facts)
                          if objects[i] != objects[k] and _homonym_rival(other, fact))
        signal = Signal(rank, float(scores[k]), by_object[objects[k]], float(min(scores[k] - best_rival, MARGIN_CAP)),
                        rival_share, kind_gap, float(candidate_set.evidence["beside"][k]),
                        float(candidate_set.evidence["resemblance"][k]), candidate_set.features[k],
                        len(candidate_set.question), len(fact.surface),
                        len(candidate_set.keys))
        rows.append([value(signal) for value in SIGNALS.values()])
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(SIGNALS))


def alternatives(candidate_set: CandidateSet, chosen: int) -> list[tuple[str, str]]:
    """(subject with its disambiguation, object) of each homonym of candidate `chosen` holding the
    same predicate with another object that the question does not tell from it: the question
    covers its disambiguation exactly as much as the chosen one's (usually not at all), and that
    is the only feature of the question's wording in which two homonyms' keys of one predicate can
    differ; what still ranks one first is the model and the KB's prominence, not the question."""
    fact = candidate_set.facts[chosen]
    said = candidate_set.features[chosen, _COLUMN["disambiguation_covered"]]
    return [(join_subject(other.surface, other.disambiguation), other.objects[0])
            for k, other in enumerate(candidate_set.facts)
            if _homonym_rival(other, fact) and other.objects[0] != fact.objects[0]
            and candidate_set.features[k, _COLUMN["disambiguation_covered"]] == said]


def _homonym_rival(other: Fact, fact: Fact) -> bool:
    """Another entity of the same surface holding the same predicate."""
    return (other.surface == fact.surface and other.predicate == fact.predicate
            and other.disambiguation != fact.disambiguation)


@dataclass
class Calibrator:
    """Logistic regression over standardised SIGNALS: the probability a candidate's object is
    right; and the confidence below which an answer is refused where a person asks
    (`refuse_below`, chosen on held-out answers by `refusal_threshold`)."""

    mean: list[float]
    std: list[float]
    weights: list[float]
    bias: float
    refuse_below: float = 0.0
    features: tuple[str, ...] = SIGNAL_NAMES

    def logits(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - np.array(self.mean)) / np.array(self.std)) @ np.array(self.weights) + self.bias

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(rows)))

    def rescaled(self, logits: np.ndarray, right: np.ndarray) -> Calibrator:
        """The same ranking, its probabilities fitted to how often the answers of `logits` are
        right (Platt scaling: sigmoid(a · logit + c) is again a logistic regression over the rows)."""
        platt = Calibrator.fit(logits[:, None], right, np.ones(len(logits)), l2=0.0)
        a = platt.weights[0] / platt.std[0]
        c = platt.bias - a * platt.mean[0]
        return Calibrator(self.mean, self.std, [a * w for w in self.weights], a * self.bias + c, self.refuse_below,
                          self.features)

    def save(self, checkpoint: str) -> None:
        write_fitted(checkpoint, "calibrator", asdict(self))

    @classmethod
    def load(cls, checkpoint: str) -> Calibrator | None:
        """The checkpoint's calibrator, None where it has none (or one over other signals)."""
        saved = per_feature(checkpoint, "calibrator", "calibrator", SIGNAL_NAMES, ("mean", "std", "weights"),
                            ("bias", "refuse_below"))
        if saved is None:
            return None
        fields, (bias, refuse_below) = saved
        return cls(*(values.tolist() for values in fields), bias, refuse_below)

    @classmethod
    def fit(cls, rows: np.ndarray, right: np.ndarray, weights: np.ndarray, l2: float = 1e-3) -> Calibrator:
        """Weighted logistic regression, L-BFGS from zero on a convex loss: deterministic."""
        mean, std = rows.mean(0), rows.std(0) + 1e-6
        x = torch.tensor((rows - mean) / std, dtype=torch.float64)
        y = torch.tensor(right, dtype=torch.float64)
        w = torch.tensor(weights / weights.sum(), dtype=torch.float64)
        params = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([params], max_iter=300, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = x @ params[:-1] + params[-1]
            loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
            loss = loss + l2 * params[:-1].square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        fitted = params.detach().tolist()
        return cls(mean.tolist(), std.tolist(), fitted[:-1], fitted[-1])


def calibration_rows(candidate_sets: list[CandidateSet], golds: list[tuple[str, str, str]], l2: float,
                     unanswerable: list[list[CandidateSet]] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(SIGNALS rows, whether each candidate's object is the gold one, weights, which rows are the
    answer to a question as it is) of the top TOP candidates of each held-out question, as it is
    and with its gold key, then its gold entity, missing, and as read over a KB without them
    (`unanswerable[i]`: question i's candidate sets so read, `rank.unanswerable`); each scored by
    a reranker fitted (penalty `l2`) on the other fold's predicates."""
    indices = [f.position(subject, predicate) for f, (subject, predicate, _) in zip(candidate_sets, golds)]
    fold = predicate_folds([predicate for _, predicate, _ in golds], FOLDS)
    rows, right, weights, answers = [], [], [], []
    for held in sorted(set(fold)):
        examples = [(f.features, k) for f, k, side in zip(candidate_sets, indices, fold)
                    if side != held and k is not None]
        if len(examples) < MIN_EXAMPLES:
            continue
        reranker = Reranker.fit(examples, l2)
        for i, (f, k, gold, side) in enumerate(zip(candidate_sets, indices, golds, fold)):
            if side != held:
                continue
            views = [(f, 1.0)]
            if k is not None:
                key = f.facts[k]
                views.append((f.without(lambda a: a == key), MISSING_WEIGHT))
                views.append((f.without(lambda a: (a.surface, a.disambiguation) == (key.surface, key.disambiguation)),
                              MISSING_WEIGHT))
            views += [(view, UNANSWERABLE_WEIGHT) for view in (unanswerable[i] if unanswerable else [])]
            for view, weight in views:
                if not view.keys:
                    continue
                scores = reranker.scores(view.features)
                order = ranking(scores)[:TOP]
                signals = signal_rows(view, scores, order)
                for rank in range(len(order)):
                    rows.append(signals[rank])
                    right.append(normalize(view.facts[order[rank]].objects[0]) == normalize(gold[2]))
                    weights.append(weight)
                    answers.append(rank == 0 and view is f)
    width = len(SIGNALS)
    return (np.array(rows, dtype=np.float64).reshape(-1, width), np.array(right, dtype=np.float64),
            np.array(weights, dtype=np.float64), np.array(answers, dtype=bool))


def fit_calibrator(candidate_sets: list[CandidateSet], golds: list[tuple[str, str, str]], l2: float,
                   unanswerable: list[list[CandidateSet]] | None = None) -> Calibrator | None:
    """The calibrator of held-out questions' candidates (`golds`: their gold S, P, O; `unanswerable`:
    as `calibration_rows` takes them), None when
    too few questions, or no right or no wrong answer among them, to fit one (also where no fold
    has enough questions of other predicates to score it: held-out questions of one predicate).

    Two steps: a logistic regression over every row (questions as they are, and without their
    gold key or entity) learns what tells a right answer from a wrong or impossible one; then its
    logit is rescaled on the answers to the questions as they are, so that a confidence of 0.8 is
    right four times in five on questions the KB can answer (the mixture of the first step has
    more impossible questions than any real stream, and would read low). Its refusal threshold is
    chosen on those answers too (`refusal_threshold`)."""
    rows, right, weights, answers = calibration_rows(candidate_sets, golds, l2, unanswerable)
    if len(candidate_sets) < MIN_EXAMPLES or not answers.any() or right[answers].min() == right[answers].max():
        return None
    fitted = Calibrator.fit(rows, right, weights)
    calibrated = fitted.rescaled(fitted.logits(rows[answers]), right[answers])
    calibrated.refuse_below = refusal_threshold(calibrated.probabilities(rows[answers]), right[answers])
    return calibrated


def refusal_threshold(confidences: np.ndarray, right: np.ndarray, precision: float = REFUSAL_PRECISION) -> float:
    """The lowest confidence at which the answers at or above it are right at least `precision` of
    the time, by the lower end of a one-sided 95% interval (Wilson's) on how often they are right
    (`confidences` and `right` of held-out answers): a share measured on few answers, or on held-out
    predicates a little easier than new ones, is not taken at face value; 1.0 where none is."""
    order = np.argsort(-confidences, kind="stable")
    ranked, n = confidences[order], np.arange(1, len(order) + 1)
    share = np.cumsum(right[order]) / n
    z = WILSON_Z
    sure = (share + z * z / (2 * n) - z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    # answers tied at one confidence are all kept or all refused: only the last of a tie is a cut
    cut = np.append(ranked[1:] != ranked[:-1], True)
    kept = np.flatnonzero((sure >= precision) & cut)
    return float(ranked[kept[-1]]) if len(kept) else 1.0
