"""The library API the CLI calls: `KGQA.from_checkpoint(ckpt, kb).answer(questions)`."""
from __future__ import annotations


import numpy as np

from tqdm import tqdm
from transformers import PreTrainedModel

from kgqa.model.checkpoint import load_checkpoint
from kgqa.rank.candidate import Candidate
from kgqa.decode.generate import constrained_generate
from kgqa.kb.index import KBIndex
from kgqa.kb.build import ensure_index
from kgqa.model.seq2seq import pick_device
from kgqa.model.likelihood import log_likelihoods
from kgqa.rank.candidate import candidate_keys
from kgqa.rank.features import FEATURE_NAMES, candidate_features
from kgqa.rank.reranker import Reranker
from kgqa.decode.settings import DecodeSettings
from kgqa.model.tokenizer import Tokenizer


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
        """The answer and how it was reached, as JSON-ready data, from one decode: `top` (what
        `answer` gives), the KB mentions in the question, the beam's keys (model + look-ahead),
        every candidate key with its reranker features and score, the chosen subject's
        neighbourhood in the KB (its predicates and objects, the chosen edge marked) and its
        homonyms (each with its size in the KB and its object for the chosen predicate)."""
        s = self.settings
        beam = self.beam([question], top_k=s.beams)[0]
        keys, features = self.candidates([question], [beam])[0]
        rerank = self.reranking
        scores = self.reranker.scores(features) if rerank and keys else np.zeros(len(keys))
        order = np.argsort(-scores, kind="stable") if rerank else np.arange(len(keys))  # the beam's keys lead
        ranked = [(Candidate.from_key(self.index, keys[k], float(scores[k])), features[k]) for k in order]
        top = [c for c, _ in ranked][: s.top_k] if rerank else beam[: s.top_k]
        chosen = top[0] if top else None
        return {
            "question": question,
            "answer": chosen.answer() if chosen else "",
            "object": chosen.obj if chosen else "",
            "subject": chosen.subject if chosen else "",
            "predicate": chosen.predicate if chosen else "",
            "top": [c.as_json() for c in top],
            "mentions": [self.index.surface(sid) for sid in self.index.mentions(question)],
            "beam": [c.as_json() for c in beam],
            "candidates": [{**c.as_json(), "key": c.key,
                            "features": {name: round(float(v), 4) for name, v in zip(FEATURE_NAMES, row)}}
                           for c, row in ranked],
            "neighbourhood": self.neighbourhood(chosen.key) if chosen else [],
            "homonyms": self.homonyms(chosen) if chosen else [],
            "reranked": rerank,
        }

    def neighbourhood(self, key: int, limit: int = 40) -> list[dict]:
        """The subject of KB key `key` as the page draws it: each of its keys (the first `limit`,
        `key` always among them) with predicate, first object and whether it is `key`."""
        keys = list(self.index.subject_keys(key))
        if len(keys) > limit:
            keys = keys[:limit] if key in keys[:limit] else keys[: limit - 1] + [key]
        edges = []
        for k in keys:
            answer = self.index.answer(k)
            edges.append({"key": k, "predicate": answer.predicate, "object": answer.objects[0], "chosen": k == key})
        return edges

    def homonyms(self, chosen: Candidate) -> list[dict]:
        """The entities sharing the chosen subject's surface: their disambiguation, how many keys
        each has (its prominence in the KB), and its object for the chosen predicate, if any."""
        found: dict[str, dict] = {}
        for key, predicate, disambiguation in self.index.keys(self.index.surfaces[chosen.surface]):
            entry = found.setdefault(disambiguation, {"disambiguation": disambiguation, "keys": 0, "object": None,
                                                      "has_predicate": False,
                                                      "chosen": disambiguation == chosen.disambiguation})
            entry["keys"] += 1
            if predicate == chosen.predicate:
                entry["has_predicate"] = True
                entry["object"] = self.index.answer(key).objects[0]
        return list(found.values())

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
            features[i] = candidate_features(questions[i], keys[i], answers[i], likelihoods, beams[i],
                                             [self.index.prominence(key) for key in keys[i]])
        return list(zip(keys, features))

    def _ranked(self, keys: list[int], scores: np.ndarray) -> list[Candidate]:
        return [Candidate.from_key(self.index, keys[k], float(scores[k])) for k in np.argsort(-scores, kind="stable")]
