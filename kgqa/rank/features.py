"""The reranker's evidence: named features of one candidate key, computed from one `Evidence`
record each.

Why these: beam search keeps a handful of predicates per subject, and the look-ahead trades the
model's preference against the question's wording with one fixed weight for every question;
scoring every predicate of the chosen subjects on this evidence, with learned weights
(`reranker.py`), recovers answers the beam dropped. The object a key gives is evidence too: a
question that asks how many or when wants one holding a digit, and no question asks for what it
already says, and a question's wording says what kind of object it wants (`answer_kinds.py`); a
fact about an entity tends to repeat the entity's name where one taken from another entity's facts
does not (唐平（广东工业大学自动化学院教授） 现任 「广东工业大学自动化学院教授」, 滕州二中新校 校址
「滕州市善南路266号」, against 地址 「山东省」). No
feature names a predicate (model log-likelihood, how much of the question names the predicate,
the object's kind, ...), so weights fitted on held-out predicates carry over to dev's and test's,
which training never shows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

from kgqa.kb.triples import Fact
from kgqa.kb.triples import join_subject
from kgqa.candidate import Candidate
from kgqa.rank.synonyms import synonym_covered
from kgqa.spelling import fold
from kgqa.text import common_subsequence, longest_common_substring, without_mention

# Wordings that ask for a quantity or a time: their answers hold digits, whatever the predicate.
ASKS_NUMBER = re.compile("多少|几|哪一年|哪年|什么时候|何时|多大|多高|多长|多重|多久|年份|日期|时间|哪天")
DIGIT = re.compile(r"\d")


@dataclass
class Evidence:
    """What the features of one candidate key are computed from: the key's KB fact, the model's
    log-likelihood of it, and what the question's other candidates share (best cover, longest
    surface, the beam)."""

    question: str
    fact: Fact
    key: int
    log_likelihood: float
    target_tokens: int
    object_log_likelihood: float  # the model's log p of the object's first tokens after the key (0: none taught)
    object_tokens: int
    rest: str  # the question without this key's subject mention
    surface_chars: int  # the subject's length by its spelling key (BLING BLING is as long as blingbling)
    named: float  # naming weight of the characters `rest` shares with the predicate (`naming.py`)
    nameable: float  # naming weight of all the characters of `rest`
    best_named: float  # the highest `named` among the question's candidates
    longest_surface: int  # the longest subject surface among them, by its spelling key
    beam_keys: list[int]
    asks_number: bool
    predicate_keys: int  # how many KB keys carry the predicate
    subject_keys: int  # how many KB keys the subject entity has
    commoner_siblings: float  # share of the subject's other candidate predicates that more KB keys carry
    kind_fit: float  # how well the predicate's profile fits what the question asks for (`answer_kinds.py`)
    kind_share: float  # softmax share of `kind_fit` among the subject's candidate predicates
    channel_gain: float  # how much better the predicate and object explain the question than nothing (`channel.py`)
    trained: float  # 1 where the model trained on the predicate and the fit saw such questions asked (`trained.py`)

    @property
    def obj(self) -> str:
        return self.fact.objects[0]  # the one an answer gives (Candidate.from_fact); "" where the KB has an empty O

    @property
    def subject_name(self) -> str:
        return self.fact.surface + self.fact.disambiguation

    @cached_property
    def object_subject_common(self) -> int:
        """Characters the object shares, in order, with the subject's surface and disambiguation."""
        return common_subsequence(self.subject_name, self.obj)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


