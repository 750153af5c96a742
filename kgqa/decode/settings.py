"""The decoding settings: one dataclass whose defaults are the defaults everywhere (the library,
`kgqa predict/ask/serve/submit`'s options, training's per-epoch scoring). Its own light module so
the CLI can build its options from it without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DecodeSettings:
    """How questions are answered; the one set of defaults (the CLI's options are derived from it)."""

    beams: int = 4
    top_k: int = 1
    restrict_mentions: bool = True  # the subject is a KB entity the question mentions
    lookahead: float = 1.0  # per-character weight of question coverage when writing the predicate (0: off)
    mention_lookahead: float = 2.0  # per-character weight of mention length when writing the subject (0: off)
    batch_size: int = 32
    rerank: bool = True  # where the checkpoint has a reranker
    max_question_tokens: int = 128
