"""Reranking: every key of the subjects the beam wrote, scored by the model and by the question's
wording, combined with weights fitted on held-out training questions.

Why: beam search keeps a handful of predicates per subject, and the look-ahead trades the model's
preference against the question's wording with one fixed weight for every question. Scoring every
predicate of the chosen subjects, and learning the trade-off, recovers answers the beam dropped.
The object a key gives is evidence too: a question that asks how many or when wants one holding
a digit, and no question asks for what it already says. No feature names a predicate (model
log-likelihood, how much of the predicate the question covers, the object's kind, ...), so
weights fitted on held-out predicates carry over to dev's and test's, which training never shows.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from kgqa.candidate import Candidate
from kgqa.errors import KgqaError
from kgqa.files import atomic_file
from kgqa.index import Answer, KBIndex
from kgqa.model import encode_questions, pad_targets, passes, target_log_probs
from kgqa.stepper import supports
from kgqa.synonyms import synonym_covered
from kgqa.target_tree import tree_log_likelihoods
from kgqa.text import common_subsequence, longest_common_substring, without_mention
from kgqa.tokenizer import Tokenizer

RERANKER = "reranker.json"
log = logging.getLogger("kgqa.rerank")
# Wordings that ask for a quantity or a time: their answers hold digits, whatever the predicate.
ASKS_NUMBER = re.compile("多少|几|哪一年|哪年|什么时候|何时|多大|多高|多长|多重|多久|年份|日期|时间|哪天")
DIGIT = re.compile(r"\d")


@dataclass
class Evidence:
    """What the features of one candidate key are computed from: the key's KB answer, the model's
    log-likelihood of it, and what the question's other candidates share (best cover, longest
    surface, the beam)."""

    question: str
    answer: Answer
    key: int
    log_likelihood: float
    target_tokens: int
    rest: str  # the question without this key's subject mention
    cover: int  # longest common subsequence of `rest` and the predicate
    best_cover: int  # the highest `cover` among the question's candidates
    longest_surface: int  # the longest subject surface among them
    beam_keys: list[int]
    asks_number: bool
    predicate_keys: int  # how many KB keys carry the predicate
    commoner_siblings: float  # share of the subject's other candidate predicates that more KB keys carry

    @property
    def obj(self) -> str:
        return self.answer.objects[0]  # the one an answer gives (Candidate.of); "" where the KB has an empty O


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


# Each feature by name, computed where it is named: the fitted weights are stored and loaded by
# these names, so adding, dropping or reordering one is one edit here.
FEATURES: dict[str, Callable[[Evidence], float]] = {
    # the model's log p(S [SEP] P [SEP] M [EOS] | question)
    "log_likelihood": lambda e: e.log_likelihood,
    # the same per target token: long predicates are not penalised
    "mean_log_likelihood": lambda e: e.log_likelihood / max(e.target_tokens, 1),
    # longest common subsequence with the question (mention removed) / |P|
    "predicate_covered": lambda e: e.cover / len(e.answer.predicate),
    # the same / |rest of the question|
    "question_covered": lambda e: e.cover / max(len(e.rest), 1),
    # 1 for the predicates with the question's highest subsequence count
    "best_cover": lambda e: float(e.cover == e.best_cover),
    # 1 when P occurs in the question as it is
    "literal": lambda e: float(e.answer.predicate in e.rest),
    # longest common substring with the question / |P|
    "substring": lambda e: longest_common_substring(list(e.answer.predicate), list(e.rest)) / len(e.answer.predicate),
    "predicate_chars": lambda e: len(e.answer.predicate),
    # subsequence of M in the question / |M|
    "disambiguation_covered": lambda e: _share(common_subsequence(e.question, e.answer.disambiguation),
                                               len(e.answer.disambiguation)),
    "has_disambiguation": lambda e: float(bool(e.answer.disambiguation)),
    "mention_chars": lambda e: len(e.answer.surface),
    # 1 for the longest of the candidate subjects
    "longest_mention": lambda e: float(len(e.answer.surface) == e.longest_surface),
    "in_beam": lambda e: float(e.key in e.beam_keys),
    "beam_first": lambda e: float(bool(e.beam_keys) and e.key == e.beam_keys[0]),
    # the object holds a digit and the question asks how many, how long, when
    "number_asked": lambda e: float(bool(DIGIT.search(e.obj))) * float(e.asks_number),
    # the object holds a digit
    "number": lambda e: float(bool(DIGIT.search(e.obj))),
    # 1 when the object occurs in the question as it is: asked for, not given
    "object_in_question": lambda e: float(bool(e.obj) and e.obj in e.question),
    # subsequence of the object in the question / |object|
    "object_covered": lambda e: _share(common_subsequence(e.question, e.obj), len(e.obj)),
    # the predicate's share said in the question as itself or a Cilin synonym (爱人 for 配偶)
    "synonym_covered": lambda e: synonym_covered(e.answer.predicate, e.rest),
    # the predicate's prominence: questions ask about common predicates more than rare ones, and a
    # subject's rarest predicates are the likeliest noise (log of the KB keys that carry it)
    "predicate_prominence": lambda e: float(np.log1p(e.predicate_keys)),
    "commoner_siblings": lambda e: e.commoner_siblings,
    "commonest_of_subject": lambda e: float(e.commoner_siblings == 0.0),
}
FEATURE_NAMES = tuple(FEATURES)


@dataclass
class Reranker:
    """A linear score over standardised features; a question's candidates are ranked by it."""

    mean: list[float]
    std: list[float]
    weights: list[float]
    features: tuple[str, ...] = FEATURE_NAMES

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((features - np.array(self.mean)) / np.array(self.std)) @ np.array(self.weights)

    def save(self, checkpoint: str) -> None:
        with atomic_file(os.path.join(checkpoint, RERANKER)) as out:
            json.dump(asdict(self), out, indent=1)

    @classmethod
    def load(cls, checkpoint: str) -> Reranker | None:
        """The checkpoint's reranker, its weights paired with features by name; None where it has
        none, or one fitted over other features."""
        path = os.path.join(checkpoint, RERANKER)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            names = list(saved.get("features", ()))
            if sorted(names) != sorted(FEATURE_NAMES):
                log.warning("%s was fitted over other features (another kgqa version): answering without it; "
                            "`kgqa fit-reranker` fits it again", path)
                return None
            fields = [np.asarray(saved[field], dtype=float) for field in ("mean", "std", "weights")]
            if any(values.shape != (len(names),) for values in fields):
                raise ValueError(f"expected {len(names)} numbers in mean, std and weights")
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise KgqaError(f"unreadable reranker ({type(error).__name__}: {error})", path) from None
        order = [names.index(name) for name in FEATURE_NAMES]
        return cls(*(values[order].tolist() for values in fields))

    @classmethod
    def fit(cls, examples: list[tuple[np.ndarray, int]], l2: float = 1e-3) -> Reranker:
        """Conditional logit: maximise each question's probability of its gold candidate.

        `examples` are (features of a question's candidates, index of the gold one); questions
        whose gold key is not among the candidates teach nothing and are left out by the caller.
        L-BFGS from zero weights on a convex loss: deterministic, no seed needed.
        """
        rows = np.concatenate([f for f, _ in examples])
        mean, std = rows.mean(0), rows.std(0) + 1e-6
        blocks = [torch.tensor((f - mean) / std, dtype=torch.float64) for f, _ in examples]
        width = max(len(b) for b in blocks)
        x = torch.zeros(len(blocks), width, len(FEATURE_NAMES), dtype=torch.float64)
        valid = torch.zeros(len(blocks), width, dtype=torch.bool)
        for i, block in enumerate(blocks):
            x[i, : len(block)] = block
            valid[i, : len(block)] = True
        gold = torch.tensor([g for _, g in examples])
        weights = torch.zeros(len(FEATURE_NAMES), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = (x @ weights).masked_fill(~valid, float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, gold) + l2 * weights.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(mean.tolist(), std.tolist(), weights.detach().tolist())


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


@torch.no_grad()
def log_likelihoods(model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str],
                    targets: list[list[list[int]]], tokens_per_pass: int = 2048) -> list[np.ndarray]:
    """(log p of the whole target, target tokens) per target token list, each question encoded once.

    T5-family models score each question's targets as one prefix tree (`target_tree`: every
    shared prefix computed once). Others (BART) score each target as a row, shortest first, in
    passes of about `tokens_per_pass` padded tokens: padded to the longest target of their own
    pass, not of the batch (target lengths run from 5 to 40 tokens, so a mixed pass spent most
    of its work on padding). The decoder is causal, so a target's log-probabilities do not
    depend on the padding after it."""
    if supports(model):
        return tree_log_likelihoods(model, tokenizer, questions, targets, tokens_per_pass)
    input_ids, attention = encode_questions(tokenizer, questions, device=model.device)
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    pairs = [(q, target) for q, keys in enumerate(targets) for target in keys]
    totals = np.zeros((len(pairs), 2))
    for chosen in passes([len(target) for _, target in pairs], tokens_per_pass):
        owner = torch.tensor([pairs[i][0] for i in chosen], device=model.device)
        labels = pad_targets([pairs[i][1] for i in chosen]).to(model.device)
        token_ll = target_log_probs(model, BaseModelOutput(last_hidden_state=hidden[owner]), attention[owner], labels,
                                    input_ids[owner])
        totals[chosen, 0] = token_ll.sum(-1).float().cpu().numpy()
        totals[chosen, 1] = (labels >= 0).sum(-1).cpu().numpy()
    out, at = [], 0
    for keys in targets:
        out.append(totals[at:at + len(keys)])
        at += len(keys)
    return out


