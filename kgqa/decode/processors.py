"""The decoding rules, each a transformers `LogitsProcessor` with one `__call__(input_ids, scores)`
contract: `input_ids` (rows, length) are the rows' prefixes, `beams` rows to a question in
order, and `scores` (rows, vocabulary) their next-token log-probabilities; each returns the scores
with its rule applied. `TrieConstraint` lets the decoder write only `S [SEP] P [SEP] M [EOS]` keys
of the KB, whatever the weights; `Lookahead` rewards tokens that lead to keys with more evidence in
the question. Both read the same per-row walk (`TrieWalker`), computed once per prefix.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from transformers import LogitsProcessor

from kgqa.kb.index import KBIndex
from kgqa.kb.trie import ROOT, TokenTrie, Trie, value_of
from kgqa.model.tokenizer import Tokenizer
from kgqa.text import common_subsequence, without_mention


class TrieState(NamedTuple):
    """Where a decoded prefix stands: inside `trie` at `node`, or finished on `key`."""

    trie: Trie | None
    node: int
    sid: int | None  # the surface, once `S [SEP]` is written
    key: int | None  # the KB key, once `... M [EOS]` is written


DEAD = TrieState(None, -1, None, None)


class TrieWalker:
    """Maps each beam row's prefix to its TrieState, memoised by prefix so a step costs one trie step.

    `mentions[q]` are the surface ids the subject of question q is drawn from: the KB entities
    that occur in the question; where it is empty, every KB surface.
    """

    def __init__(self, index: KBIndex, tokenizer: Tokenizer, mentions: list[list[int]]) -> None:
        self.index = index
        self.tokenizer = tokenizer
        # (tokens of `S [SEP]`, surface id) per question: the subject trie's keys, which the
        # mention look-ahead reads too
        self.mention_keys = [[(tokenizer.encode(index.names.surface(sid)) + [tokenizer.sep_id], sid) for sid in sids]
                             for sids in mentions]
        self.subject_tries = [TokenTrie.build(keys) if keys else index.surface_trie for keys in self.mention_keys]
        self.skip = 1 + len(tokenizer.target_prefix)  # decoder start + forced label prefix
        self.alive: list[int] | None = None  # the questions the rows belong to, where some left the batch
        self.memo: dict[tuple[int, tuple[int, ...]], TrieState] = {}
        self.runs: dict[tuple[Trie | None, int], list[int]] = {}  # the forced run from a trie node

    def keep(self, questions: list[int]) -> None:
        """Only the rows of `questions` go on, `beams` each, in that order (beam search drops
        the questions it has finished, as `Stepper.keep` does their rows)."""
        self.alive = questions

    def state(self, question: int, prefix: tuple[int, ...]) -> TrieState:
        found = self.memo.get((question, prefix))
        if found is not None:
            return found
        if not prefix:
            found = TrieState(self.subject_tries[question], ROOT, None, None)
        else:
            found = self._advance(self.state(question, prefix[:-1]), prefix[-1])
        self.memo[question, prefix] = found
        return found

    def _advance(self, state: TrieState, token: int) -> TrieState:
        if state.trie is None:
            return DEAD
        target = state.trie.step(state.node, token)
        if target is None:
            return DEAD
        value = value_of(target)
        if value is None:
            return TrieState(state.trie, target, state.sid, None)
        if state.sid is None:  # `S [SEP]` complete: continue in this surface's P/M trie
            return TrieState(self.index.tail_trie(value), ROOT, value, None)
        return TrieState(None, -1, state.sid, value)

    def question(self, row: int, beams: int) -> int:
        """The question beam row `row` belongs to, `beams` rows to a question."""
        return row // beams if self.alive is None else self.alive[row // beams]

    def row_states(self, input_ids: torch.Tensor, beams: int) -> list[tuple[int, TrieState | None]]:
        """(question, state) per row; state None while the forced label prefix is being written."""
        rows = []
        for row, ids in enumerate(input_ids.tolist()):
            question = self.question(row, beams)
            if len(ids) < self.skip:
                rows.append((question, None))
            else:
                rows.append((question, self.state(question, tuple(ids[self.skip:]))))
        return rows

    def allowed(self, question: int, ids: list[int]) -> list[int]:
        """The tokens `TrieConstraint` lets a row of `question` write after `ids` (its prefix,
        the decoder start token first): the label prefix's next token while that is written,
        the trie's children, and EOS only once a key is complete (or the prefix left the KB)."""
        if len(ids) < self.skip:
            return [self.tokenizer.target_prefix[len(ids) - 1]]
        return self._next(self.state(question, tuple(ids[self.skip:]))).tolist()

    def _next(self, state: TrieState) -> np.ndarray:
        """The tokens allowed after a prefix at `state`: its trie node's children, or EOS alone."""
        return np.array([self.tokenizer.eos_id]) if state.trie is None else state.trie.children(state.node)

    def forced_run(self, question: int, ids: list[int], limit: int) -> list[int]:
        """The tokens the trie forces after `ids`, at most `limit`: each the one token `allowed`
        would leave, up to the first choice or through the EOS that ends a key. The run from a
        trie node is walked once and kept by node (not by the prefixes along it, each of which
        would be hashed whole: the beam's steps memoise those as they get there)."""
        label = list(self.tokenizer.target_prefix[len(ids) - 1:]) if len(ids) < self.skip else []  # the label's rest
        state = self.state(question, tuple(ids[self.skip:]))  # the subject trie's root while the label is written
        found = self.runs.get((state.trie, state.node))
        if found is None:
            found = self.runs[state.trie, state.node] = self._run_from(state)
        return (label + found)[:limit]

    def _run_from(self, state: TrieState) -> list[int]:
        """The forced run from `state`, whole (keys are at most a few dozen tokens)."""
        run: list[int] = []
        while True:
            allowed = self._next(state)
            if len(allowed) != 1:
                return run
            run.append(int(allowed[0]))
            if run[-1] == self.tokenizer.eos_id:
                return run
            state = self._advance(state, run[-1])


