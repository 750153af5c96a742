"""Answer kinds: how well what a question asks for fits what a predicate holds.

A predicate's *profile* is the share of its objects across the whole KB (a seeded sample the
index keeps, `KBIndex.predicate_objects`) that show each *form*: a length band, the first and
last characters, the character after a number (its unit) and before one, and each character,
with digit runs read as `0` and Latin runs as `a` (`3200000ly` -> `0a`). Which forms count is
learned from the KB: the commonest across its predicates. A question's *cues* are the characters
and character pairs left once its subject's mention is taken out.

`AnswerKinds` gives each (cue, form) pair one weight, learned on train's questions: each one's
gold predicate against every other predicate of its subject (conditional logit). No weight names
a predicate, so what it learns (多远 wants a profile with 公里 or `0a`; 在哪里 one ending in 路 or 号;
谁 a short one) carries over to dev's and test's predicates, which training never shows; the
reranker reads the score as a feature (`features.py`).
"""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from kgqa.data import Pairs
from kgqa.rank.storage import read_fitted, unreadable, write_fitted
from kgqa.kb.index import KBIndex
from kgqa.kb.triples import Fact
from kgqa.text import question_cues, without_mention

FORMS = 2000  # the commonest forms across the KB's predicates
MIN_CUE_COUNT = 3  # cues seen in fewer train questions than this teach noise
EPOCHS, BATCH, LEARNING_RATE, WEIGHT_DECAY = 3, 64, 1e-2, 1e-4
PROFILE_CACHE = 50_000  # predicates whose profile is kept once read (about 40 MB)
log = logging.getLogger("kgqa.rank.answer_kinds")


_DIGITS, _LATIN, _UNIT, _BEFORE = re.compile(r"\d+"), re.compile(r"[A-Za-z]+"), re.compile("0(.)"), re.compile("(.)0")


def object_forms(obj: str) -> set[str]:
    """The forms one object shows (see the module's docstring)."""
    folded = _LATIN.sub("a", _DIGITS.sub("0", obj))
    forms = {f"length {min(len(obj).bit_length(), 6)}"}
    if folded:
        forms.update((f"first {folded[0]}", f"last {folded[-1]}", f"last {folded[-2:]}"))
    forms.update(["unit " + m for m in _UNIT.findall(folded)])
    forms.update(["before " + m for m in _BEFORE.findall(folded)])
    forms.update(["has " + c for c in folded])
    return forms


@dataclass
class AnswerKinds:
    """Weights of (cue, form) pairs: row 0 is for a question with no known cue."""

    cues: list[str]
    forms: list[str]
    weights: np.ndarray  # (len(cues) + 1, len(forms))
    _cue_ids: dict[str, int] = field(init=False, repr=False)
    _form_ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cue_ids = {cue: i + 1 for i, cue in enumerate(self.cues)}
        self._form_ids = {form: i for i, form in enumerate(self.forms)}
        # per instance, as KBIndex keeps its tail tries: a cache on the method would outlive it
        self.profile = functools.lru_cache(maxsize=PROFILE_CACHE)(self._profile)

    def cue_ids(self, question: str, surface: str) -> list[int]:
        found = [self._cue_ids[c] for c in question_cues(without_mention(question, surface)) if c in self._cue_ids]
        return sorted(found) or [0]

    def _profile(self, index: KBIndex, predicate: str) -> tuple[np.ndarray, np.ndarray]:
        """(form ids, share of the predicate's sampled objects showing each) over the whole KB;
        read through `profile`, which keeps the last PROFILE_CACHE."""
        objects = index.predicates.objects(predicate)
        counts = Counter(self._form_ids[f] for obj in objects for f in object_forms(obj) if f in self._form_ids)
        ids = np.array(sorted(counts), dtype=np.int16 if len(self.forms) < 2 ** 15 else np.int64)
        return ids, np.array([counts[i] for i in ids], dtype=np.float32) / max(len(objects), 1)

    def scores(self, index: KBIndex, question: str, facts: list[Fact]) -> np.ndarray:
        """How well each fact's predicate fits what the question asks for (higher: better)."""
        asked: dict[str, np.ndarray] = {}
        out = np.zeros(len(facts))
        for k, fact in enumerate(facts):
            if fact.surface not in asked:
                asked[fact.surface] = self.weights[self.cue_ids(question, fact.surface)].mean(0)
            ids, shares = self.profile(index, fact.predicate)
            out[k] = float(asked[fact.surface][ids] @ shares)
        return out

    def save(self, checkpoint: str) -> None:
        write_fitted(checkpoint, "answer_kinds", {"cues": np.array(self.cues, dtype=str),
                                                  "forms": np.array(self.forms, dtype=str),
                                                  "weights": self.weights.astype(np.float32)})

    @classmethod
    def load(cls, checkpoint: str) -> AnswerKinds | None:
        """The checkpoint's answer kinds; None where it has none (fitted by an older kgqa)."""
        saved = read_fitted(checkpoint, "answer_kinds", "answer kinds", ("cues", "forms", "weights"))
        if saved is None:
            return None
        cues, forms, weights = list(saved["cues"]), list(saved["forms"]), saved["weights"]
        if weights.shape != (len(cues) + 1, len(forms)):
            raise unreadable(checkpoint, "answer_kinds", "answer kinds",
                             f"weights of shape {weights.shape} for {len(cues)} cues and {len(forms)} forms")
        return cls([str(c) for c in cues], [str(f) for f in forms], weights)


