"""A static trie over token-id sequences, stored as flat arrays (CSR), one query in the hot path.

Why not marisa-trie here: its Python API can only enumerate every key under a prefix, so a
GENRE-style `get(prefix)` costs the number of descendants (millions at the root of a 20M-key
KB). Here each node's children are one contiguous slice, so `children(node)` costs O(children)
and `step(node, token)` a binary search within them. Arrays are plain numpy, so an on-disk trie
opens by memory map.

Every key must end with a terminator token that occurs nowhere else in keys (`[SEP]`, EOS), so
no key is a prefix of another. The edge that ends a key stores its value as `-(value + 1)`
instead of a child node: the walk that completes a key yields the value directly.
"""
from __future__ import annotations

import bisect
import os
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

ROOT = 0
_FILES = ("first", "tokens", "targets")


class Trie(Protocol):
    """The walk the decoder makes over a trie of token-id keys, from ROOT: what a `TokenTrie` and
    the surface trie of an index of several segments (`kgqa.kb.trie_union.TrieUnion`) both answer."""

    def children(self, node: int) -> np.ndarray:
        """Token ids allowed after the prefix that reached `node`."""

    def step(self, node: int, token: int) -> int | None:
        """Follow one token: a node id (>= 0), a completed key's `-(value + 1)`, or None."""

    def edges(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(the tokens allowed after `node`, where each leads: what `step` gives for it)."""


class TokenTrie:
    def __init__(self, first: np.ndarray, tokens: np.ndarray, targets: np.ndarray) -> None:
        # children of node n: tokens[first[n]:first[n + 1]], each leading to targets[...]; plain
        # ndarray views, as slicing an np.memmap costs several times more per call
        self.first = np.asarray(first)
        self.tokens = np.asarray(tokens)
        self.targets = np.asarray(targets)

    @classmethod
    def build(cls, items: Iterable[tuple[Sequence[int], int]]) -> "TokenTrie":
        """Build from (key, value) pairs; a repeated key keeps its first value."""
        keyed: dict[tuple[int, ...], int] = {}
        for key, value in items:
            keyed.setdefault(tuple(key), value)
        parents: list[int] = []
        tokens: list[int] = []
        targets: list[int] = []
        path = [ROOT]  # path[d]: the node reached by the first d tokens of the previous key
        previous: tuple[int, ...] = ()
        n_nodes = 1
        for key in sorted(keyed):
            common = 0
            limit = min(len(previous), len(key)) - 1  # a key's last edge is never shared
            while common < limit and previous[common] == key[common]:
                common += 1
            del path[common + 1:]
            for depth in range(common, len(key)):
                if depth == len(key) - 1:
                    target = -(keyed[key] + 1)
                else:
                    target = n_nodes
                    n_nodes += 1
                parents.append(path[depth])
                tokens.append(key[depth])
                targets.append(target)
                path.append(target)
            previous = key
        parent_array = np.asarray(parents, dtype=np.int64)
        order = np.argsort(parent_array, kind="stable")  # tokens stay sorted within a parent
        first = np.searchsorted(parent_array[order], np.arange(n_nodes + 1)).astype(np.int64)
        return cls(
            first,
            np.asarray(tokens, dtype=np.int32)[order],
            np.asarray(targets, dtype=np.int64)[order],
        )

    def children(self, node: int) -> np.ndarray:
        """Token ids allowed after the prefix that reached `node`."""
        return self.tokens[self.first[node]:self.first[node + 1]]

    def step(self, node: int, token: int) -> int | None:
        """Follow one token: a node id (>= 0), a completed key's `-(value + 1)`, or None."""
        lo, hi = int(self.first[node]), int(self.first[node + 1])
        at = bisect.bisect_left(self.tokens, token, lo, hi)
        if at == hi or self.tokens[at] != token:
            return None
        return int(self.targets[at])

    def edges(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(the tokens allowed after `node`, where each leads): two views of one slice."""
        lo, hi = int(self.first[node]), int(self.first[node + 1])
        return self.tokens[lo:hi], self.targets[lo:hi]

    def save(self, directory: str, name: str) -> None:
        for part in _FILES:
            np.save(os.path.join(directory, f"{name}.{part}.npy"), getattr(self, part))

    @classmethod
    def open(cls, directory: str, name: str,
             load: Callable[[str], np.ndarray] = lambda path: np.load(path, mmap_mode="r")) -> "TokenTrie":
        """The trie `save` wrote, its arrays read by `load` (a memory map by default)."""
        return cls(*(load(os.path.join(directory, f"{name}.{part}.npy")) for part in _FILES))


def value_of(target: int) -> int | None:
    """The value a completed key stored, or None when `target` is an inner node."""
    return -target - 1 if target < 0 else None
