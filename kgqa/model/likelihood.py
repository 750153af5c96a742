"""The model's log-likelihood of given targets (a question's candidate keys), each question
encoded once: what the reranker's `log_likelihood` features read.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from kgqa.model.seq2seq import encode_questions, pad_targets, padded_batches, target_log_probs
from kgqa.model.stepper import Encoded, Stepper
from kgqa.model.target_tree import tree_log_likelihoods
from kgqa.model.tokenizer import Tokenizer


@torch.no_grad()
def log_likelihoods(model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str],
                    targets: list[list[list[int]]], max_question_tokens: int,
                    tokens_per_pass: int = 2048, encoded: Encoded | None = None) -> list[np.ndarray]:
    """(log p of the whole target, target tokens) per target token list, each question encoded
    once (`encoded`: already, by the caller's beam, for a model the stepper runs); a question may have no
    targets.

    Models the stepper runs (T5, mT5, BART) score each question's targets as one prefix tree
    (`target_tree`: every shared prefix computed once). Others score each target as a row, shortest first, in
    passes of about `tokens_per_pass` padded tokens: padded to the longest target of their own
    pass, not of the batch (target lengths run from 5 to 40 tokens, so a mixed pass spent most
    of its work on padding). The decoder is causal, so a target's log-probabilities do not
    depend on the padding after it."""
    if Stepper.handles(model):
        return tree_log_likelihoods(model, tokenizer, questions, targets, max_question_tokens, tokens_per_pass, encoded)
    input_ids, attention = encode_questions(tokenizer, questions, max_question_tokens, model.device)
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    pairs = [(q, target) for q, keys in enumerate(targets) for target in keys]
    totals = np.zeros((len(pairs), 2))
    for chosen in padded_batches([len(target) for _, target in pairs], tokens_per_pass):
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
