"""The model's log-probability of each token of given targets (a question's candidate keys, each
with its object's first tokens), each question encoded once: what the reranker's likelihood
features read.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from kgqa.model.seq2seq import encode_questions, pad_targets, padded_batches, target_log_probs
from kgqa.model.stepper import Encoded, Stepper
from kgqa.model.target_tree import tree_token_log_probs
from kgqa.model.tokenizer import Tokenizer


@torch.no_grad()
def token_log_probs(model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str],
                    targets: list[list[list[int]]], max_question_tokens: int,
                    tokens_per_pass: int = 2048, encoded: Encoded | None = None) -> list[list[np.ndarray]]:
    """Per question, per target token list, the log p of each of its tokens given the question and
    the tokens before it; each question encoded once (`encoded`: already, by the caller's beam, for
    a model the stepper runs); a question may have no targets.

    Models the stepper runs (T5, mT5, BART) score each question's targets as one prefix tree
    (`target_tree`: every shared prefix computed once). Others score each target as a row, shortest first, in
    passes of about `tokens_per_pass` padded tokens: padded to the longest target of their own
    pass, not of the batch (target lengths run from 5 to 40 tokens, so a mixed pass spent most
    of its work on padding). The decoder is causal, so a target's log-probabilities do not
    depend on the padding after it."""
    if Stepper.handles(model):
        return tree_token_log_probs(model, tokenizer, questions, targets, max_question_tokens, tokens_per_pass, encoded)
    input_ids, attention = encode_questions(tokenizer, questions, max_question_tokens, model.device)
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    pairs = [(q, target) for q, keys in enumerate(targets) for target in keys]
    found: list[np.ndarray] = [np.zeros(0)] * len(pairs)
    for chosen in padded_batches([len(target) for _, target in pairs], tokens_per_pass):
        owner = torch.tensor([pairs[i][0] for i in chosen], device=model.device)
        labels = pad_targets([pairs[i][1] for i in chosen]).to(model.device)
        token_ll = target_log_probs(model, BaseModelOutput(last_hidden_state=hidden[owner]), attention[owner], labels,
                                    input_ids[owner]).float().cpu().numpy()
        for row, i in enumerate(chosen):
            found[i] = token_ll[row, : len(pairs[i][1])]
    out, at = [], 0
    for keys in targets:
        out.append(found[at:at + len(keys)])
        at += len(keys)
    return out