# Each feature by name, computed where it is named: the fitted weights are stored and loaded by
# these names, so adding, dropping or reordering one is one edit here.
FEATURES: dict[str, Callable[[Evidence], float]] = {
    # the model's log p(S [SEP] P [SEP] M [EOS] | question)
    "log_likelihood": lambda e: e.log_likelihood,
    # the same per target token: long predicates are not penalised
    "mean_log_likelihood": lambda e: e.log_likelihood / max(e.target_tokens, 1),
    # the model's log p of the object's first tokens after the key: whether the object answers the
    # question's wording as the model read answers in training (在哪里 a place, 是谁 a person),
    # read against the subject and the whole predicate
    "object_log_likelihood": lambda e: e.object_log_likelihood,
    "mean_object_log_likelihood": lambda e: e.object_log_likelihood / max(e.object_tokens, 1),
    # the question's characters (mention removed) the predicate shares, each weighed by how often
    # such a character names the predicate in train's questions: 在 of 「在哪里」 little, 址 much
    "named": lambda e: e.named,
    # the same / that weight of all the question's characters
    "named_share": lambda e: _share(e.named, e.nameable),
    # the same / |P|
    "named_per_character": lambda e: e.named / len(e.fact.predicate),
    # 1 for the predicates the question names most
    "best_named": lambda e: float(e.named == e.best_named),
    # 1 when P occurs in the question as it is
    "literal": lambda e: float(e.fact.predicate in e.rest),
    # longest common substring with the question / |P|
    "substring": lambda e: longest_common_substring(list(e.fact.predicate), list(e.rest)) / len(e.fact.predicate),
    "predicate_chars": lambda e: len(e.fact.predicate),
    # subsequence of M in the question / |M|
    "disambiguation_covered": lambda e: _share(common_subsequence(e.question, e.fact.disambiguation),
                                               len(e.fact.disambiguation)),
    "has_disambiguation": lambda e: float(bool(e.fact.disambiguation)),
    "mention_chars": lambda e: e.surface_chars,
    # 1 for the longest of the candidate subjects
    "longest_mention": lambda e: float(e.surface_chars == e.longest_surface),
    "in_beam": lambda e: float(e.key in e.beam_keys),
    "beam_first": lambda e: float(bool(e.beam_keys) and e.key == e.beam_keys[0]),
    # the object holds a digit and the question asks how many, how long, when
    "number_asked": lambda e: float(bool(DIGIT.search(e.obj))) * float(e.asks_number),
    # the object holds a digit
    "number": lambda e: float(bool(DIGIT.search(e.obj))),
    # 1 when the object occurs in the question as it is: asked for, not given
    "object_in_question": lambda e: float(bool(e.obj) and e.obj in e.question),
    # subsequence of the object in the question / |object|
    "object_covered": lambda e: _share(common_subsequence(e.question, e.obj), len(e.obj)),
    # the object's share, and the subject name's, that they have in common (in order): a fact about an
    # entity tends to repeat its name, one borrowed from another entity's facts does not
    "object_in_subject": lambda e: _share(e.object_subject_common, len(e.obj)),
    "subject_in_object": lambda e: _share(e.object_subject_common, len(e.subject_name)),
    # the predicate's share said in the question as itself or a Cilin synonym (爱人 for 配偶)
    "synonym_covered": lambda e: synonym_covered(e.fact.predicate, e.rest),
    # the predicate's prominence: questions ask about common predicates more than rare ones, and a
    # subject's rarest predicates are the likeliest noise (log of the KB keys that carry it)
    "predicate_prominence": lambda e: float(np.log1p(e.predicate_keys)),
    "commoner_siblings": lambda e: e.commoner_siblings,
    "commonest_of_subject": lambda e: float(e.commoner_siblings == 0.0),
    # the subject's prominence: questions ask about entities the KB holds much of more than about
    # ones it barely knows (知道 of 「谁知道…」, a dictionary word with a few keys)
    "subject_prominence": lambda e: float(np.log1p(e.subject_keys)),
    # what the question asks for against what the predicate holds across the KB (多远: 公里, ly)
    "kind_fit": lambda e: e.kind_fit,
    "kind_share": lambda e: e.kind_share,
    # log P(question | P, O) - log P(question): the question's wording generated from the candidate
    "channel_gain": lambda e: e.channel_gain,
    # a predicate the model trained on (0 where the fit saw no question held out of the trained
    # predicates: `trained.py`)
    "predicate_trained": lambda e: e.trained,
}
# the model's reading of a key, apart where it trained on the key's predicate: there the beam was
# taught the question's wording, elsewhere it guesses (`trained_log_likelihood`, ...)
FEATURES.update({f"trained_{name}": (lambda read: lambda e: e.trained * read(e))(FEATURES[name])
                 for name in ("log_likelihood", "mean_log_likelihood", "beam_first")})
FEATURE_NAMES = tuple(FEATURES)


# What each evidence model gives a question's candidates, one row per key, by name (a candidate
# set's `evidence`): the model's (log p, tokens) of the key and of its object's first tokens
# (`likelihood.key_and_object_log_probs`), `KBIndex.prominence` (entity, predicate's keys,
# subject's keys), `AnswerKinds.scores`, `Naming.scores`, `Channel.gains`, `TrainedPredicates.flags`;
# and, evidence of the confidence only, `Wording.beside` (how plainly the question bounds the
# subject's mention) and `TrainedPredicates.resemblance` (how the question is worded as training's
# questions of a trained predicate were).
EVIDENCE = ("likelihoods", "prominence", "kinds", "named", "channel", "trained", "beside", "resemblance")


