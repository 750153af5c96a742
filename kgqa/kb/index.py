"""The persistent KB index, read side: a list of immutable segments (`kgqa.kb.segment`) named by
a manifest, queried as one index by surface and KB key.

The manifest (`header.json`) is the commit point: it names the segments, oldest first, and for
each the file of its surfaces hidden by later segments (changed or removed since it was written),
and is replaced atomically by whatever writes the index (`kgqa.kb.build`, `kgqa.kb.update`,
`kgqa.kb.merge`). A subject surface is live in exactly one segment, whole, so a surface's keys,
an entity's keys and the tail trie of `P [SEP] M [EOS]` each come from one segment. Ids of the
segments are kept apart by offsets (`kgqa.kb.ids`). Across segments: the subject names a question
writes are the segments' less hidden surfaces (`names`, `kgqa.kb.names`), the surface trie their
union, a predicate's key count a sum and its sample the smallest key hashes among the segments'
samples (`predicates`, `kgqa.kb.predicates`).
Every order a query returns is fixed by the KB's content, so an index of several segments
answers exactly as one rebuilt from the same triples.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Iterator

import numpy as np

from kgqa.errors import DamagedIndex, KgqaError
from kgqa.kb.ids import Offsets
from kgqa.kb.manifest import HEADER, read_manifest
from kgqa.kb.names import Names
from kgqa.kb.predicates import PREDICATE_SAMPLE, Predicates
from kgqa.kb.segment import Segment
from kgqa.kb.triples import Fact
from kgqa.kb.trie import Trie, TokenTrie
from kgqa.kb.trie_union import TrieUnion
from kgqa.model.tokenizer import Tokenizer
from kgqa.spelling import FINGERPRINT

log = logging.getLogger("kgqa.kb.index")

__all__ = ["DamagedIndex", "KBIndex"]

TAIL_CACHE = 65536  # surfaces whose `P [SEP] M [EOS]` trie is kept once built
_OPEN_TRIES = 3  # a writer may swap the manifest and drop old segments while this one opens


class KBIndex:
    """An opened index. `tokenizer` is the one it was built with: the tries hold its token ids."""

    def __init__(self, directory: str, tokenizer: Tokenizer | None = None) -> None:
        """Open the manifest and every segment it names, checking that they agree: a truncated or
        half-copied index is a `KgqaError` here, never an IndexError (or a wrong answer) mid-decode."""
        self.directory = directory
        self.tokenizer = tokenizer
        for attempt in range(_OPEN_TRIES):
            header_path = os.path.join(directory, HEADER)
            self.manifest = read_manifest(directory)
            self.identity = _identity(header_path)
            try:
                self._open_segments()
                break
            except KgqaError:
                if attempt + 1 == _OPEN_TRIES or not self.replaced():
                    raise
        # per index, not per process: a cache on the method would keep every index ever opened alive
        self.tail_trie = functools.lru_cache(maxsize=TAIL_CACHE)(self._tail_trie)

    def _open_segments(self) -> None:
        directory = self.directory
        self.segments: list[Segment] = []
        self.hidden: list[np.ndarray] = []  # per segment: its surface ids later segments hide (sorted)
        self.pruned: list[np.ndarray] = []  # per segment: (node, token) edges of its trie left out
        for entry in self.manifest.segments:
            try:
                segment = Segment(os.path.join(directory, entry.name))
            except DamagedIndex as error:
                raise DamagedIndex(f"segment {entry.name}: {error.problem}", directory) from None
            except KgqaError:
                raise DamagedIndex(f"segment {entry.name} is missing", directory) from None
            files = entry.deletes_files()
            try:
                hidden, cut = ((np.load(os.path.join(directory, files[part])) for part in ("hidden", "pruned"))
                               if files else (np.zeros(0, np.int64), np.zeros((0, 2), np.int64)))
            except Exception as error:  # numpy and the OS each raise their own kind for a damaged file
                raise DamagedIndex(f"{entry.deletes}: {type(error).__name__}: {error}", directory) from None
            if segment.header.get("spelling") != FINGERPRINT:
                raise KgqaError(f"segment {entry.name} was built with other spelling tables "
                                f"({segment.header.get('spelling')}; this kgqa has {FINGERPRINT}): rebuild this "
                                "index with `kgqa index` (a cached one is rebuilt by itself)", directory)
            if segment.header.get("tokenizer_sha256") != self.manifest.tokenizer_sha256 \
                    or segment.triples != entry.triples or len(hidden) != entry.hidden_surfaces:
                raise DamagedIndex(f"segment {entry.name} disagrees with the manifest", directory)
            self.segments.append(segment)
            self.hidden.append(hidden)
            self.pruned.append(cut.reshape(-1, 2))
        surface_offsets = Offsets(len(s.surfaces) for s in self.segments)
        self._entity_offsets = Offsets(len(s.ent_sid) for s in self.segments)
        self._key_offsets = Offsets(len(s.grp_pred) for s in self.segments)
        self.names = Names(self.segments, [set(hidden.tolist()) for hidden in self.hidden], surface_offsets)
        self.predicates = Predicates(self.segments, self.hidden, self._key_offsets)
        whole = len(self.segments) == 1 and not len(self.hidden[0])
        self.surface_trie: Trie = self.segments[0].surface_trie if whole else TrieUnion(
            [s.surface_trie for s in self.segments], surface_offsets.starts[:-1], self.pruned)

    def replaced(self) -> bool:
        """Whether the directory now holds another index than the one opened: an update, merge or
        rebuild committed since (each replaces the manifest whole). False while a rebuild's swap
        leaves no manifest."""
        try:
            return _identity(os.path.join(self.directory, HEADER)) != self.identity
        except FileNotFoundError:
            return False

    def followed(self, tokenizer: Tokenizer) -> KBIndex | None:
        """The index now in this one's directory where an update or a rebuild was swapped in since
        it was opened (`kgqa update CHANGES --index DIR`, `kgqa index NEW_KB -o DIR`); None where
        none was, and where the new one cannot be opened or was built with another tokenizer (said
        in a warning: the one in use stays, and the next call tries again)."""
        if not self.replaced():
            return None
        try:
            opened = KBIndex(self.directory, tokenizer)
        except KgqaError as error:
            log.warning("kgqa: the index in %s changed but cannot be opened (%s); answering from the one before",
                        self.directory, error)
            return None
        if opened.manifest.tokenizer_sha256 != tokenizer.sha256:
            log.warning("kgqa: the index in %s changed to one of another tokenizer; answering from the one before",
                        self.directory)
            return None
        return opened

    def matches(self, kb_sha256: str, tokenizer: Tokenizer) -> bool:
        """Whether this index holds the KB file of hash `kb_sha256` (with any updates applied to
        it since: those are the user's, and a rebuild from the file would drop them)."""
        return self.manifest.kb_sha256 == kb_sha256 and self.manifest.tokenizer_sha256 == tokenizer.sha256

    @property
    def version(self) -> str:
        """What the answers come from: the KB file's hash, or after updates a hash of it and of
        each change file applied in turn."""
        return self.manifest.version or self.manifest.kb_sha256

    @property
    def triples(self) -> int:
        """How many triples the index answers from."""
        return self.manifest.triples

    # -- keys --------------------------------------------------------------------------------
    @property
    def key_count(self) -> int:
        """The size of the key id space (`answer` takes 0 ... key_count - 1 where `is_live`)."""
        return self._key_offsets.total

    def is_live(self, key: int) -> bool:
        """Whether a key id is one of the KB's now (a segment keeps the ids of surfaces a later
        one hides)."""
        if not 0 <= key < self.key_count:
            return False
        i, local = self._key_offsets.locate(key)
        return self.names.live_in(i, self.segments[i].surface_of(local))

    def keys(self, sid: int) -> Iterator[tuple[int, str, str]]:
        """(key id, predicate, disambiguation) of every KB key under one surface."""
        i, local = self.names.offsets.locate(sid)
        offset = self._key_offsets[i]
        for key, predicate, disambiguation in self.segments[i].keys(local):
            yield key + offset, predicate, disambiguation

    def surface_size(self, sid: int) -> int:
        """How many KB keys one surface has (all its entities'): how much the KB holds of the name."""
        i, local = self.names.offsets.locate(sid)
        return len(self.segments[i].surface_keys(local))

    def subject_triples(self, sid: int) -> list[tuple[int, str, str, list[str]]]:
        """(key id, predicate, disambiguation, objects) of every key under one surface, in `keys` order."""
        i, local = self.names.offsets.locate(sid)
        offset = self._key_offsets[i]
        return [(key + offset, *rest) for key, *rest in self.segments[i].subject_triples(local)]

    def fact(self, key: int) -> Fact:
        i, local = self._key_offsets.locate(key)
        return self.segments[i].fact(local)

    def first_object(self, key: int) -> str:
        """A key's answer: its first object."""
        i, local = self._key_offsets.locate(key)
        return self.segments[i].first_object(local)

    def surface_of(self, key: int) -> int:
        """The surface id a KB key's subject has."""
        i, local = self._key_offsets.locate(key)
        return self.segments[i].surface_of(local) + self.names.offsets[i]

    def subject_keys(self, key: int) -> range:
        """Every KB key of the subject entity (surface and disambiguation) that `key` belongs to."""
        i, local = self._key_offsets.locate(key)
        found, offset = self.segments[i].subject_keys(local), self._key_offsets[i]
        return range(found.start + offset, found.stop + offset)

    def prominence(self, key: int) -> tuple[int, int, int]:
        """(subject entity, how many KB keys carry this key's predicate, how many keys its subject
        entity has): the reranker weighs a predicate by how common it is in the KB, among the
        subject's others, and a subject by how much the KB holds of it."""
        i, local = self._key_offsets.locate(key)
        segment = self.segments[i]
        entity, pid = int(segment.grp_ent[local]), int(segment.grp_pred[local])
        keys = int(segment.grp_start[entity + 1] - segment.grp_start[entity])
        return entity + self._entity_offsets[i], self.predicates.count_of(i, pid), keys

    def _tail_trie(self, sid: int) -> TokenTrie:
        """The trie of `P [SEP] M [EOS]` under one surface; values are key ids."""
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise ValueError("this index was opened without its tokenizer: it can answer lookups, not decode")
        encode = functools.lru_cache(maxsize=None)(tokenizer.encode)
        return TokenTrie.build(
            (encode(p) + [tokenizer.sep_id] + encode(m) + [tokenizer.eos_id], key)
            for key, p, m in self.keys(sid)
        )


def _identity(header_path: str) -> tuple[int, int, int]:
    """What tells one written header file from another: inode, size and modification time."""
    found = os.stat(header_path)
    return found.st_ino, found.st_size, found.st_mtime_ns
