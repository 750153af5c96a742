"""One segment of the persistent KB index, read side: the arrays of some subjects, opened by
memory map and queried in the segment's own ids. An index (`kgqa.kb.index`) is a list of
segments; a segment is written once (`kgqa.kb.build.write_segment`) and never changed after, and
knows nothing of the others.

A KB *key* is one (S, P, M): a subject surface, a predicate and a disambiguation; its objects
are what the key answers. Layout, one id space per level, each level a CSR range into the next:
    surface (marisa id) -> entities (one per disambiguation M) -> keys (one per predicate; the
    arrays call them `grp_*`) -> objects (file order; the first is the answer) -> their bytes in
    `strings.bin`
plus `surfaces.*.npy`, a TokenTrie over `tokens(S) [SEP]` whose values are surface ids, the
surfaces by spelling key and by sound (`kgqa.kb.spellings`), and per predicate a sample of its keys
(those of the smallest hashes of their strings).

Every order a query returns is the content's, never the ids' (which change whenever a string is
added): a surface's entities by disambiguation, an entity's keys by predicate, a key's objects in
file order, a predicate's sample by key hash. So the segments of an updated index answer exactly
as one rebuilt from the changed KB.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, Iterator

import marisa_trie
import numpy as np

from kgqa.errors import DamagedIndex, KgqaError
from kgqa.kb.mapped import load, random_access
from kgqa.kb.segment_format import (ARRAYS, HEADER, HEADER_FIELDS, PREDICATES, SAMPLES, STRINGS, SURFACE_TRIE,
                                    SURFACES, array_path, path)
from kgqa.kb.spellings import Spellings
from kgqa.kb.trie import TokenTrie
from kgqa.kb.triples import Fact



class Segment:
    """An opened segment; every id here is the segment's own."""

    ent_start: np.ndarray  # surface -> its first entity; len surfaces + 1
    ent_m: np.ndarray  # entity -> disambiguation string id
    m_offset: np.ndarray  # disambiguation string id -> its bytes in strings.bin
    ent_sid: np.ndarray  # entity -> surface
    grp_start: np.ndarray  # entity -> its first key; len entities + 1
    grp_pred: np.ndarray  # key -> predicate (marisa id)
    grp_ent: np.ndarray  # key -> entity
    obj_start: np.ndarray  # key -> its first object; len keys + 1
    obj_offset: np.ndarray  # object -> its bytes in strings.bin
    pred_count: np.ndarray  # predicate -> its keys
    pred_sample_start: np.ndarray  # predicate -> its first sampled key; len predicates + 1
    pred_sample_key: np.ndarray  # up to SAMPLE_KEPT keys of each predicate, by key hash
    pred_sample_hash: np.ndarray  # their key hashes (uint64), ascending within a predicate
    pred_sample_offset: np.ndarray  # their first objects' bytes in samples.bin; len samples + 1

    def __init__(self, directory: str) -> None:
        """Open a segment and check that its parts agree in size: a truncated or half-copied
        segment is a `DamagedIndex` here, never an IndexError (or a wrong answer) mid-decode."""
        try:
            with open(path(directory, HEADER), encoding="utf-8") as handle:
                self.header = json.load(handle)
        except FileNotFoundError:
            raise KgqaError(f"not a kgqa index segment (no {HEADER})", directory) from None
        except (OSError, ValueError) as error:
            raise DamagedIndex(f"unreadable {HEADER} ({error})", directory) from None
        missing = [name for name in HEADER_FIELDS if not isinstance(self.header, dict) or name not in self.header]
        if missing:
            raise DamagedIndex(f"segment header lacks {', '.join(missing)}", directory)
        self.directory = directory
        try:
            self.surfaces = marisa_trie.Trie()
            self.surfaces.mmap(path(directory, SURFACES))
            self.predicates = marisa_trie.Trie()
            self.predicates.mmap(path(directory, PREDICATES))
            (self.ent_start, self.ent_m, self.m_offset, self.ent_sid, self.grp_start, self.grp_pred, self.grp_ent,
             self.obj_start, self.obj_offset, self.pred_count, self.pred_sample_start, self.pred_sample_key,
             self.pred_sample_hash, self.pred_sample_offset) = (
                load(array_path(directory, name)) for name in ARRAYS)
            self.blob, self.sample_blob = (
                random_access(np.memmap(file, dtype=np.uint8, mode="r")) if os.path.getsize(file) else np.zeros(0, np.uint8)
                for file in (path(directory, STRINGS), path(directory, SAMPLES)))
            self.surface_trie = TokenTrie.open(directory, SURFACE_TRIE, load)
            self.spellings = Spellings(directory, self.surfaces)
        except Exception as error:  # numpy, marisa and the OS each raise their own kind for a damaged file
            raise DamagedIndex(f"{type(error).__name__}: {error}", directory) from None
        problem = self._inconsistency()
        if problem:
            raise DamagedIndex(problem, directory)

    def _inconsistency(self) -> str | None:
        """What does not add up between the header and the arrays (lengths and end points only:
        cheap on a 20M-triple segment), or None."""
        h = self.header
        groups, objects = len(self.grp_pred), len(self.obj_offset) - 1
        trie = self.surface_trie
        checks = [
            (len(self.surfaces) == h["surfaces"], "surface count"),
            (len(self.predicates) == h["predicates"], "predicate count"),
            (len(self.ent_start) == h["surfaces"] + 1 and self.ent_start[-1] == h["entities"], "ent_start"),
            (len(self.ent_m) == h["entities"] and len(self.ent_sid) == h["entities"], "entity arrays"),
            (len(self.grp_start) == h["entities"] + 1 and self.grp_start[-1] == groups, "grp_start"),
            (len(self.grp_ent) == groups, "grp_ent"),
            (len(self.obj_start) == groups + 1 and self.obj_start[-1] == objects, "obj_start"),
            (objects >= 0 and len(self.m_offset) >= 1, "offsets"),
            (len(self.pred_count) == h["predicates"], "pred_count"),
            (len(self.pred_sample_start) == h["predicates"] + 1
             and self.pred_sample_start[-1] == len(self.pred_sample_key) == len(self.pred_sample_hash)
             == len(self.pred_sample_offset) - 1 and self.pred_sample_offset[-1] == len(self.sample_blob),
             "predicate samples"),
            (objects >= 0 and self.obj_offset[-1] == self.m_offset[0], "obj_offset"),
            (len(self.m_offset) >= 1 and self.m_offset[-1] == len(self.blob), "strings.bin size"),
            (len(trie.first) >= 1 and trie.first[-1] == len(trie.tokens) == len(trie.targets), "surface trie"),
        ]
        wrong = [what for ok, what in checks if not ok]
        return f"{', '.join(wrong)} disagree with the segment header" if wrong else None

    @property
    def triples(self) -> int:
        return int(self.header["triples"])

    # -- strings ---------------------------------------------------------------------------
    def _string(self, offsets: np.ndarray, at: int) -> str:
        return bytes(self.blob[int(offsets[at]):int(offsets[at + 1])]).decode("utf-8")

    def disambiguation(self, entity: int) -> str:
        return self._string(self.m_offset, int(self.ent_m[entity]))

    def surface(self, sid: int) -> str:
        return self.surfaces.restore_key(sid)

    def surface_id(self, surface: str) -> int | None:
        return self.surfaces.get(surface)

    def predicate(self, pid: int) -> str:
        return self.predicates.restore_key(pid)

    # -- keys --------------------------------------------------------------------------------
    def keys(self, sid: int) -> Iterator[tuple[int, str, str]]:
        """(key id, predicate, disambiguation) of every key under one surface."""
        for entity in range(int(self.ent_start[sid]), int(self.ent_start[sid + 1])):
            disambiguation = self.disambiguation(entity)
            for key in range(int(self.grp_start[entity]), int(self.grp_start[entity + 1])):
                yield key, self.predicate(int(self.grp_pred[key])), disambiguation

    def surface_keys(self, sid: int) -> range:
        """The key ids under one surface (they are consecutive)."""
        return range(int(self.grp_start[self.ent_start[sid]]), int(self.grp_start[self.ent_start[sid + 1]]))

    def subject_triples(self, sid: int) -> list[tuple[int, str, str, list[str]]]:
        """(key id, predicate, disambiguation, objects) of every key under one surface, in `keys`
        order: a surface's objects lie together in `strings.bin`, read in one slice."""
        keys = self.surface_keys(sid)
        starts = self.obj_start[keys.start:keys.stop + 1].tolist()
        offsets = self.obj_offset[starts[0]:starts[-1] + 1].tolist()
        data = bytes(self.blob[offsets[0]:offsets[-1]])
        objects = [data[a - offsets[0]:b - offsets[0]].decode("utf-8") for a, b in zip(offsets, offsets[1:])]
        return [(key, predicate, disambiguation, objects[starts[at] - starts[0]:starts[at + 1] - starts[0]])
                for at, (key, predicate, disambiguation) in enumerate(self.keys(sid))]

    def subject_keys(self, key: int) -> range:
        """Every key of the subject entity (surface and disambiguation) that `key` belongs to."""
        entity = int(self.grp_ent[key])
        return range(int(self.grp_start[entity]), int(self.grp_start[entity + 1]))

    def surface_of(self, key: int) -> int:
        return int(self.ent_sid[int(self.grp_ent[key])])

    def fact(self, key: int) -> Fact:
        entity = int(self.grp_ent[key])
        objects = [self._string(self.obj_offset, i)
                   for i in range(int(self.obj_start[key]), int(self.obj_start[key + 1]))]
        return Fact(self.surface(int(self.ent_sid[entity])), self.predicate(int(self.grp_pred[key])),
                      self.disambiguation(entity), objects)

    def first_object(self, key: int) -> str:
        return self._string(self.obj_offset, int(self.obj_start[key]))

    # -- predicates ----------------------------------------------------------------------------
    def sampled_keys(self, predicate: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, their hashes, their places in the sample) of the up to SAMPLE_KEPT keys of
        `predicate` with the smallest hashes."""
        pid = self.predicates.get(predicate)
        if pid is None:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64)
        start, stop = int(self.pred_sample_start[pid]), int(self.pred_sample_start[pid + 1])
        return self.pred_sample_key[start:stop], self.pred_sample_hash[start:stop], np.arange(start, stop)

    def sample_object(self, place: int) -> str:
        """The first object of the sampled key at `place` (kept beside the sample's others)."""
        return bytes(self.sample_blob[int(self.pred_sample_offset[place]):int(self.pred_sample_offset[place + 1])]
                     ).decode("utf-8")

    def predicate_keys(self, predicate: str) -> tuple[np.ndarray, np.ndarray]:
        """(keys, their hashes) of every key of `predicate` (a scan of the segment)."""
        pid = self.predicates.get(predicate)
        keys = np.flatnonzero(np.asarray(self.grp_pred) == pid) if pid is not None else np.zeros(0, np.int64)
        entities = self.grp_ent[keys]
        return keys, key_hashes(string_hashes(self.surface(int(s)) for s in self.ent_sid[entities]),
                                string_hashes(self.disambiguation(int(e)) for e in entities),
                                string_hashes([predicate] * len(keys)))


def string_hashes(strings: Iterable[str]) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes, the same in every process (Python's `hash` is
    salted per process)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")
                        for s in strings), np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every output bit depends on every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def key_hashes(surface: np.ndarray, disambiguation: np.ndarray, predicate: np.ndarray) -> np.ndarray:
    """The hash of each key from its strings' `string_hashes`: what orders a predicate's keys
    for its sample."""
    with np.errstate(over="ignore"):
        return _mix(_mix(_mix(surface) ^ disambiguation) ^ predicate)
