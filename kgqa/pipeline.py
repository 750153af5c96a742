"""The library API the CLI calls: `KGQA.from_checkpoint(ckpt, kb).answer(questions)`."""
from __future__ import annotations


import numpy as np

from tqdm import tqdm
from transformers import PreTrainedModel

from kgqa.checkpoint import load_checkpoint
from kgqa.candidate import Candidate
from kgqa.decoding import constrained_generate
from kgqa.index import KBIndex
from kgqa.indexer import ensure_index
from kgqa.model import pick_device
from kgqa.rerank import FEATURE_NAMES, Reranker, candidate_features, candidate_keys, log_likelihoods
from kgqa.settings import DecodeSettings
from kgqa.tokenizer import Tokenizer


class KGQA:
    def __init__(self, model: PreTrainedModel, tokenizer: Tokenizer, index: KBIndex,
                 settings: DecodeSettings | None = None, reranker: Reranker | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.settings = settings or DecodeSettings()
        self.reranker = reranker
        self.checkpoint: str | None = None  # the directory it was loaded from, if any

    @property
    def reranking(self) -> bool:
        return self.reranker is not None and self.settings.rerank

    @classmethod
    def from_checkpoint(cls, checkpoint: str, kb: str, index_dir: str | None = None,
                        settings: DecodeSettings | None = None, progress: bool = False,
                        device: str = "auto") -> "KGQA":
        """`device`: where the model runs (auto: a GPU where one is present); the KB index and the
        trie stay in host memory, and each decoding step sends its allowed tokens over once."""
        model, tokenizer, _ = load_checkpoint(checkpoint)
        model.to(pick_device(device))
        qa = cls(model, tokenizer, ensure_index(kb, tokenizer, index_dir, progress=progress), settings,
                 Reranker.load(checkpoint))
        qa.checkpoint = checkpoint
        return qa

    def answer(self, questions: list[str], progress: bool = False) -> list[list[Candidate]]:
        """Top-k KB candidates per question, in input order; [] where no KB key is reachable."""
        s = self.settings
        rerank = self.reranking
        results: list[list[Candidate]] = []
        for start in tqdm(range(0, len(questions), s.batch_size), desc="answering", unit=" batches",
                          disable=not progress):
            batch = questions[start:start + s.batch_size]
            beams = self.beam(batch, top_k=s.beams if rerank else s.top_k)
            if rerank:
                beams = [self._ranked(keys, self.reranker.scores(features))
                         for keys, features in self.candidates(batch, beams)]
            results.extend(found[: s.top_k] for found in beams)
        return results

    def explain(self, question: str) -> dict:
        """How one answer was reached, as JSON-ready data: the KB mentions found in the question,
        the beam's keys (model + look-ahead), every candidate key with its reranker features and
        score, and the homonyms of the chosen subject with whether each has the chosen predicate."""
        beam = self.beam([question], top_k=self.settings.beams)[0]
        keys, features = self.candidates([question], [beam])[0]
        rerank = self.reranking
        scores = self.reranker.scores(features) if rerank and keys else np.zeros(len(keys))
        order = np.argsort(-scores, kind="stable") if rerank else np.arange(len(keys))  # the beam's keys lead
        ranked = [(Candidate.of(self.index, keys[k], float(scores[k])), features[k]) for k in order]
        chosen = ranked[0][0] if ranked else None
        homonyms: dict[str, bool] = {}
        if chosen:
            for _, predicate, disambiguation in self.index.keys(self.index.surfaces[chosen.surface]):
                homonyms[disambiguation] = homonyms.get(disambiguation, False) or predicate == chosen.predicate
        return {
            "question": question,
            "answer": chosen.answer() if chosen else "",
            "mentions": [self.index.surface(sid) for sid in self.index.mentions(question)],
            "beam": [c.as_json() for c in beam],
            "candidates": [{**c.as_json(), "features": {name: round(float(v), 4) for name, v in zip(FEATURE_NAMES, row)}}
                           for c, row in ranked],
            "homonyms": [{"disambiguation": m, "has_predicate": has, "chosen": m == chosen.disambiguation}
                         for m, has in homonyms.items()],
            "reranked": rerank,
        }

    def beam(self, questions: list[str], top_k: int) -> list[list[Candidate]]:
        return constrained_generate(self.model, self.tokenizer, self.index, questions, self.settings, top_k)

    def candidates(self, questions: list[str], beams: list[list[Candidate]]) -> list[tuple[list[int], np.ndarray]]:
        """(KB keys, their reranking features) per question: the beam's keys and their subjects' others."""
        keys = [candidate_keys(self.index, q, beam) for q, beam in zip(questions, beams)]
        answers = [[self.index.answer(key) for key in chosen] for chosen in keys]
        asked = [i for i, chosen in enumerate(keys) if chosen]
        targets = [[self.tokenizer.encode_target(a.surface, a.predicate, a.disambiguation) for a in answers[i]]
                   for i in asked]
        found = log_likelihoods(self.model, self.tokenizer, [questions[i] for i in asked], targets) if asked else []
        features = [np.zeros((0, len(FEATURE_NAMES)))] * len(questions)
        for i, likelihoods in zip(asked, found):
            features[i] = candidate_features(questions[i], keys[i], answers[i], likelihoods, beams[i])
        return list(zip(keys, features))

    def _ranked(self, keys: list[int], scores: np.ndarray) -> list[Candidate]:
        return [Candidate.of(self.index, keys[k], float(scores[k])) for k in np.argsort(-scores, kind="stable")]
