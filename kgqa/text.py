"""Text helpers every step shares: how much of a question a KB string covers (the look-ahead,
the reranker, the peer and the metric), and the whitespace folding of KgCLUE's scorer (the KB
reader, the metric, the calibrator's right-or-wrong), in one place so they cannot drift apart.

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


def fold_whitespace(text: str) -> str:
    """Runs of whitespace as one space, none at the ends: how KgCLUE's scorer reads a string, so
    an object stored this way compares equal to a gold answer."""
    return " ".join(text.split())


def normalize(text: str) -> str:
    """A string as KgCLUE's scorer compares it: lower case, whitespace folded."""
    return fold_whitespace(text.lower())