def candidate_features(question: str, keys: list[int], facts: list[Fact], beam: list[Candidate],
                       evidence: dict[str, np.ndarray]) -> np.ndarray:
    """One row per key (`keys`, their `facts`, the `evidence` columns named in EVIDENCE), one
    column per FEATURES name."""
    likelihoods, prominence, kinds, named, channel, trained = (evidence[name] for name in EVIDENCE[:6])
    rests = [without_mention(question, fact.surface) for fact in facts]
    lengths = [len(fold(fact.surface)) for fact in facts]
    shared = {"question": question, "best_named": float(named[:, 0].max()), "beam_keys": [c.key for c in beam],
              "longest_surface": max(lengths),
              "asks_number": bool(ASKS_NUMBER.search(question))}
    entities = prominence[:, 0]
    siblings: dict[int, list[int]] = {}
    for entity, count, _ in prominence.tolist():
        siblings.setdefault(entity, []).append(count)
    kind_shares = np.zeros(len(kinds))  # softmax of the kind fits within each subject entity
    for entity in siblings:
        mine = entities == entity
        fits = np.exp(kinds[mine] - kinds[mine].max())
        kind_shares[mine] = fits / fits.sum()
    rows = []
    for fact, key, (ll, length, object_ll, object_length), rest, chars, (said, sayable), (entity, count, size), fit, share, \
            gain, flag in zip(facts, keys, likelihoods, rests, lengths, named, prominence.tolist(), kinds, kind_shares, channel,
                              trained):
        others = siblings[entity]
        commoner = sum(other > count for other in others) / max(len(others) - 1, 1)
        evidence = Evidence(fact=fact, key=key, log_likelihood=ll, target_tokens=int(length),
                            object_log_likelihood=object_ll, object_tokens=int(object_length), rest=rest, surface_chars=chars,
                            named=float(said), nameable=float(sayable), predicate_keys=count, subject_keys=size,
                            commoner_siblings=commoner, kind_fit=float(fit), kind_share=float(share),
                            channel_gain=float(gain), trained=float(flag), **shared)
        rows.append([feature(evidence) for feature in FEATURES.values()])
    return np.array(rows, dtype=np.float64)


@dataclass
class CandidateSet:
    """One question's candidate keys and what their features come from: the keys' KB facts, the
    beam, and each evidence model's columns by name (`evidence`, one row per key: EVIDENCE); and the
    feature rows (one per key, one column per FEATURES name)."""

    question: str
    keys: list[int]
    facts: list[Fact]
    beam: list[Candidate]
    evidence: dict[str, np.ndarray]
    features: np.ndarray = field(init=False)
    trust: float = 1.0  # how far the reading it comes from is to be trusted: its confidences are scaled
    # by it (below 1 for a near reading: the name read may not be the one meant, `KGQA.read_and_chosen`;
    # 0 for a reading that names no KB subject: `pipeline.UNNAMED_TRUST`)

    def __post_init__(self) -> None:
        missing = set(EVIDENCE) - set(self.evidence)
        if missing:
            raise ValueError(f"a candidate set needs every evidence column; it lacks {sorted(missing)}")
        self.features = candidate_features(self.question, self.keys, self.facts, self.beam, self.evidence) \
            if self.keys else np.zeros((0, len(FEATURE_NAMES)))

    def position(self, subject: str, predicate: str) -> int | None:
        """Where the key of `subject` (with its disambiguation) and `predicate` is among the
        candidates (a held-out question's gold key), or None."""
        for k, fact in enumerate(self.facts):
            if fact.predicate == predicate and join_subject(fact.surface, fact.disambiguation) == subject:
                return k
        return None

    def without(self, dropped: Callable[[Fact], bool]) -> CandidateSet:
        """The same question's candidates had the KB not held the keys whose fact `dropped`
        says (a missing fact, a missing entity): the others, their features computed again (what
        the question's candidates share changes with them) and the beam without those keys."""
        kept = [i for i, fact in enumerate(self.facts) if not dropped(fact)]
        gone = {self.keys[i] for i in range(len(self.keys))} - {self.keys[i] for i in kept}
        return CandidateSet(self.question, [self.keys[i] for i in kept], [self.facts[i] for i in kept],
                            [c for c in self.beam if c.key not in gone],
                            {name: column[kept] for name, column in self.evidence.items()})
