"""The library API the CLI calls: `KGQA.from_checkpoint(ckpt, kb).answer(questions)`."""
from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm
from transformers import PreTrainedModel

from kgqa.checkpoint import load_checkpoint
from kgqa.decoding import Candidate, constrained_generate
from kgqa.index import KBIndex, ensure_index
from kgqa.tokenizer import Tokenizer


@dataclass
class DecodeSettings:
    beams: int = 4
    top_k: int = 1
    restrict_mentions: bool = True
    lookahead: float = 1.0
    mention_lookahead: float = 2.0
    batch_size: int = 32


class KGQA:
    def __init__(self, model: PreTrainedModel, tokenizer: Tokenizer, index: KBIndex,
                 settings: DecodeSettings | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.settings = settings or DecodeSettings()

    @classmethod
    def from_checkpoint(cls, checkpoint: str, kb: str, index_dir: str | None = None,
                        settings: DecodeSettings | None = None, progress: bool = False) -> "KGQA":
        model, tokenizer, _ = load_checkpoint(checkpoint)
        return cls(model, tokenizer, ensure_index(kb, tokenizer, index_dir, progress=progress), settings)

    def answer(self, questions: list[str], progress: bool = False) -> list[list[Candidate]]:
        """Top-k KB candidates per question, in input order; [] where no KB key is reachable."""
        s = self.settings
        results: list[list[Candidate]] = []
        for start in tqdm(range(0, len(questions), s.batch_size), desc="answering", unit=" batches",
                          disable=not progress):
            results.extend(constrained_generate(
                self.model, self.tokenizer, self.index, questions[start:start + s.batch_size],
                num_beams=s.beams, top_k=s.top_k, restrict_mentions=s.restrict_mentions,
                lookahead=s.lookahead, mention_lookahead=s.mention_lookahead))
        return results
