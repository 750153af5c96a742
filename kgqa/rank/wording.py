"""Which two-character words are a question's own wording rather than a name, learned from train.

Ordinary words sound like many short KB names (说明 ≈ 说冥, 什么 ≈ 甚么, 是谁 ≈ 问世), so a
two-character span that sounds like a KB name is read as that name (a near reading, `kgqa.reading`)
only where it is not the way questions are worded: where its characters, as typed, are a bigram
that at least `ORDINARY` of train's questions hold outside their subject's name. The counts are of
spelling keys (`spelling.fold`), so a question typed in traditional characters or full-width is
judged as one typed as the KB spells, and are per question (一个一个 counts once).

The same counts say whether a name the question is read as is the whole of what it names: where
the characters just beside it are no wording either (酸碱|灭火器, 中国|面孔第三季), the KB name is
likely part of a longer one the KB lacks (`Wording.beside`, a signal of the confidence).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from kgqa.data import Pairs
from kgqa.rank.storage import read_fitted, unreadable, write_fitted
from kgqa.spelling import fold, is_han

ORDINARY = 5  # train's questions holding a bigram outside their subject for it to be wording
# `Wording.beside` of a name at the question's edge, or beside a mark, a digit or a Latin letter: as
# plainly bounded as beside the commonest wording
BOUNDED = math.log1p(1000)


@dataclass
class Wording:
    """Per bigram (spelling keys): how many of train's questions hold it outside their subject's name."""

    counts: dict[str, int]

    def ordinary(self, typed: str) -> bool:
        """Whether `typed` (a span of a question, as typed) is a bigram of ordinary question wording."""
        key = fold(typed)
        return len(key) == 2 and self.counts.get(key, 0) >= ORDINARY

    def beside(self, question: str, name: str) -> float:
        """How plainly `name`'s first mention in `question` is bounded: of the two characters
        just before it and the two just after, the less ordinary pair's log count of train's
        questions (`BOUNDED` for a side at the question's edge or beside anything not Chinese;
        also where the question does not spell the name). Low where the name runs on into other
        name-like characters: the question likely names something longer the KB lacks."""
        text, key = fold(question), fold(name)
        at = text.find(key) if key else -1
        if at < 0:
            return BOUNDED
        pairs = (text[at - 2:at] if at >= 2 else "", text[at + len(key):at + len(key) + 2])
        return min(math.log1p(self.counts.get(pair, 0)) if len(pair) == 2 and all(map(is_han, pair)) else BOUNDED
                   for pair in pairs)

    def save(self, checkpoint: str) -> None:
        bigrams = sorted(self.counts)
        write_fitted(checkpoint, "wording", {"bigrams": np.array(bigrams, dtype=str),
                                             "questions": [self.counts[b] for b in bigrams]})

    @classmethod
    def load(cls, checkpoint: str) -> Wording | None:
        """The checkpoint's wording counts; None where it has none (fitted by an older kgqa)."""
        saved = read_fitted(checkpoint, "wording", "question wording", ("bigrams", "questions"))
        if saved is None:
            return None
        bigrams, questions = saved["bigrams"], saved["questions"]
        if not (bigrams.shape == questions.shape and bigrams.ndim == 1):
            raise unreadable(checkpoint, "wording", "question wording", "bigrams and questions differ in shape")
        return cls({str(b): int(n) for b, n in zip(bigrams, questions)})


def fit_wording(pairs: Pairs) -> Wording:
    """Bigram counts over (question, gold target) pairs (train's, `data.training_pairs`): each
    question's bigrams between and around the mentions of its subject's name, once per question."""
    counts: Counter[str] = Counter()
    for question, gold in pairs:
        pieces = [fold(piece) for piece in (question.split(gold.surface) if gold.surface else [question])]
        counts.update({piece[i:i + 2] for piece in pieces for i in range(len(piece) - 1)})
    return Wording(dict(sorted(counts.items())))
