"""A question's candidate targets as one prefix tree, scored by the decoder in one pass.

Why: the reranker asks the model for the log-likelihood of up to 64 keys a question, most of them
the other predicates of one or two subjects, so `S [SEP]` and often the start of `P` are the same
for all of them. Scored one padded row per key, every shared prefix would be computed again for
each key; as a tree each distinct prefix is one position (`Stepper.tree`), and each key's
log-probabilities are those of the edges of its path.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel

from kgqa.model.seq2seq import copy_mixture, encode_questions, padded_batches
from kgqa.model.stepper import Encoded, Stepper
from kgqa.model.tokenizer import Tokenizer


_HEAD_ROWS = 256  # positions whose vocabulary-wide logits are held at once (6 MB for 6,000 tokens)


class TargetTree:
    """The distinct prefixes of one question's targets. Node 0 is the empty prefix; node j > 0 is
    its parent's prefix + `token[j]`. The decoder runs at the `inner` nodes (those some target
    goes on from), in creation order, so a node's ancestors come before it."""

    def __init__(self, targets: list[list[int]]) -> None:
        self.parent, self.token, self.depth = [-1], [-1], [0]
        children: dict[tuple[int, int], int] = {}
        self.paths: list[list[int]] = []  # per target: the nodes after the root on its path
        for target in targets:
            node, path = 0, []
            for token in target:
                child = children.get((node, token))
                if child is None:
                    child = children[node, token] = len(self.token)
                    self.parent.append(node)
                    self.token.append(token)
                    self.depth.append(self.depth[node] + 1)
                node = child
                path.append(node)
            self.paths.append(path)
        has_child = np.zeros(len(self.token), dtype=bool)
        has_child[self.parent[1:]] = True
        self.inner = np.flatnonzero(has_child)  # node ids the decoder runs at
        self.position = np.full(len(self.token), -1)
        self.position[self.inner] = np.arange(len(self.inner))

    def inputs(self, start_id: int) -> tuple[list[int], list[int], np.ndarray]:
        """(decoder input tokens, depths, ancestors-or-self matrix) of the inner nodes."""
        count = len(self.inner)
        ancestors = np.zeros((count, count), dtype=bool)
        for at, node in enumerate(self.inner):
            parent = self.parent[node]
            if parent >= 0:
                ancestors[at] = ancestors[self.position[parent]]
            ancestors[at, at] = True
        tokens = [start_id if node == 0 else self.token[node] for node in self.inner]
        return tokens, [self.depth[node] for node in self.inner], ancestors

    def token_log_probs(self, edge_log_probs: np.ndarray) -> list[np.ndarray]:
        """Per target, the log-probability of each of its tokens, from the log-probability of each
        node given its parent (`edge_log_probs[node]`)."""
        return [edge_log_probs[path] for path in self.paths]


@torch.no_grad()
def tree_token_log_probs(model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str],
                         targets: list[list[list[int]]], max_question_tokens: int,
                         positions_per_pass: int = 2048, encoded: Encoded | None = None) -> list[list[np.ndarray]]:
    """What `likelihood.token_log_probs` gives (per question, per target, each token's log p), for the
    models the stepper runs (T5, mT5, BART): each question's targets as one tree, questions with trees
    of similar size together, in passes of about `positions_per_pass` padded positions; the
    questions encoded once for all passes (`encoded`: by the caller)."""
    trees = [TargetTree(keys) for keys in targets]
    out: list[list[np.ndarray]] = [[] for _ in trees]
    asked = [i for i, tree in enumerate(trees) if len(tree.inner)]  # a question without targets scores none
    if asked and encoded is None:
        encoded = Encoded(model, *encode_questions(tokenizer, questions, max_question_tokens, model.device))
    for group in padded_batches([len(trees[i].inner) for i in asked], positions_per_pass):
        chosen = [asked[g] for g in group]
        for i, edges in zip(chosen, _edge_log_probs(model, encoded, chosen, [trees[i] for i in chosen])):
            out[i] = trees[i].token_log_probs(edges)
    return out


def _edge_log_probs(model: PreTrainedModel, encoded: Encoded, questions: list[int],
                    trees: list[TargetTree]) -> list[np.ndarray]:
    """Per tree (of the question at that place of `questions`, positions in `encoded`), log
    p(node's token | question, its parent's prefix) at every node (root: 0)."""
    device = model.device
    width = max(len(tree.inner) for tree in trees)
    start_id = model.config.decoder_start_token_id
    tokens = torch.full((len(trees), width), start_id, dtype=torch.long)
    depths = torch.zeros((len(trees), width), dtype=torch.long)
    ancestors = torch.eye(width, dtype=torch.bool).repeat(len(trees), 1, 1)  # padding sees itself only
    for row, tree in enumerate(trees):
        row_tokens, row_depths, row_ancestors = tree.inputs(start_id)
        tokens[row, : len(row_tokens)] = torch.tensor(row_tokens)
        depths[row, : len(row_depths)] = torch.tensor(row_depths)
        ancestors[row, : len(row_tokens), : len(row_tokens)] = torch.from_numpy(row_ancestors)
    decoder = Stepper(model, encoded, 1, int(depths.max()) + 1, torch.tensor(questions, device=device))
    input_ids = decoder.source
    hidden, copy = decoder.tree(tokens.to(device), depths.to(device), ancestors.to(device))
    # the trees' own positions, one after the other (no padding), and each edge's parent among them
    sizes = [len(tree.inner) for tree in trees]
    hidden = torch.cat([hidden[row, :size] for row, size in enumerate(sizes)])
    copy = torch.cat([copy[row, :size] for row, size in enumerate(sizes)])
    owner = torch.repeat_interleave(torch.arange(len(trees), device=device), torch.tensor(sizes, device=device))
    offsets = np.cumsum([0] + sizes[:-1])
    parent = torch.from_numpy(np.concatenate([offset + tree.position[tree.parent[1:]]
                                              for offset, tree in zip(offsets, trees)])).to(device)
    token = torch.cat([torch.tensor(tree.token[1:]) for tree in trees]).to(device)
    order = torch.argsort(parent, stable=True)
    sorted_parent = parent[order]
    log_p = torch.empty(len(parent), device=device)
    first = 0
    for start in range(0, len(hidden), _HEAD_ROWS):  # the output layer a slice of positions at a time
        last = int(torch.searchsorted(sorted_parent, start + _HEAD_ROWS))
        edges = order[first:last]
        first = last
        at = parent[edges]
        logits, gate = decoder.head(hidden[start: start + _HEAD_ROWS])
        logits = logits.float()
        chosen = logits[at - start, token[edges]] - logits.logsumexp(-1)[at - start]
        if gate is not None:  # CopyT5: the mixture's share of the token, as its forward gives it
            copied = (copy[at].float() * (input_ids[owner[at]] == token[edges, None])).sum(-1)
            chosen = copy_mixture(chosen, copied, gate[at - start, 0].float())
        log_p[edges] = chosen
    log_p = log_p.cpu().numpy()
    out, offset = [], 0
    for tree in trees:
        edges = np.zeros(len(tree.token))
        edges[1:] = log_p[offset: offset + len(tree.token) - 1]
        out.append(edges)
        offset += len(tree.token) - 1
    return out
