"""The library API the CLI calls: `Source(checkpoint, kb).open().ask(questions)`: questions in,
each one's ranked KB candidates out (`kgqa.explanation.explain(qa, question)`: one answer with the
evidence behind it)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from tqdm import tqdm
from transformers import PreTrainedModel

from kgqa.decode.generate import constrained_generate
from kgqa.settings import DecodeSettings
from kgqa.errors import KgqaError
from kgqa.kb.index import KBIndex
from kgqa.model.int8 import quantized_int8
from kgqa.model.stepper import Encoded
from kgqa.model.tokenizer import Tokenizer
from kgqa.candidate import Candidate
from kgqa.rank.fitted import Fitted
from kgqa.rank.candidate_keys import candidate_keys
from kgqa.rank.features import CandidateSet
from kgqa.rank.likelihoods import key_and_object_log_probs
from kgqa.reading import NEAR_TRUST, Reading, near_chosen, read


# a question naming no KB subject (no name found in it, exactly or near) asks about something the KB
# lacks, or names it past recognition: its best candidate is about a subject it does not name, a guess
UNNAMED_TRUST = 0.0


class KGQA:
    """Questions in, each one's KB candidates out, ranked, with their confidence."""

    def __init__(self, model: PreTrainedModel, tokenizer: Tokenizer, index: KBIndex,
                 settings: DecodeSettings | None = None, fitted: Fitted | None = None, object_tokens: int = 0) -> None:
        """`fitted`: the checkpoint's fitted models (`Fitted.load`; none: the beam's order, no confidence);
        `settings.min_confidence` None: the calibrator's refusal threshold; `object_tokens`: the object
        tokens it was trained to write after a key (`TrainConfig.object_tokens`), scored with each key."""
        self.settings, self.fitted = settings or DecodeSettings(), fitted or Fitted()
        if self.settings.min_confidence is None:  # the checkpoint's refusal threshold, where it has a calibrator
            refuse_below = self.fitted.calibrator.refuse_below if self.calibrated else 0.0
            self.settings = replace(self.settings, min_confidence=refuse_below)
        if self.settings.min_confidence > 0 and not self.calibrated:
            raise KgqaError("a minimum confidence needs a checkpoint with a reranker and a confidence calibrator "
                            "(`kgqa fit-reranker` fits both)")
        on_cpu = model.device.type == "cpu"
        self.model = quantized_int8(model.eval()) if self.settings.int8 and on_cpu else model.eval()
        self.tokenizer = tokenizer
        self.index = index
        if self.fitted.channel is not None:  # it reads every candidate, beside the model
            self.fitted.channel.to(model.device)
        self.checkpoint: str | None = None  # the directory it was loaded from, if any
        self.object_tokens = object_tokens

    @property
    def reranking(self) -> bool:
        return self.fitted.reranker is not None and self.settings.rerank

    @property
    def calibrated(self) -> bool:
        """Whether its answers carry a confidence: a reranker ranks them and a calibrator reads it."""
        return self.reranking and self.fitted.calibrator is not None

    def follow_index(self) -> bool:
        """Switch to the index swapped into this one's directory since it was opened (an update, a
        rebuild), if one was and can be taken (`KBIndex.followed`): True where it switched."""
        opened = self.index.followed(self.tokenizer)
        if opened is not None:
            self.index = opened
            self.fitted.forget_index()
        return opened is not None

    def ask(self, questions: list[str], progress: bool = False) -> list[list[Candidate]]:
        """Top-k KB candidates per question, best first, in input order; [] where no KB key is
        reachable. The first one's `answer()` is the question's answer (`candidate.best_answer`)."""
        s = self.settings
        results: list[list[Candidate]] = []
        for start in tqdm(range(0, len(questions), s.batch_size), desc="answering", unit=" batches",
                          disable=not progress or None):  # None: no bar where stderr is no terminal (a log)
            batch = questions[start:start + s.batch_size]
            if self.reranking:
                results.extend([c for c, _ in self.ranked(candidate_set, s.top_k)]
                               for candidate_set in self.candidate_sets(batch))
            else:
                results.extend(self.beam(self.read(batch), s.top_k))
        return results

    def read(self, questions: list[str]) -> list[Reading]:
        """Each question read against the KB: the text the model reads, its KB names in the KB's
        spelling however they were typed (`kgqa.reading`)."""
        return [read(self.index, question, self.fitted.ordinary) for question in questions]

    def beam(self, readings: list[Reading], returned: int, encoded: Encoded | None = None) -> list[list[Candidate]]:
        """The constrained beam's first `returned` KB keys per question, best first (`encoded`: the
        questions already read by the encoder, `Encoded.of`)."""
        return constrained_generate(self.model, self.tokenizer, self.index, [r.text for r in readings], self.settings,
                                    returned, encoded, [r.mentions for r in readings])

    def candidate_sets(self, questions: list[str] | list[Reading]) -> list[CandidateSet]:
        """Each question's candidate keys (its beam's keys and their subjects' others) with their
        evidence and reranking features, from the reading `read_and_chosen` chooses."""
        readings = [q if isinstance(q, Reading) else self.read([q])[0] for q in questions]
        return self.read_and_chosen(readings)[1]

    def read_and_chosen(self, readings: list[Reading]) -> tuple[list[Reading], list[CandidateSet]]:
        """Each question's reading and its candidate set: the reading as gated, or a near one where
        its answer is about the near name and surer by `near_margin` (`reading.near_chosen`), then
        trusted `NEAR_TRUST`; near readings only with a calibrator to weigh them (else as gated)."""
        sets = self._read_once(readings)
        if not self.calibrated:
            return list(readings), sets
        readings, sets, taken = near_chosen(readings, sets, self._surest, self._read_once, self.settings.near_margin)
        for i in taken:
            sets[i].trust = NEAR_TRUST
        return readings, sets

    def _surest(self, candidate_set: CandidateSet) -> tuple[str, float]:
        """The subject surface of a candidate set's best candidate and its confidence (nothing and 0
        where it has none)."""
        ranked = self.ranked(candidate_set, 1)
        return (ranked[0][0].surface, ranked[0][0].confidence) if ranked else ("", 0.0)

    def _read_once(self, readings: list[Reading]) -> list[CandidateSet]:
        """The readings' candidate sets, their texts encoded once for the beam and the likelihoods
        (trusted not at all where the reading names no KB subject: `UNNAMED_TRUST`). A near reading
        is asked only whether its answer is about its near name: one whose beam writes no key of it
        gets no candidates (the model reads the question as about another name)."""
        if not readings:
            return []
        questions = [r.text for r in readings]
        encoded = Encoded.of(self.model, self.tokenizer, questions, self.settings.max_question_tokens)
        beams = self.beam(readings, self.settings.beams, encoded)
        keys = [candidate_keys(self.index, r.text, beam, r.mentions)
                if not r.near_name or any(c.surface == r.near_name for c in beam) else []
                for r, beam in zip(readings, beams)]
        facts = [[self.index.fact(key) for key in chosen] for chosen in keys]
        likelihoods = key_and_object_log_probs(self.model, self.tokenizer, questions, facts, self.object_tokens,
                                               self.settings.max_question_tokens, encoded)
        gains = self.fitted.channel_gains(questions, facts)
        return [CandidateSet(q, chosen, question_facts, beam, {
                    "likelihoods": scored, "channel": gain, **self.fitted.evidence(self.index, q, question_facts),
                    "prominence": np.array([self.index.prominence(key) for key in chosen]).reshape(-1, 3)},
                    trust=1.0 if r.mentions else UNNAMED_TRUST)
                for r, q, chosen, question_facts, scored, beam, gain in zip(readings, questions, keys, facts, likelihoods,
                                                                            beams, gains)]

    def ranked(self, candidate_set: CandidateSet, first: int | None = None) -> list[tuple[Candidate, np.ndarray]]:
        """A question's first `first` (None: all) candidates with their feature rows, in
        `Fitted.rank`'s order, with their confidence where there is a calibrator."""
        return self.fitted.rank(candidate_set, self.reranking, first).candidates(candidate_set, first)
