"""The model's reading of each candidate, for the reranker: the log-probability of its key, and of
its object's first tokens after it where the model was taught to write them."""
from __future__ import annotations

import numpy as np
from transformers import PreTrainedModel

from kgqa.kb.triples import Fact
from kgqa.model.likelihood import token_log_probs
from kgqa.model.stepper import Encoded
from kgqa.model.tokenizer import Tokenizer


def key_and_object_log_probs(model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str],
                             facts: list[list[Fact]], object_tokens: int, max_question_tokens: int,
                             encoded: Encoded | None = None) -> list[np.ndarray]:
    """Per question, one row per fact: the model's (log p, tokens) of its key and of its object's
    first `object_tokens` tokens after it (none where the model was not taught them: 0), read in
    one pass (`token_log_probs`)."""
    keys = [[tokenizer.encode_target(f.surface, f.predicate, f.disambiguation) for f in row] for row in facts]
    tails = [[tokenizer.encode_object(f.objects[0], object_tokens) for f in row] for row in facts]
    found = token_log_probs(model, tokenizer, questions, [[k + t for k, t in zip(*row)] for row in zip(keys, tails)],
                            max_question_tokens, encoded=encoded)
    return [np.array([[p[:len(k)].sum(), len(k), p[len(k):].sum(), len(t)] for p, k, t in zip(*row)]).reshape(-1, 4)
            for row in zip(found, keys, tails)]
