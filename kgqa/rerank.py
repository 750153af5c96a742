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
import os
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from kgqa.decoding import Candidate, common_subsequence, encode_questions
from kgqa.errors import KgqaError
from kgqa.files import atomic_file
from kgqa.index import Answer, KBIndex
from kgqa.metrics import longest_common_substring
from kgqa.model import CopyT5
from kgqa.tokenizer import Tokenizer

RERANKER = "reranker.json"
FEATURES = (
    "log_likelihood",  # the model's log p(S [SEP] P [SEP] M [EOS] | question)
    "mean_log_likelihood",  # the same per target token: long predicates are not penalised
    "predicate_covered",  # longest common subsequence with the question (mention removed) / |P|
    "question_covered",  # the same / |rest of the question|
    "best_cover",  # 1 for the predicates with the question's highest subsequence count
    "literal",  # 1 when P occurs in the question as it is
    "substring",  # longest common substring with the question / |P|
    "predicate_chars",
    "disambiguation_covered",  # subsequence of M in the question / |M|
    "has_disambiguation",
    "mention_chars",
    "longest_mention",  # 1 for the longest of the candidate subjects
    "in_beam",
    "beam_first",
    "number_asked",  # the object holds a digit and the question asks how many, how long, when
    "number",  # the object holds a digit
    "object_in_question",  # 1 when the object occurs in the question as it is: asked for, not given
    "object_covered",  # subsequence of the object in the question / |object|
)
# Wordings that ask for a quantity or a time: their answers hold digits, whatever the predicate.
ASKS_NUMBER = re.compile("多少|几|哪一年|哪年|什么时候|何时|多大|多高|多长|多重|多久|年份|日期|时间|哪天")
DIGIT = re.compile(r"\d")


@dataclass
class Reranker:
    """A linear score over standardised features; a question's candidates are ranked by it."""

    mean: list[float]
    std: list[float]
    weights: list[float]
    features: tuple[str, ...] = FEATURES

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((features - np.array(self.mean)) / np.array(self.std)) @ np.array(self.weights)

    def save(self, checkpoint: str) -> None:
        with atomic_file(os.path.join(checkpoint, RERANKER)) as out:
            json.dump(asdict(self), out, indent=1)

    @classmethod
    def load(cls, checkpoint: str) -> Reranker | None:
        """The checkpoint's reranker; None where it has none, or one over other features."""
        path = os.path.join(checkpoint, RERANKER)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            if tuple(saved.get("features", ())) != FEATURES:
                return None
            reranker = cls(saved["mean"], saved["std"], saved["weights"])
            widths = {len(np.asarray(v, dtype=float)) for v in (reranker.mean, reranker.std, reranker.weights)}
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise KgqaError(f"unreadable reranker ({type(error).__name__}: {error})", path) from None
        if widths != {len(FEATURES)}:
            raise KgqaError(f"unreadable reranker (expected {len(FEATURES)} weights per field)", path)
        return reranker

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
        x = torch.zeros(len(blocks), width, len(FEATURES), dtype=torch.float64)
        valid = torch.zeros(len(blocks), width, dtype=torch.bool)
        for i, block in enumerate(blocks):
            x[i, : len(block)] = block
            valid[i, : len(block)] = True
        gold = torch.tensor([g for _, g in examples])
        weights = torch.zeros(len(FEATURES), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = (x @ weights).masked_fill(~valid, float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, gold) + l2 * weights.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(mean.tolist(), std.tolist(), weights.detach().tolist())


def candidate_groups(index: KBIndex, question: str, beam: list[Candidate], surfaces: int = 2,
                     limit: int = 64) -> list[int]:
    """The beam's keys, then the other keys of its first `surfaces` subjects and of the longest
    KB mention in the question (the peer's subject), those whose predicate covers more of the
    question first, up to `limit` keys in all."""
    chosen = [c.group for c in beam]
    sids: list[int] = []
    for c in beam:
        sid = int(index.ent_sid[int(index.grp_ent[c.group])])
        if sid not in sids and len(sids) < surfaces:
            sids.append(sid)
    longest = index.mentions(question)[:1]
    if beam and longest and longest[0] not in sids:
        sids.append(longest[0])
    others = [(group, p) for sid in sids for group, p, _ in index.groups(sid) if group not in chosen]
    others.sort(key=lambda item: (-common_subsequence(question, item[1]), item[1], item[0]))
    return (chosen + [group for group, _ in others])[:limit]


@torch.no_grad()
def log_likelihoods(model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str],
                    targets: list[list[list[int]]], rows_per_pass: int = 512) -> list[np.ndarray]:
    """(log p of the whole target, target tokens) per target token list, each question encoded once."""
    input_ids, attention = encode_questions(tokenizer, questions)
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    pairs = [(q, target) for q, keys in enumerate(targets) for target in keys]
    totals = np.zeros((len(pairs), 2))
    for start in range(0, len(pairs), rows_per_pass):
        chunk = pairs[start:start + rows_per_pass]
        owner = torch.tensor([q for q, _ in chunk])
        labels = torch.full((len(chunk), max(len(t) for _, t in chunk)), -100, dtype=torch.long)
        for i, (_, target) in enumerate(chunk):
            labels[i, : len(target)] = torch.tensor(target)
        extra = {"source_ids": input_ids[owner]} if isinstance(model, CopyT5) else {}
        logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden[owner]),
                       attention_mask=attention[owner], labels=labels, **extra).logits
        scored = labels.clamp_min(0).unsqueeze(-1)
        token_ll = logits.log_softmax(-1).gather(-1, scored).squeeze(-1).masked_fill(labels < 0, 0.0)
        totals[start:start + len(chunk), 0] = token_ll.sum(-1).numpy()
        totals[start:start + len(chunk), 1] = (labels >= 0).sum(-1).numpy()
    out, at = [], 0
    for keys in targets:
        out.append(totals[at:at + len(keys)])
        at += len(keys)
    return out


def candidate_features(question: str, groups: list[int], answers: list[Answer], likelihoods: np.ndarray,
                       beam: list[Candidate]) -> np.ndarray:
    """One row of FEATURES per key (`groups`, their `answers`), in that order."""
    covers = []
    for answer in answers:
        rest = question.replace(answer.surface, "", 1)
        covers.append((rest, common_subsequence(rest, answer.predicate)))
    best_cover = max(cover for _, cover in covers)
    longest = max(len(answer.surface) for answer in answers)
    beam_groups = [c.group for c in beam]
    rows = []
    asks_number = float(bool(ASKS_NUMBER.search(question)))
    for answer, (rest, cover), (ll, length), group in zip(answers, covers, likelihoods, groups):
        p, m = answer.predicate, answer.disambiguation
        o = answer.objects[0]  # the one an answer gives (Candidate.of); "" where the KB has an empty O
        number = float(bool(DIGIT.search(o)))
        rows.append([
            ll, ll / max(length, 1), cover / len(p), cover / max(len(rest), 1), float(cover == best_cover),
            float(p in rest), longest_common_substring(list(p), list(rest)) / len(p), len(p),
            common_subsequence(question, m) / len(m) if m else 0.0, float(bool(m)), len(answer.surface),
            float(len(answer.surface) == longest), float(group in beam_groups),
            float(bool(beam_groups) and group == beam_groups[0]),
            number * asks_number, number, float(bool(o) and o in question),
            common_subsequence(question, o) / len(o) if o else 0.0,
        ])
    return np.array(rows, dtype=np.float64)
