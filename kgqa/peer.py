"""The non-neural peer: the longest KB mention in the question, then that surface's predicate
with the longest common subsequence with the rest of the question. Ties go to the predicate
covering the larger share of itself, then to string order: never to KB file order, which in a
KB assembled around gold triples can leak the answer.

Kept as a library piece because it is the baseline every accuracy figure is read against, and
a sanity check of the index: it needs no model.
"""
from __future__ import annotations

from kgqa.candidate import Candidate
from kgqa.kb.index import KBIndex
from kgqa.text import common_subsequence, without_mention


def peer_answer(index: KBIndex, question: str) -> Candidate | None:
    mentions = index.names.mentions(question)
    if not mentions:
        return None
    sid = mentions[0]
    rest = without_mention(question, index.names.surface(sid))

    def rank(item: tuple[int, str, str]) -> tuple:
        _, predicate, disambiguation = item
        cover = common_subsequence(rest, predicate)
        return -cover, -cover / len(predicate), predicate, disambiguation

    best = min(index.keys(sid), key=rank)
    return Candidate.from_fact(index.fact(best[0]), best[0], -rank(best)[0])
