"""The library API the CLI calls: `KGQA.from_checkpoint(ckpt, kb).answer(questions)`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tqdm import tqdm
from transformers import PreTrainedModel

from kgqa.checkpoint import load_checkpoint
from kgqa.decoding import Candidate, constrained_generate
from kgqa.index import KBIndex, ensure_index
from kgqa.rerank import FEATURES, Reranker, candidate_features, candidate_groups, log_likelihoods
from kgqa.tokenizer import Tokenizer


@dataclass
class DecodeSettings:
    beams: int = 4
    top_k: int = 1
    restrict_mentions: bool = True
    lookahead: float = 1.0
    mention_lookahead: float = 2.0
    batch_size: int = 32
    rerank: bool = True  # where the checkpoint has a reranker


class KGQA:
    def __init__(self, model: PreTrainedModel, tokenizer: Tokenizer, index: KBIndex,
                 settings: DecodeSettings | None = None, reranker: Reranker | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.settings = settings or DecodeSettings()
        self.reranker = reranker

    @classmethod
    def from_checkpoint(cls, checkpoint: str, kb: str, index_dir: str | None = None,
                        settings: DecodeSettings | None = None, progress: bool = False) -> "KGQA":
        model, tokenizer, _ = load_checkpoint(checkpoint)
        return cls(model, tokenizer, ensure_index(kb, tokenizer, index_dir, progress=progress), settings,
                   Reranker.load(checkpoint))

    def answer(self, questions: list[str], progress: bool = False) -> list[list[Candidate]]:
        """Top-k KB candidates per question, in input order; [] where no KB key is reachable."""
        s = self.settings
        rerank = self.reranker is not None and s.rerank
        results: list[list[Candidate]] = []
        for start in tqdm(range(0, len(questions), s.batch_size), desc="answering", unit=" batches",
                          disable=not progress):
            batch = questions[start:start + s.batch_size]
            beams = self.beam(batch, top_k=s.beams if rerank else s.top_k)
            if rerank:
                beams = [self._ranked(groups, self.reranker.scores(features))
                         for groups, features in self.candidates(batch, beams)]
            results.extend(found[: s.top_k] for found in beams)
        return results

    def beam(self, questions: list[str], top_k: int) -> list[list[Candidate]]:
        s = self.settings
        return constrained_generate(
            self.model, self.tokenizer, self.index, questions, num_beams=s.beams, top_k=top_k,
            restrict_mentions=s.restrict_mentions, lookahead=s.lookahead, mention_lookahead=s.mention_lookahead)

    def candidates(self, questions: list[str], beams: list[list[Candidate]]) -> list[tuple[list[int], np.ndarray]]:
        """(KB keys, their reranking features) per question: the beam's keys and their subjects' others."""
        groups = [candidate_groups(self.index, q, beam) for q, beam in zip(questions, beams)]
        asked = [i for i, keys in enumerate(groups) if keys]
        found = log_likelihoods(self.model, self.tokenizer, self.index, [questions[i] for i in asked],
                                [groups[i] for i in asked]) if asked else []
        features = [np.zeros((0, len(FEATURES)))] * len(questions)
        for i, likelihoods in zip(asked, found):
            features[i] = candidate_features(self.index, questions[i], groups[i], likelihoods, beams[i])
        return list(zip(groups, features))

    def _ranked(self, groups: list[int], scores: np.ndarray) -> list[Candidate]:
        ranked = []
        for k in np.argsort(-scores, kind="stable"):
            answer = self.index.answer(groups[k])
            ranked.append(Candidate(answer.surface, answer.predicate, answer.disambiguation, answer.objects[0],
                                    float(scores[k]), groups[k]))
        return ranked
