"""An index updated in place, read side: a base (the arrays of the last full build) and a layer
(a small index of every subject surface changed since, as it is now), answering as one index.

The base is never written after its build: an update (`kgqa.kb.update`) writes a new layer and
the ids of the base's changed surfaces, hidden from then on. Ids of the two are kept apart by
offsets (layer surface, entity and key ids follow the base's); a surface the layer holds is
answered from the layer alone, so a subject is always whole from one side. The layer's files:
    layer/            a complete index (`KBIndex`) of the changed surfaces' triples
    layer/hidden.npy  base surface ids changed or removed (sorted)
    layer/pruned.npy  (node, token) edges of the base surface trie that lead only to removed surfaces
    layer/predicates.npy  (base predicate id, keys of it hidden) pairs
    layer/samples.json, sample_{start,key,hash}.npy  the predicates with a key changed (added,
                      removed, or its first object), and the sample of each (keys of both sides
                      and their hashes; CSR as `pred_sample_*`); the base's samples stand for the rest
What the base and the layer answer together is what an index rebuilt from the changed KB answers
(the orders a query returns are fixed by the KB's content, see `kgqa.kb.index`).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Iterator

import numpy as np

from kgqa.errors import KgqaError
from kgqa.kb.index import HEADER, Answer, DamagedIndex, KBIndex
from kgqa.kb.trie import ROOT, TokenTrie
from kgqa.model.tokenizer import Tokenizer

LAYER = "layer"
SAMPLES = ("sample_start", "sample_key", "sample_hash")


def open_index(directory: str, tokenizer: Tokenizer | None = None) -> KBIndex:
    """Open the index in `directory`: a built one, or one updated since (`kgqa update`), which
    answers from its base and its layer of changed subjects together."""
    try:
        with open(os.path.join(directory, HEADER), encoding="utf-8") as handle:
            layered = "layer" in json.load(handle)
    except (OSError, ValueError, TypeError):
        layered = False  # KBIndex names what is wrong
    return (LayeredIndex if layered else KBIndex)(directory, tokenizer)


class LayeredIndex(KBIndex):
    """Base and layer as one index; the base's own arrays are this object's (KBIndex's), the
    layer is `self.layer`."""

    def __init__(self, directory: str, tokenizer: Tokenizer | None = None) -> None:
        super().__init__(directory, tokenizer)
        layer = os.path.join(directory, LAYER)
        try:
            self.layer = KBIndex(layer, tokenizer)
            hidden = np.load(os.path.join(layer, "hidden.npy"))
            pruned = np.load(os.path.join(layer, "pruned.npy"))
            self._hidden_keys_of = dict(np.load(os.path.join(layer, "predicates.npy")).tolist())
            with open(os.path.join(layer, "samples.json"), encoding="utf-8") as handle:
                self._sampled = {predicate: at for at, predicate in enumerate(json.load(handle))}
            self._sample_start, self._sample_key, self._sample_hash = (
                np.load(os.path.join(layer, f"{name}.npy"), mmap_mode="r") for name in SAMPLES)
        except KgqaError as error:
            raise DamagedIndex(f"its layer: {error}", directory) from None
        except Exception as error:  # numpy, json and the OS each raise their own kind for a damaged file
            raise DamagedIndex(f"its layer: {type(error).__name__}: {error}", directory) from None
        if self.layer.header["tokenizer_sha256"] != self.header["tokenizer_sha256"] \
                or self.layer.header["triples"] != self.header["layer"]["triples"] \
                or len(hidden) != self.header["layer"]["hidden_surfaces"] \
                or len(self._sample_start) != len(self._sampled) + 1 \
                or not self._sample_start[-1] == len(self._sample_key) == len(self._sample_hash):
            raise DamagedIndex("its layer disagrees with the header", directory)
        self._base = (self.header["surfaces"], self.header["entities"], len(self.grp_pred))
        self.hidden = hidden  # base surface ids the layer replaces or removed
        self._hidden = set(hidden.tolist())
        self.surface_trie = LayeredTrie(self.surface_trie, self.layer.surface_trie, self._base[0], pruned)

    # -- surfaces --------------------------------------------------------------------------
    def surface(self, sid: int) -> str:
        base_surfaces = self._base[0]
        return super().surface(sid) if sid < base_surfaces else self.layer.surface(sid - base_surfaces)

    def surface_id(self, surface: str) -> int | None:
        sid = self.layer.surface_id(surface)
        if sid is not None:
            return sid + self._base[0]
        sid = super().surface_id(surface)
        return None if sid in self._hidden else sid

    def _mentioned(self, question: str) -> set[str]:
        return super()._mentioned(question) | self.layer._mentioned(question)

    # -- keys --------------------------------------------------------------------------------
    @property
    def key_count(self) -> int:
        return self._base[2] + self.layer.key_count

    def is_live(self, key: int) -> bool:
        if key < 0 or key >= self.key_count:
            return False
        return key >= self._base[2] or super().surface_of(key) not in self._hidden

    def keys(self, sid: int) -> Iterator[tuple[int, str, str]]:
        base_surfaces, _, base_keys = self._base
        if sid < base_surfaces:
            yield from super().keys(sid)
        else:
            for key, predicate, disambiguation in self.layer.keys(sid - base_surfaces):
                yield key + base_keys, predicate, disambiguation

    def subject_triples(self, sid: int) -> list[tuple[int, str, str, list[str]]]:
        base_surfaces, _, base_keys = self._base
        if sid < base_surfaces:
            return super().subject_triples(sid)
        return [(key + base_keys, *rest) for key, *rest in self.layer.subject_triples(sid - base_surfaces)]

    def answer(self, key: int) -> Answer:
        base_keys = self._base[2]
        return super().answer(key) if key < base_keys else self.layer.answer(key - base_keys)

    def first_object(self, key: int) -> str:
        base_keys = self._base[2]
        return super().first_object(key) if key < base_keys else self.layer.first_object(key - base_keys)

    def surface_of(self, key: int) -> int:
        base_surfaces, _, base_keys = self._base
        return super().surface_of(key) if key < base_keys else self.layer.surface_of(key - base_keys) + base_surfaces

    def subject_keys(self, key: int) -> range:
        base_keys = self._base[2]
        if key < base_keys:
            return super().subject_keys(key)
        found = self.layer.subject_keys(key - base_keys)
        return range(found.start + base_keys, found.stop + base_keys)

    # -- predicates ----------------------------------------------------------------------------
    @functools.cached_property
    def _counts(self) -> tuple[dict[int, int], np.ndarray]:
        """(base predicate id -> its key count now, where the update changed it; layer predicate
        id -> its key count now)."""
        base_counts = self.predicate_key_counts
        now = {pid: int(base_counts[pid]) - hidden for pid, hidden in self._hidden_keys_of.items()}
        in_layer = np.bincount(self.layer.grp_pred, minlength=len(self.layer.predicates))
        layer_counts = in_layer.copy()
        for pid, count in enumerate(in_layer.tolist()):
            name = self.layer.predicate(pid)
            if name in self.predicates:
                base = self.predicates[name]
                now[base] = now.get(base, int(base_counts[base])) + count
                layer_counts[pid] = now[base]
        return now, layer_counts

    def prominence(self, key: int) -> tuple[int, int, int]:
        _, base_entities, base_keys = self._base
        changed, layer_counts = self._counts
        size = len(self.subject_keys(key))
        if key < base_keys:
            pid = int(self.grp_pred[key])
            return int(self.grp_ent[key]), changed.get(pid, int(self.predicate_key_counts[pid])), size
        layer_key = key - base_keys
        return (int(self.layer.grp_ent[layer_key]) + base_entities,
                int(layer_counts[int(self.layer.grp_pred[layer_key])]), size)

    def predicate_names(self) -> list[str]:
        changed, _ = self._counts
        gone = {self.predicate(pid) for pid, count in changed.items() if count == 0}
        return sorted((set(super().predicate_names()) - gone) | set(self.layer.predicate_names()))

    def sampled_keys(self, predicate: str) -> tuple[np.ndarray, np.ndarray]:
        at = self._sampled.get(predicate)
        if at is None:  # a predicate no change touched: the base's sample stands
            return super().sampled_keys(predicate)
        span = slice(int(self._sample_start[at]), int(self._sample_start[at + 1]))
        return self._sample_key[span], self._sample_hash[span]


class LayeredTrie:
    """The surface trie of a `LayeredIndex`: the base trie's keys less its `pruned` edges (the
    hidden surfaces' last edges, and edges into nodes below which every key is pruned) and the
    layer trie's keys (values `offset` past the base's), walked together with `TokenTrie`'s two
    queries. Node ids: the root is ROOT, a base node keeps its id, a node only the layer has is
    the layer's id past the base's nodes, and a node both have (a prefix they share) gets an id
    past both when first reached."""

    def __init__(self, base: TokenTrie, layer: TokenTrie, offset: int, pruned: np.ndarray) -> None:
        self.base, self.layer, self.offset = base, layer, offset
        self.base_nodes = len(base.first) - 1
        self.layer_nodes = len(layer.first) - 1
        self.pruned: dict[int, set[int]] = {}
        for node, token in pruned.reshape(-1, 2).tolist():
            self.pruned.setdefault(node, set()).add(token)
        self.shared: list[tuple[int, int]] = []  # (base node, layer node) of each shared node past both
        self.shared_ids: dict[tuple[int, int], int] = {(ROOT, ROOT): ROOT}
        self.merged: dict[int, np.ndarray] = {}  # children of shared nodes and pruned base nodes

    def _sides(self, node: int) -> tuple[int | None, int | None]:
        if node == ROOT:
            return ROOT, ROOT
        if node < self.base_nodes:
            return node, None
        if node < self.base_nodes + self.layer_nodes:
            return None, node - self.base_nodes
        return self.shared[node - self.base_nodes - self.layer_nodes]

    def children(self, node: int) -> np.ndarray:
        """Token ids allowed after the prefix that reached `node`."""
        base, layer = self._sides(node)
        if layer is None and base not in self.pruned:
            return self.base.children(base)
        if base is None:
            return self.layer.children(layer)
        found = self.merged.get(node)
        if found is None:
            found = self.base.children(base)
            if base in self.pruned:
                found = found[~np.isin(found, list(self.pruned[base]))]
            if layer is not None:
                found = np.union1d(found, self.layer.children(layer)).astype(found.dtype)
            self.merged[node] = found
        return found

    def edges(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(the tokens allowed after `node`, where each leads)."""
        tokens = self.children(node)
        return tokens, np.array([self.step(node, token) for token in tokens.tolist()], dtype=np.int64)

    def step(self, node: int, token: int) -> int | None:
        """Follow one token: a node id (>= 0), a completed key's `-(value + 1)`, or None."""
        base, layer = self._sides(node)
        in_base = None if base is None or token in self.pruned.get(base, ()) else self.base.step(base, token)
        in_layer = None if layer is None else self.layer.step(layer, token)
        if in_layer is None:
            return in_base
        if in_layer < 0:  # the layer's surface: it is the changed one where both end here
            return in_layer - self.offset
        if in_base is None or in_base < 0:
            return in_layer + self.base_nodes
        shared = self.shared_ids.get((in_base, in_layer))
        if shared is None:
            shared = self.shared_ids[in_base, in_layer] = self.base_nodes + self.layer_nodes + len(self.shared)
            self.shared.append((in_base, in_layer))
        return shared
