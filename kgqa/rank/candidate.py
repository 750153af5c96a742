"""A candidate answer: one KB key (S, P, M), the object it gives, and its score; the
`S ||| P ||| O` string KgCLUE writes answers as, built and parsed here only; and which KB keys a
question's candidates are (the beam's, then their subjects' other keys).

Its own module because everything downstream of the index speaks it (beam, reranker, peer,
pipeline, CLI, server) and the peer, which needs no model, must not import torch to get it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kgqa.kb.triples import join_subject
from kgqa.rank.text import common_subsequence

if TYPE_CHECKING:  # only for the annotation: data and metrics import this module, and need no index
    from kgqa.kb.index import KBIndex

SEPARATOR = "|||"


def parse_answer(answer: str) -> tuple[str, str, str]:
    """(S, P, O) of `S ||| P ||| O`, each stripped; parts that are missing are ''."""
    parts = [part.strip() for part in answer.split(SEPARATOR, 2)] + ["", ""]
    return parts[0], parts[1], parts[2]


@dataclass
class Candidate:
    surface: str
    predicate: str
    disambiguation: str
    obj: str
    score: float
    key: int  # the KB key's id in the index, for explanation and reranking
    confidence: float | None = None  # the probability its object is right, where the checkpoint has a calibrator
    # (subject with its disambiguation, object) of homonyms holding the same predicate with another
    # object that nothing in the question tells from this one (the best candidate's only)
    alternatives: list[tuple[str, str]] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return join_subject(self.surface, self.disambiguation)

    def answer(self) -> str:
        """KgCLUE's answer string `S ||| P ||| O`, S with its disambiguation."""
        return f"{self.subject} {SEPARATOR} {self.predicate} {SEPARATOR} {self.obj}"

    def as_json(self) -> dict:
        """The candidate as predict, ask and serve print it."""
        found = {"answer": self.answer(), "score": round(self.score, 4)}
        if self.confidence is not None:
            found["confidence"] = round(self.confidence, 4)
        if self.alternatives:
            found["alternatives"] = [{"subject": subject, "object": obj} for subject, obj in self.alternatives]
        return found

    @classmethod
    def from_key(cls, index: "KBIndex", key: int, score: float, confidence: float | None = None) -> "Candidate":
        """The KB key as an answer: its first object, as KgCLUE's rule says."""
        answer = index.answer(key)
        return cls(answer.surface, answer.predicate, answer.disambiguation, answer.objects[0], score, key, confidence)


def best_answer(found: list[Candidate], min_confidence: float = 0.0) -> str:
    """The answer string of the best of a question's candidates, or "" when it has none (no KB key
    was reachable) or its confidence is below `min_confidence` (no answer in the KB): what an
    answer file, the leaderboard and the service write for it."""
    return "" if abstains(found, min_confidence) else found[0].answer()


def answer_json(found: list[Candidate], min_confidence: float) -> dict:
    """A question's answer as the service and `kgqa ask --json` give it: "answer" is the best
    candidate's answer string, null where its confidence is below `min_confidence` (no answer in
    the KB), "" where no KB key was reachable; "confidence" where there is one."""
    answer = "" if not found else None if abstains(found, min_confidence) else found[0].answer()
    return {"answer": answer, **confidence_json(found)}


def confidence_json(found: list[Candidate]) -> dict:
    """{"confidence": the best candidate's} where it has one, else {}."""
    return {"confidence": round(found[0].confidence, 4)} if found and found[0].confidence is not None else {}


def abstains(found: list[Candidate], min_confidence: float) -> bool:
    """Whether a question gets no answer: no candidate, or the best one's confidence below
    `min_confidence` (a candidate without a confidence is answered only at 0)."""
    if not found:
        return True
    if min_confidence <= 0:
        return False
    return found[0].confidence is None or found[0].confidence < min_confidence


def candidate_keys(index: KBIndex, question: str, beam: list[Candidate], surfaces: int = 2,
                     limit: int = 64) -> list[int]:
    """The beam's keys, then the other keys of its first `surfaces` subjects and of the longest
    KB mention in the question (the peer's subject), those whose predicate covers more of the
    question first, up to `limit` keys in all."""
    chosen = [c.key for c in beam]
    sids: list[int] = []
    for c in beam:
        sid = index.surface_of(c.key)
        if sid not in sids and len(sids) < surfaces:
            sids.append(sid)
    longest = index.mentions(question)[:1]
    if beam and longest and longest[0] not in sids:
        sids.append(longest[0])
    others = [(key, p) for sid in sids for key, p, _ in index.keys(sid) if key not in chosen]
    others.sort(key=lambda item: (-common_subsequence(question, item[1]), item[1], item[0]))
    return (chosen + [key for key, _ in others])[:limit]
