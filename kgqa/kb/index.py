"""The persistent KB index, read side: a list of immutable segments (`kgqa.kb.segment`) named by
a manifest, queried as one index by surface and KB key.

The manifest (`header.json`) is the commit point: it names the segments, oldest first, and for
each the file of its surfaces hidden by later segments (changed or removed since it was written),
and is replaced atomically by whatever writes the index (`kgqa.kb.build`, `kgqa.kb.update`,
`kgqa.kb.merge`). A subject surface is live in exactly one segment, whole, so a surface's keys,
an entity's keys and the tail trie of `P [SEP] M [EOS]` each come from one segment. Ids of the
segments are kept apart by offsets (a segment's surface, entity and key ids follow those of the
segments before it); `_locate` is the one place that turns an id into (segment, its own id).
Across segments: mentions and the surface trie are unions less hidden surfaces, a predicate's
key count a sum, a predicate's sample the smallest key hashes among the segments' samples.
Every order a query returns is fixed by the KB's content, so an index of several segments
answers exactly as one rebuilt from the same triples.
"""
from __future__ import annotations

import bisect
import functools
import logging
import os
from typing import Iterator

import numpy as np

from kgqa.errors import DamagedIndex, KgqaError
from kgqa.kb.manifest import HEADER, read_manifest
from kgqa.kb.segment import Segment
from kgqa.kb.segment_format import SAMPLE_KEPT
from kgqa.kb.triples import Fact
from kgqa.kb.trie import Trie, TokenTrie
from kgqa.kb.trie_union import TrieUnion
from kgqa.model.tokenizer import Tokenizer
from kgqa.spelling import FINGERPRINT

log = logging.getLogger("kgqa.kb.index")

__all__ = ["DamagedIndex", "KBIndex", "PREDICATE_SAMPLE"]

