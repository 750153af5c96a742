"""The surface trie of an index of several segments: their tries walked as one, less the keys of
surfaces a later segment hides, with `TokenTrie`'s queries (the `Trie` protocol the decoder walks).

Each segment's hidden surfaces come with the edges of its trie that lead only to them ("pruned":
each hidden surface's last edge, and each edge into a node all of whose edges are pruned), so
the union offers no token that leads nowhere. Node ids: ROOT is every segment's root; a node only
one segment has is that segment's node id past the nodes of the segments before it; a node
several segments share (a prefix their surfaces have in common) gets an id past all of those
when first reached, and its children and steps are kept once worked out.
"""
from __future__ import annotations

import bisect
import functools

import numpy as np

from kgqa.kb.trie import ROOT, TokenTrie

Sides = tuple[tuple[int, int], ...]  # (segment, its node) of each segment that has the node


class TrieUnion:
    def __init__(self, tries: list[TokenTrie], value_offsets: list[int], pruned: list[np.ndarray]) -> None:
        """`tries[i]`'s values are ids past `value_offsets[i]`; `pruned[i]` its (node, token)
        edges left out."""
        self.tries = tries
        self.value_offsets = value_offsets
        sizes = [len(trie.first) - 1 for trie in tries]
        self.node_offsets = [sum(sizes[:i]) for i in range(len(tries))]
        self.single_nodes = sum(sizes)
        self._pruned_edges = pruned
        self.shared: list[Sides] = []
        self.shared_ids: dict[Sides, int] = {}
        self._children: dict[int, np.ndarray] = {}  # of shared nodes and pruned single ones
        self._edges: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # of those too
        self._steps: dict[tuple[int, int], int | None] = {}  # of shared nodes

    @functools.cached_property
    def pruned(self) -> list[dict[int, set[int]]]:
        """Per segment, node -> the tokens of its edges left out (made on the first walk: an
        update opens the index without walking it)."""
        found = []
        for edges in self._pruned_edges:
            cut: dict[int, set[int]] = {}
            for node, token in edges.reshape(-1, 2).tolist():
                cut.setdefault(node, set()).add(token)
            found.append(cut)
        return found

    def _sides(self, node: int) -> Sides:
        if node == ROOT:
            return tuple((i, ROOT) for i in range(len(self.tries)))
        if node < self.single_nodes:
            i = bisect.bisect_right(self.node_offsets, node) - 1
            return ((i, node - self.node_offsets[i]),)
        return self.shared[node - self.single_nodes]

    def _node(self, sides: Sides) -> int:
        if len(sides) == 1:
            i, node = sides[0]
            return self.node_offsets[i] + node
        found = self.shared_ids.get(sides)
        if found is None:
            found = self.shared_ids[sides] = self.single_nodes + len(self.shared)
            self.shared.append(sides)
        return found

    def children(self, node: int) -> np.ndarray:
        """Token ids allowed after the prefix that reached `node`."""
        found = self._children.get(node)
        if found is not None:
            return found
        sides = self._sides(node)
        if len(sides) == 1 and sides[0][1] not in self.pruned[sides[0][0]]:
            return self.tries[sides[0][0]].children(sides[0][1])
        parts = []
        for i, at in sides:
            tokens = self.tries[i].children(at)
            cut = self.pruned[i].get(at)
            parts.append(tokens[~np.isin(tokens, list(cut))] if cut else tokens)
        found = self._children[node] = np.unique(np.concatenate(parts)).astype(parts[0].dtype) if len(parts) > 1 \
            else parts[0]
        return found

    def edges(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(the tokens allowed after `node`, where each leads)."""
        found = self._edges.get(node)
        if found is not None:
            return found
        sides = self._sides(node)
        if len(sides) == 1 and sides[0][1] not in self.pruned[sides[0][0]]:
            i, at = sides[0]
            tokens, targets = self.tries[i].edges(at)
            return tokens, np.where(targets >= 0, targets + self.node_offsets[i], targets - self.value_offsets[i])
        tokens = self.children(node)
        found = self._edges[node] = (tokens, np.array([self.step(node, token) for token in tokens.tolist()], np.int64))
        return found

    def step(self, node: int, token: int) -> int | None:
        """Follow one token: a node id (>= 0), a completed key's `-(value + 1)`, or None."""
        if node != ROOT and node < self.single_nodes:
            i = bisect.bisect_right(self.node_offsets, node) - 1
            return self._step_in(i, node - self.node_offsets[i], token)
        known = self._steps.get((node, token), False)  # a shared node's steps are kept: no sides built
        if known is not False:
            return known
        sides = self._sides(node)
        reached: list[tuple[int, int]] = []
        ended = None
        for i, at in sides:
            target = None if token in self.pruned[i].get(at, ()) else self.tries[i].step(at, token)
            if target is None:
                continue
            if target < 0:
                ended = target - self.value_offsets[i]  # a later segment's key wins a tie
            else:
                reached.append((i, target))
        found = ended if ended is not None else (self._node(tuple(reached)) if reached else None)
        self._steps[node, token] = found
        return found

    def _step_in(self, i: int, at: int, token: int) -> int | None:
        if token in self.pruned[i].get(at, ()):
            return None
        target = self.tries[i].step(at, token)
        if target is None:
            return None
        return target - self.value_offsets[i] if target < 0 else target + self.node_offsets[i]
