"""A candidate answer: one KB key (S, P, M), the object it gives, and its score; and the
`S ||| P ||| O` string KgCLUE writes answers as, built and parsed here only.

Its own module because everything downstream of the index speaks it (beam, reranker, peer,
pipeline, CLI, server) and the peer, which needs no model, must not import torch to get it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kgqa.kb import join_subject

if TYPE_CHECKING:  # only for the annotation: data and metrics import this module, and need no index
    from kgqa.index import KBIndex

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

    @property
    def subject(self) -> str:
        return join_subject(self.surface, self.disambiguation)

    def answer(self) -> str:
        """KgCLUE's answer string `S ||| P ||| O`, S with its disambiguation."""
        return f"{self.subject} {SEPARATOR} {self.predicate} {SEPARATOR} {self.obj}"

    def as_json(self) -> dict:
        """The candidate as predict, ask and serve print it."""
        return {"answer": self.answer(), "score": round(self.score, 4)}

    @classmethod
    def of(cls, index: "KBIndex", key: int, score: float) -> "Candidate":
        """The KB key as an answer: its first object, as KgCLUE's rule says."""
        answer = index.answer(key)
        return cls(answer.surface, answer.predicate, answer.disambiguation, answer.objects[0], score, key)