def kb_forms(index: KBIndex, limit: int = FORMS) -> list[str]:
    """The `limit` forms that the most predicates' sampled objects show (ties by name)."""
    counts: Counter[str] = Counter()
    for predicate in index.predicates.names():
        counts.update(set().union(*map(object_forms, index.predicates.objects(predicate))))
    return [form for form, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def _subject_predicates(index: KBIndex, surface: str, disambiguation: str) -> list[str]:
    """Every predicate of a subject (surface and disambiguation), in the index's order."""
    sid = index.names.surface_id(surface)
    if sid is None:
        return []
    return [p for _, p, m in index.keys(sid) if m == disambiguation]


def fit_answer_kinds(index: KBIndex, pairs: Pairs, seed: int = 0) -> AnswerKinds | None:
    """Answer kinds learned on (question, gold target) pairs (train's, `data.training_pairs`):
    each gold predicate against its subject's others, over the KB `index` holds. None where no
    question's gold key is in it with another predicate beside it."""
    lists = []
    for question, (surface, predicate, disambiguation, _) in pairs:
        predicates = _subject_predicates(index, surface, disambiguation)
        if predicate in predicates and len(predicates) > 1:
            lists.append((question, surface, predicates, predicates.index(predicate)))
    if not lists:
        return None
    cue_counts = Counter(c for question, surface, _, _ in lists
                         for c in question_cues(without_mention(question, surface)))
    kinds = AnswerKinds(sorted(c for c, n in cue_counts.items() if n >= MIN_CUE_COUNT), kb_forms(index),
                        np.zeros((0, 0), np.float32))
    torch.manual_seed(seed)
    table = torch.nn.EmbeddingBag(len(kinds.cues) + 1, len(kinds.forms), mode="mean")
    torch.nn.init.zeros_(table.weight)
    optimizer = torch.optim.Adam(table.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    examples = [(kinds.cue_ids(question, surface), [kinds.profile(index, p) for p in predicates], gold)
                for question, surface, predicates, gold in lists]
    shuffle = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        order = shuffle.permutation(len(examples))
        for start in range(0, len(examples), BATCH):
            batch = [examples[i] for i in order[start:start + BATCH]]
            loss = torch.nn.functional.cross_entropy(_logits(table, batch), torch.tensor([g for _, _, g in batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    kinds.weights = table.weight.detach().numpy().copy()
    return kinds


def _logits(table: torch.nn.EmbeddingBag, batch: list[tuple[list[int], list[tuple[np.ndarray, np.ndarray]], int]]
            ) -> torch.Tensor:
    """(questions, most predicates) scores of each question's subject's predicates; -inf pads."""
    cues = torch.tensor([c for ids, _, _ in batch for c in ids])
    offsets = torch.tensor(np.cumsum([0] + [len(ids) for ids, _, _ in batch[:-1]]))
    asked = table(cues, offsets)
    width = max(len(profiles) for _, profiles, _ in batch)
    rows, cols, shares, slots = [], [], [], []
    for b, (_, profiles, _) in enumerate(batch):
        for c, (ids, values) in enumerate(profiles):
            rows.append(np.full(len(ids), b))
            cols.append(ids)
            shares.append(values)
            slots.append(np.full(len(ids), b * width + c))
    rows_t, cols_t = torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols)).long()
    flat = torch.zeros(len(batch) * width).index_add_(
        0, torch.from_numpy(np.concatenate(slots)), asked[rows_t, cols_t] * torch.from_numpy(np.concatenate(shares)))
    valid = torch.zeros(len(batch), width, dtype=torch.bool)
    for b, (_, profiles, _) in enumerate(batch):
        valid[b, : len(profiles)] = True
    return flat.view(len(batch), width).masked_fill(~valid, float("-inf"))