class TrieConstraint(LogitsProcessor):
    """Masks every token that would leave the KB's key set; finished rows may only repeat EOS."""

    def __init__(self, walker: TrieWalker, beams: int) -> None:
        if not isinstance(beams, int) or beams < 1:
            raise ValueError(f"`beams` has to be a positive integer, not {beams!r}")
        self.walker = walker
        self.beams = beams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """`scores` with every token no KB key continues with set to -inf."""
        rows: list[int] = []
        allowed: list[int] = []
        for row, ids in enumerate(input_ids.tolist()):
            tokens = self.walker.allowed(self.walker.question(row, self.beams), ids)
            rows.extend([row] * len(tokens))
            allowed.extend(tokens)
        mask = torch.ones(scores.shape, dtype=torch.bool)  # built on the CPU from the trie: one transfer a step
        mask[rows, allowed] = False
        return scores.masked_fill(mask.to(scores.device, non_blocking=True), float("-inf"))


def best_below(trie: Trie, keys: list[tuple[list[int], int]]) -> dict[int, int]:
    """For each node on the paths of `keys` (token lists, each with a value): the best value of
    any key through that node. The root is node ROOT; a node past the keys' ends is absent."""
    best: dict[int, int] = {}
    for tokens, value in keys:
        node: int | None = ROOT
        for token in tokens:
            best[node] = max(best.get(node, value), value)
            node = trie.step(node, token)
        best[node] = max(best.get(node, value), value)
    return best


class Lookahead(LogitsProcessor):
    """The trie knows every key still reachable from a prefix; a token is penalised by `weight`
    per unit of evidence the best key through it has less of than the best key before it.

    Two kinds of evidence, each with its own weight (named as `DecodeSettings` names them):
    - while the subject is written, the mention's length in characters (the peer's rule: the
      longest KB mention in the question is most often the one asked about): `mention_lookahead`;
    - while the predicate is written, its longest common subsequence with the question, the
      mention removed (the lever for predicates never seen in training: their wording in the
      question is the evidence): `lookahead`.
    The model decides wherever the evidence is tied, and always for the disambiguation.
    """

    def __init__(self, walker: TrieWalker, questions: list[str], beams: int,
                 lookahead: float = 1.0, mention_lookahead: float = 0.0) -> None:
        if not isinstance(beams, int) or beams < 1:
            raise ValueError(f"`beams` has to be a positive integer, not {beams!r}")
        for name, weight in (("lookahead", lookahead), ("mention_lookahead", mention_lookahead)):
            if not weight >= 0:
                raise ValueError(f"`{name}` has to be a non-negative number, not {weight!r}")
        self.walker = walker
        self.questions = questions
        self.beams = beams
        self.lookahead = lookahead
        self.mention_lookahead = mention_lookahead
        self.evidence: dict[tuple[int, int | None], dict[int, int]] = {}

    def _evidence(self, question: int, state: TrieState) -> dict[int, int]:
        if (question, state.sid) not in self.evidence:
            index, tokenizer = self.walker.index, self.walker.tokenizer
            if state.sid is None:  # unrestricted subjects have no mention keys: no length evidence
                keys = [(tokens, len(index.names.surface(sid))) for tokens, sid in self.walker.mention_keys[question]]
            else:
                rest = without_mention(self.questions[question], index.names.surface(state.sid))
                keys = [(tokenizer.encode(p) + [tokenizer.sep_id], common_subsequence(rest, p))
                        for p in {p for _, p, _ in index.keys(state.sid)}]
            self.evidence[question, state.sid] = best_below(state.trie, keys)
        return self.evidence[question, state.sid]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """`scores` less each token's penalty: `weight` × the evidence lost by taking it."""
        rows: list[int] = []
        tokens: list[int] = []
        bonus: list[float] = []
        for row, (question, state) in enumerate(self.walker.row_states(input_ids, self.beams)):
            if state is None or state.trie is None:
                continue
            weight = self.mention_lookahead if state.sid is None else self.lookahead
            if not weight:
                continue
            best = self._evidence(question, state)
            here = best.get(state.node)
            if here is None:  # no evidence here, e.g. in the disambiguation: the model's call
                continue
            tokens_here, targets = state.trie.edges(state.node)
            for token, target in zip(tokens_here.tolist(), targets.tolist()):
                loss = here - best.get(target, here)
                if loss:
                    rows.append(row)
                    tokens.append(token)
                    bonus.append(-weight * loss)
        if rows:
            scores = scores.index_put((torch.tensor(rows, device=scores.device), torch.tensor(tokens, device=scores.device)),
                                      torch.tensor(bonus, dtype=scores.dtype, device=scores.device), accumulate=True)
        return scores
