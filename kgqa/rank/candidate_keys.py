"""Which KB keys a question's candidates are: the beam's, then the other keys of the beam's
first subjects and of the longest KB mention in the question, those whose predicate covers more
of the question first. The reranker (`features.py`, `reranker.py`) then orders them."""
from __future__ import annotations

from kgqa.candidate import Candidate
from kgqa.kb.index import KBIndex
from kgqa.text import common_subsequence


def candidate_keys(index: KBIndex, question: str, beam: list[Candidate], mentions: list[int],
                   surfaces: int = 2, limit: int = 64) -> list[int]:
    """The beam's keys, then the other keys of its first `surfaces` subjects and of the longest
    KB mention in the question (the first of `mentions`, the question's subjects longest first:
    the peer's subject), those whose predicate covers more of the question first, up to `limit`
    keys in all."""
    chosen = [c.key for c in beam]
    sids: list[int] = []
    for c in beam:
        sid = index.surface_of(c.key)
        if sid not in sids and len(sids) < surfaces:
            sids.append(sid)
    longest = mentions[:1]
    if beam and longest and longest[0] not in sids:
        sids.append(longest[0])
    others = [(key, p) for sid in sids for key, p, _ in index.keys(sid) if key not in chosen]
    others.sort(key=lambda item: (-common_subsequence(question, item[1]), item[1], item[0]))
    return (chosen + [key for key, _ in others])[:limit]
