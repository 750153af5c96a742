"""A candidate: one KB key (S, P, M) scored for a question, with the object it gives; its
*answer*, the `S ||| P ||| O` string KgCLUE writes (built and parsed here only); and what a
question's candidates come to: its answer string, no answer (abstention), its reply as JSON.

Below everything that speaks it (question files, metric, beam, reranker, peer, pipeline, CLI,
server): it imports no index and no torch, so reading an answer file needs neither.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kgqa.kb.triples import Fact, join_subject

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
        record = {"answer": self.answer(), "score": round(self.score, 4)}
        if self.confidence is not None:
            record["confidence"] = round(self.confidence, 4)
        if self.alternatives:
            record["alternatives"] = [{"subject": subject, "object": obj} for subject, obj in self.alternatives]
        return record

    @classmethod
    def from_fact(cls, fact: Fact, key: int, score: float, confidence: float | None = None) -> Candidate:
        """KB key `key`, which holds `fact`, as a candidate: its first object, as KgCLUE's rule says."""
        return cls(fact.surface, fact.predicate, fact.disambiguation, fact.objects[0], score, key, confidence)


def best_answer(candidates: list[Candidate], min_confidence: float = 0.0) -> str:
    """The answer string of the best of a question's candidates, or "" when it has none (no KB key
    was reachable) or its confidence is below `min_confidence` (no answer in the KB): what an
    answer file, the leaderboard and the service write for it."""
    return "" if abstains(candidates, min_confidence) else candidates[0].answer()


def reply_json(candidates: list[Candidate], min_confidence: float) -> dict:
    """A question's answer as the service and `kgqa ask --json` give it: "answer" is the best
    candidate's answer string, null where its confidence is below `min_confidence` (no answer in
    the KB), "" where no KB key was reachable; "confidence" where there is one."""
    answer = "" if not candidates else None if abstains(candidates, min_confidence) else candidates[0].answer()
    return {"answer": answer, **confidence_json(candidates)}


def answer_record(question: str, candidates: list[Candidate], min_confidence: float) -> dict:
    """A question's answer as `/ask` and `kgqa ask --json` give it: the question, `reply_json`, and
    its top candidates."""
    return {"question": question, **reply_json(candidates, min_confidence),
            "candidates": [c.as_json() for c in candidates]}


def confidence_json(candidates: list[Candidate]) -> dict:
    """{"confidence": the best candidate's} where it has one, else {}."""
    best = candidates[0] if candidates else None
    return {"confidence": round(best.confidence, 4)} if best is not None and best.confidence is not None else {}


def abstains(candidates: list[Candidate], min_confidence: float) -> bool:
    """Whether a question gets no answer: no candidate, or the best one's confidence below
    `min_confidence` (a candidate without a confidence is answered only at 0)."""
    if not candidates:
        return True
    if min_confidence <= 0:
        return False
    return candidates[0].confidence is None or candidates[0].confidence < min_confidence