def candidate_features(question: str, keys: list[int], answers: list[Answer], likelihoods: np.ndarray,
                       beam: list[Candidate], prominence: list[tuple[int, int]]) -> np.ndarray:
    """One row per key (`keys`, their `answers`, `prominence` as `KBIndex.prominence` gives it, in
    that order), one column per FEATURES name."""
    rests = [without_mention(question, answer.surface) for answer in answers]
    covers = [common_subsequence(rest, answer.predicate) for rest, answer in zip(rests, answers)]
    shared = {"question": question, "best_cover": max(covers), "beam_keys": [c.key for c in beam],
              "longest_surface": max(len(answer.surface) for answer in answers),
              "asks_number": bool(ASKS_NUMBER.search(question))}
    siblings: dict[int, list[int]] = {}
    for entity, count in prominence:
        siblings.setdefault(entity, []).append(count)
    rows = []
    for answer, key, (ll, length), rest, cover, (entity, count) in zip(answers, keys, likelihoods, rests, covers,
                                                                       prominence):
        others = siblings[entity]
        commoner = sum(other > count for other in others) / max(len(others) - 1, 1)
        evidence = Evidence(answer=answer, key=key, log_likelihood=ll, target_tokens=length, rest=rest, cover=cover,
                            predicate_keys=count, commoner_siblings=commoner, **shared)
        rows.append([feature(evidence) for feature in FEATURES.values()])
    return np.array(rows, dtype=np.float64)
