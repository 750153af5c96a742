"""String similarity every step shares: how much of a question a KB string covers (the look-ahead,
the reranker, the peer and the metric), and the cues of a question's wording (the answer kinds, the
trained predicates' wording), in one place so they cannot drift apart. (When two strings
are the same is `kgqa.spelling`'s: the reading's rule and the scorer's.)

The longest common subsequence comes from rapidfuzz (C++, the same integer the textbook dynamic
programme gives): it runs for every predicate of every candidate subject of every question.
"""
from __future__ import annotations

from typing import Sequence

from rapidfuzz.distance import LCSseq


def common_subsequence(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (characters of strings, items of lists)."""
    return int(LCSseq.similarity(a, b))


def longest_common_substring(a: Sequence, b: Sequence) -> int:
    """Length of the longest run that `a` and `b` share, item for item."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def without_mention(question: str, surface: str) -> str:
    """The question with its first mention of the subject taken out: what is left to match the
    predicate against (the subject's own characters would otherwise count as cover)."""
    return question.replace(surface, "", 1)


def question_cues(rest: str) -> set[str]:
    """The cues of a question with its subject's mention taken out (`without_mention`): its
    characters and character pairs, what the answer kinds and the trained predicates' wording read."""
    return set(rest) | {rest[i:i + 2] for i in range(len(rest) - 1)}