PREDICATE_SAMPLE = 64  # keys of each predicate whose objects say what the predicate holds
TAIL_CACHE = 65536  # surfaces whose `P [SEP] M [EOS]` trie is kept once built
COUNT_CACHE = 65536  # predicates whose key count across segments is kept once summed
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
        self._count = functools.lru_cache(maxsize=COUNT_CACHE)(self._predicate_count)

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
        self._hidden_sets = [set(hidden.tolist()) for hidden in self.hidden]
        self._surface_offsets = _offsets(len(s.surfaces) for s in self.segments)
        self._entity_offsets = _offsets(len(s.ent_sid) for s in self.segments)
        self._key_offsets = _offsets(len(s.grp_pred) for s in self.segments)
        whole = len(self.segments) == 1 and not len(self.hidden[0])
        self.surface_trie: Trie = self.segments[0].surface_trie if whole else TrieUnion(
            [s.surface_trie for s in self.segments], self._surface_offsets[:-1], self.pruned)

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

    # -- ids ---------------------------------------------------------------------------------
    def _locate(self, offsets: list[int], at: int) -> tuple[int, int]:
        """(segment, its own id) of a surface, entity or key id (`offsets` of that kind)."""
        if len(offsets) == 2:
            return 0, at
        i = bisect.bisect_right(offsets, at) - 1
        return i, at - offsets[i]

    def live_in(self, i: int, sid: int) -> bool:
        """Whether segment i's own surface `sid` is live (no later segment hides it)."""
        return sid not in self._hidden_sets[i]

    # -- surfaces ------------------------------------------------------------------------------
    def surface(self, sid: int) -> str:
        i, local = self._locate(self._surface_offsets, sid)
        return self.segments[i].surface(local)

    def surface_id(self, surface: str) -> int | None:
        """The id of a KB subject surface, or None where the KB has no such subject."""
        found = self.locate_surface(surface)
        return None if found is None else self._surface_offsets[found[0]] + found[1]

    def locate_surface(self, surface: str) -> tuple[int, int] | None:
        """(segment, its own surface id) of the segment a surface is live in, or None."""
        for i, segment in enumerate(self.segments):
            local = segment.surface_id(surface)
            if local is not None and self.live_in(i, local):
                return i, local
        return None

    def mentions(self, question: str) -> list[int]:
        """Surface ids of every KB subject occurring in the question, longest first."""
        found = set().union(*(segment.mentioned(question) for segment in self.segments))
        ids = (self.surface_id(surface) for surface in sorted(found, key=lambda surface: (-len(surface), surface)))
        return [sid for sid in ids if sid is not None]

    def spelled(self, folded_text: str) -> list[tuple[int, int, int]]:
        """(start, stop, surface id) of every KB subject whose spelling key (`kgqa.spelling.fold`)
        is folded_text[start:stop], shortest spans first at each start."""
        return self._live(match for segment in self.segments for match in segment.spelled(folded_text))

    def sounded(self, sound_text: str) -> list[tuple[int, int, int]]:
        """(start, stop, surface id) of every KB subject of at least `spellings.NEAR_CHARS`
        characters whose folded name sounds like sound_text[start:stop] (`kgqa.spelling.sound`)."""
        return self._live(match for segment in self.segments for match in segment.sounded(sound_text))

    def completed(self, folded_prefix: str, limit: int = 64) -> list[int]:
        """Surface ids of up to `limit` KB subjects per segment whose fold begins with
        `folded_prefix`: the names a short form may stand for (兰利号航母: 兰利号航空母舰)."""
        found = {sid for segment in self.segments for surface in segment.completed(folded_prefix, limit)
                 if (sid := self.surface_id(surface)) is not None}
        return sorted(found, key=self.surface)

    def _live(self, matches) -> list[tuple[int, int, int]]:
        """The matches' live surfaces by id, each (start, stop, surface) once, in the content's order."""
        found = {(start, stop, sid) for start, stop, surface in set(matches)
                 if (sid := self.surface_id(surface)) is not None}
        return sorted(found, key=lambda match: (match[0], match[1], self.surface(match[2])))

    # -- keys --------------------------------------------------------------------------------
    @property
    def key_count(self) -> int:
        """The size of the key id space (`answer` takes 0 ... key_count - 1 where `is_live`)."""
        return self._key_offsets[-1]

    def is_live(self, key: int) -> bool:
        """Whether a key id is one of the KB's now (a segment keeps the ids of surfaces a later
        one hides)."""
        if not 0 <= key < self.key_count:
            return False
        i, local = self._locate(self._key_offsets, key)
        return self.live_in(i, self.segments[i].surface_of(local))

    def keys(self, sid: int) -> Iterator[tuple[int, str, str]]:
        """(key id, predicate, disambiguation) of every KB key under one surface."""
        i, local = self._locate(self._surface_offsets, sid)
        offset = self._key_offsets[i]
        for key, predicate, disambiguation in self.segments[i].keys(local):
            yield key + offset, predicate, disambiguation

    def surface_size(self, sid: int) -> int:
        """How many KB keys one surface has (all its entities'): how much the KB holds of the name."""
        i, local = self._locate(self._surface_offsets, sid)
        return len(self.segments[i].surface_keys(local))

    def subject_triples(self, sid: int) -> list[tuple[int, str, str, list[str]]]:
        """(key id, predicate, disambiguation, objects) of every key under one surface, in `keys` order."""
        i, local = self._locate(self._surface_offsets, sid)
        offset = self._key_offsets[i]
        return [(key + offset, *rest) for key, *rest in self.segments[i].subject_triples(local)]

    def fact(self, key: int) -> Fact:
        i, local = self._locate(self._key_offsets, key)
        return self.segments[i].fact(local)

    def first_object(self, key: int) -> str:
        """A key's answer: its first object."""
        i, local = self._locate(self._key_offsets, key)
        return self.segments[i].first_object(local)

    def surface_of(self, key: int) -> int:
        """The surface id a KB key's subject has."""
        i, local = self._locate(self._key_offsets, key)
        return self.segments[i].surface_of(local) + self._surface_offsets[i]

    def subject_keys(self, key: int) -> range:
        """Every KB key of the subject entity (surface and disambiguation) that `key` belongs to."""
        i, local = self._locate(self._key_offsets, key)
        found, offset = self.segments[i].subject_keys(local), self._key_offsets[i]
        return range(found.start + offset, found.stop + offset)

    def prominence(self, key: int) -> tuple[int, int, int]:
        """(subject entity, how many KB keys carry this key's predicate, how many keys its subject
        entity has): the reranker weighs a predicate by how common it is in the KB, among the
        subject's others, and a subject by how much the KB holds of it."""
        i, local = self._locate(self._key_offsets, key)
        segment = self.segments[i]
        entity, pid = int(segment.grp_ent[local]), int(segment.grp_pred[local])
        count = int(self._live_counts[0][pid]) if len(self.segments) == 1 else self._count(segment.predicate(pid))
        return entity + self._entity_offsets[i], count, int(segment.grp_start[entity + 1] - segment.grp_start[entity])

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

    # -- predicates ----------------------------------------------------------------------------
    def _hidden_keys(self, i: int) -> np.ndarray:
        """The key ids of segment i's hidden surfaces."""
        segment, hidden = self.segments[i], self.hidden[i]
        starts = segment.grp_start[segment.ent_start[hidden]]
        stops = segment.grp_start[segment.ent_start[hidden + 1]]
        lengths = stops - starts
        return np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))

    @functools.cached_property
    def _live_counts(self) -> list[np.ndarray]:
        """Per segment, its live keys per predicate id of its own."""
        counts = []
        for i, segment in enumerate(self.segments):
            counts.append(segment.pred_count - np.bincount(segment.grp_pred[self._hidden_keys(i)],
                                                           minlength=len(segment.predicates)))
        return counts

    def _predicate_count(self, predicate: str) -> int:
        """The live keys of a predicate across the segments (read through `_count`, which keeps them)."""
        found = 0
        for segment, counts in zip(self.segments, self._live_counts):
            pid = segment.predicates.get(predicate)
            found += int(counts[pid]) if pid is not None else 0
        return found

    def predicate_names(self) -> list[str]:
        """Every predicate the KB holds."""
        names: set[str] = set()
        for segment, counts in zip(self.segments, self._live_counts):
            names.update(name for name, pid in segment.predicates.items() if counts[pid] > 0)
        return sorted(names)

    def predicate_objects(self, predicate: str) -> list[str]:
        """First objects of up to PREDICATE_SAMPLE keys carrying `predicate` across the whole KB
        (those of the smallest key hashes: a sample the KB's content fixes, whatever its
        segments); [] for a predicate the KB does not hold. What kind of thing a predicate holds
        is read off these (`kgqa.rank.answer_kinds`): a segment keeps its sample's objects side by
        side, so they are read from a page or two, not from a page each."""
        found = []
        for key, place in zip(*self._sample(predicate)):
            i, local = self._locate(self._key_offsets, int(key))
            found.append(self.segments[i].sample_object(int(place)) if place >= 0
                         else self.segments[i].first_object(local))
        return found

    def _sample(self, predicate: str, scan: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(keys, their places in their segment's sample or -1) of the PREDICATE_SAMPLE live keys
        of `predicate` with the smallest hashes. Each segment kept its SAMPLE_KEPT smallest: below
        the smallest largest-kept hash of the segments that kept that many, every live key is
        among those kept; where fewer than PREDICATE_SAMPLE are (most of a sample hidden: rare),
        those segments are `scan`ned whole instead."""
        keys, hashes, places, limit = [], [], [], None
        for i, segment in enumerate(self.segments):
            kept, kept_hashes, kept_places = segment.sampled_keys(predicate)
            if len(kept) >= SAMPLE_KEPT:
                if scan:
                    kept, kept_hashes = segment.predicate_keys(predicate)
                    kept_places = np.full(len(kept), -1, np.int64)
                else:
                    limit = kept_hashes[-1] if limit is None else min(limit, kept_hashes[-1])
            if len(self.hidden[i]):
                live = ~np.isin(segment.ent_sid[segment.grp_ent[kept]], self.hidden[i])
                kept, kept_hashes, kept_places = kept[live], kept_hashes[live], kept_places[live]
            keys.append(np.asarray(kept, np.int64) + self._key_offsets[i])
            hashes.append(np.asarray(kept_hashes, np.uint64))
            places.append(kept_places)
        keys, hashes, places = np.concatenate(keys), np.concatenate(hashes), np.concatenate(places)
        if limit is not None and np.count_nonzero(hashes <= limit) < PREDICATE_SAMPLE:
            return self._sample(predicate, scan=True)
        chosen = np.argsort(hashes, kind="stable")[:PREDICATE_SAMPLE]
        return keys[chosen], places[chosen]


def _offsets(sizes) -> list[int]:
    """0, then the running sums of `sizes`: where each segment's ids begin, and the total."""
    found = [0]
    for size in sizes:
        found.append(found[-1] + size)
    return found


def _identity(header_path: str) -> tuple[int, int, int]:
    """What tells one written header file from another: inode, size and modification time."""
    found = os.stat(header_path)
    return found.st_ino, found.st_size, found.st_mtime_ns
