"""An answer and how it was reached, from one decode: what `kgqa ask --explain`, the service's
`"explain": true` and the page show — the question as read, the KB mentions in it, the beam's
keys, every candidate key with its reranker features and score, the chosen subject's
neighbourhood in the KB and its homonyms.

    from kgqa.explanation import explain
    explanation = explain(qa, "赵桂磊的配偶是谁？")   # qa: a `KGQA`
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kgqa.candidate import Candidate, abstains, reply_json
from kgqa.kb.index import KBIndex
from kgqa.pipeline import KGQA
from kgqa.rank.features import FEATURE_NAMES
from kgqa.reading import Reading


@dataclass
class Edge:
    """One key of the chosen subject, as the page draws it."""

    key: int
    predicate: str
    object: str
    chosen: bool  # the answer's own key


@dataclass
class Homonym:
    """An entity sharing the chosen subject's surface."""

    disambiguation: str
    keys: int  # how many KB keys it has: its prominence in the KB
    object: str | None  # its object for the chosen predicate, where it has that predicate
    has_predicate: bool
    chosen: bool


@dataclass
class Ranked:
    """A candidate key with the reranker's evidence about it (feature name -> value)."""

    candidate: Candidate
    features: dict[str, float]


@dataclass
class Explanation:
    """An answer and how it was reached, from one decode: what `kgqa ask --explain`, the
    service's `"explain": true` and the page show."""

    question: str
    reading: Reading  # the question as the model read it: its KB names in the KB's spelling
    top: list[Candidate]  # what `KGQA.ask` gives, best first
    mentions: list[str]  # the KB subjects the question mentions, longest first
    beam: list[Candidate]  # the beam's keys (model + look-ahead)
    candidates: list[Ranked]  # every candidate key, in the reranker's order
    reranked: bool  # whether the reranker ordered them (else the beam's order stands)
    min_confidence: float = 0.0  # below it the question gets no answer
    neighbourhood: list[Edge] = field(default_factory=list)  # the chosen subject's keys
    homonyms: list[Homonym] = field(default_factory=list)  # entities of the chosen subject's surface

    @property
    def chosen(self) -> Candidate | None:
        return self.top[0] if self.top else None

    @property
    def answered(self) -> bool:
        """False where the question gets no answer: no key reachable, or too little confidence."""
        return not abstains(self.top, self.min_confidence)

    def as_json(self) -> dict:
        """JSON-ready, the answer's parts first (as the service and `kgqa ask --json` print it)."""
        chosen = self.chosen
        return {
            "question": self.question,
            **reply_json(self.top, self.min_confidence),
            "object": chosen.obj if chosen else "",
            "subject": chosen.subject if chosen else "",
            "predicate": chosen.predicate if chosen else "",
            "top": [c.as_json() for c in self.top],
            **self.reading.as_json(),
            "mentions": self.mentions,
            "beam": [c.as_json() for c in self.beam],
            "candidates": [{**r.candidate.as_json(), "key": r.candidate.key, "features": r.features}
                           for r in self.candidates],
            "neighbourhood": [asdict(edge) for edge in self.neighbourhood],
            "homonyms": [asdict(homonym) for homonym in self.homonyms],
            "reranked": self.reranked,
        }


def explain(qa: KGQA, question: str) -> Explanation:
    """The answer `qa.ask` gives `question` and how it was reached, from one decode."""
    s = qa.settings
    (reading,), (candidate_set,) = qa.read_and_chosen(qa.read([question]))
    beam = candidate_set.beam
    ranked = [Ranked(c, {name: round(float(v), 4) for name, v in zip(FEATURE_NAMES, row)})
              for c, row in qa.ranked(candidate_set)]
    top = [r.candidate for r in ranked][: s.top_k] if qa.reranking else beam[: s.top_k]
    explanation = Explanation(question, reading, top, [qa.index.names.surface(sid) for sid in reading.mentions],
                              beam, ranked, qa.reranking, s.min_confidence)
    if explanation.chosen:
        explanation.neighbourhood = neighbourhood(qa.index, explanation.chosen.key)
        explanation.homonyms = homonyms(qa.index, explanation.chosen)
    return explanation


def neighbourhood(index: KBIndex, key: int, limit: int = 40) -> list[Edge]:
    """The subject of KB key `key` as the page draws it: each of its keys (the first `limit`,
    `key` always among them) with predicate, first object and whether it is `key`."""
    keys = list(index.subject_keys(key))
    if len(keys) > limit:
        keys = keys[:limit] if key in keys[:limit] else keys[: limit - 1] + [key]
    return [Edge(k, fact.predicate, fact.objects[0], k == key) for k, fact in zip(keys, map(index.fact, keys))]


def homonyms(index: KBIndex, chosen: Candidate) -> list[Homonym]:
    """The entities sharing the chosen subject's surface: their disambiguation, how many keys
    each has (its prominence in the KB), and its object for the chosen predicate, if any."""
    entities: dict[str, Homonym] = {}
    for key, predicate, disambiguation in index.keys(index.names.surface_id(chosen.surface)):
        entry = entities.setdefault(disambiguation, Homonym(disambiguation, 0, None, False,
                                                         disambiguation == chosen.disambiguation))
        entry.keys += 1
        if predicate == chosen.predicate:
            entry.has_predicate = True
            entry.object = index.fact(key).objects[0]
    return list(entities.values())
