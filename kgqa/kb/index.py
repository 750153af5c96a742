"""The persistent KB index, read side: opened by memory map, queried by surface and KB key.

A KB *key* is one (S, P, M): a subject surface, a predicate and a disambiguation; its objects
are what the key answers. Layout, one id space per level, each level a CSR range into the next:
    surface (marisa id) -> entities (one per disambiguation M) -> keys (one per predicate; the
    arrays call them `grp_*`) -> objects (file order; the first is the answer) -> their bytes in
    `strings.bin`
plus `surfaces.*.npy`, a TokenTrie over `tokens(S) [SEP]` whose values are surface ids. The rest
of a key, `P [SEP] M [EOS]`, is a tiny trie built per surface when decoding reaches it: a surface
has tens of keys, and building those on demand keeps the index to the size of the KB.

Everything a query returns is in an order the KB's content fixes, never its ids (which change
whenever a string is added): a surface's entities by disambiguation, an entity's keys by predicate,
a key's objects in file order, a predicate's sampled keys by a hash of their strings. So an index
updated in place (`kgqa.kb.layered`) answers exactly as one rebuilt from the changed KB.
`kgqa.kb.build` builds an index and finds or builds the one for a KB and tokenizer.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Iterable, Iterator, NamedTuple

import marisa_trie
import numpy as np

from kgqa.errors import KgqaError
from kgqa.model.tokenizer import Tokenizer
from kgqa.kb.trie import TokenTrie

FORMAT_VERSION = 4
HEADER = "header.json"
_HEADER_FIELDS = ("kb_sha256", "tokenizer_sha256", "triples", "skipped", "surfaces", "entities", "predicates")
ARRAYS = ("ent_start", "ent_m", "m_offset", "ent_sid", "grp_start", "grp_pred", "grp_ent", "obj_start",
          "obj_offset", "pred_sample_start", "pred_sample_key", "pred_sample_hash")
PREDICATE_SAMPLE = 64  # keys of each predicate whose objects say what the predicate holds
SAMPLE_KEPT = 2 * PREDICATE_SAMPLE  # kept per predicate, so that an update removing some can still fill the sample
TAIL_CACHE = 65536  # surfaces whose `P [SEP] M [EOS]` trie is kept once built


class Answer(NamedTuple):
    surface: str
    predicate: str
    disambiguation: str
    objects: list[str]


class DamagedIndex(KgqaError):
    """An index whose files are unreadable or disagree with each other (a kill mid-copy, a full disk)."""

    def __init__(self, problem: str, directory: str) -> None:
        super().__init__(f"damaged index: {problem} (rebuild it with `kgqa index`, or remove it)", directory)


class KBIndex:
    """An opened index. `tokenizer` is the one it was built with: the tries hold its token ids."""

    ent_start: np.ndarray  # surface -> its first entity; len surfaces + 1
    ent_m: np.ndarray  # entity -> disambiguation string id
    m_offset: np.ndarray  # disambiguation string id -> its bytes in strings.bin
    ent_sid: np.ndarray  # entity -> surface
    grp_start: np.ndarray  # entity -> its first key; len entities + 1
    grp_pred: np.ndarray  # key -> predicate (marisa id)
    grp_ent: np.ndarray  # key -> entity
    obj_start: np.ndarray  # key -> its first object; len keys + 1
    obj_offset: np.ndarray  # object -> its bytes in strings.bin
    pred_sample_start: np.ndarray  # predicate -> its first sampled key; len predicates + 1
    pred_sample_key: np.ndarray  # up to SAMPLE_KEPT keys of each predicate, by key hash
    pred_sample_hash: np.ndarray  # their key hashes (uint64), ascending within a predicate

    def __init__(self, directory: str, tokenizer: Tokenizer | None = None) -> None:
        """Open an index and check that its parts agree in size: a truncated or half-copied
        index is a `KgqaError` here, never an IndexError (or a wrong answer) mid-decode."""
        header_path = os.path.join(directory, HEADER)
        try:
            with open(header_path, encoding="utf-8") as handle:
                self.header = json.load(handle)
        except FileNotFoundError:
            raise KgqaError(f"not a kgqa index (no {HEADER})", directory) from None
        except (OSError, ValueError) as error:
            raise DamagedIndex(f"unreadable {HEADER} ({error})", directory) from None
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT_VERSION:
            found = self.header.get("format") if isinstance(self.header, dict) else None
            raise KgqaError(f"index format {found}, this kgqa reads {FORMAT_VERSION}", directory)
        if "layer" in self.header and type(self) is KBIndex:
            raise KgqaError("an updated index (base and layer): open it with kgqa.kb.layered.open_index", directory)
        missing = [key for key in _HEADER_FIELDS if key not in self.header]
        if missing:
            raise DamagedIndex(f"header lacks {', '.join(missing)}", directory)
        self.directory = directory
        self.tokenizer = tokenizer
        self.identity = _identity(header_path)
        # per index, not per process: a cache on the method would keep every index ever opened alive
        self.tail_trie = functools.lru_cache(maxsize=TAIL_CACHE)(self._tail_trie)
        try:
            self.surfaces = marisa_trie.Trie()
            self.surfaces.mmap(os.path.join(directory, "surfaces.marisa"))
            self.predicates = marisa_trie.Trie()
            self.predicates.mmap(os.path.join(directory, "predicates.marisa"))
            (self.ent_start, self.ent_m, self.m_offset, self.ent_sid, self.grp_start, self.grp_pred, self.grp_ent,
             self.obj_start, self.obj_offset, self.pred_sample_start, self.pred_sample_key, self.pred_sample_hash) = (
                np.asarray(np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r")) for name in ARRAYS)
            strings = os.path.join(directory, "strings.bin")
            # a plain ndarray view of the map: slicing an np.memmap costs several times more per call
            self.blob = np.asarray(np.memmap(strings, dtype=np.uint8, mode="r")) if os.path.getsize(strings) \
                else np.zeros(0, np.uint8)
            self.surface_trie = TokenTrie.open(directory, "surfaces")
        except Exception as error:  # numpy, marisa and the OS each raise their own kind for a damaged file
            raise DamagedIndex(f"{type(error).__name__}: {error}", directory) from None
        problem = self._inconsistency()
        if problem:
            raise DamagedIndex(problem, directory)

    def _inconsistency(self) -> str | None:
        """What does not add up between the header and the arrays (lengths and end points only:
        cheap on a 20M-triple index), or None."""
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
            (len(self.pred_sample_start) == h["predicates"] + 1
             and self.pred_sample_start[-1] == len(self.pred_sample_key) == len(self.pred_sample_hash),
             "predicate samples"),
            (objects >= 0 and self.obj_offset[-1] == self.m_offset[0], "obj_offset"),
            (len(self.m_offset) >= 1 and self.m_offset[-1] == len(self.blob), "strings.bin size"),
            (len(trie.first) >= 1 and trie.first[-1] == len(trie.tokens) == len(trie.targets), "surface trie"),
        ]
        wrong = [what for ok, what in checks if not ok]
        return f"{', '.join(wrong)} disagree with the header" if wrong else None

    def replaced(self) -> bool:
        """Whether the directory now holds another index than the one opened: a rebuild swapped in
        (`kgqa index` writes a new directory and renames it into place, so the header read here is
        the whole old index's or the whole new one's). False while the swap leaves no header."""
        try:
            return _identity(os.path.join(self.directory, HEADER)) != self.identity
        except FileNotFoundError:
            return False

    def matches(self, kb_sha256: str, tokenizer: Tokenizer) -> bool:
        """Whether this index holds the KB file of hash `kb_sha256` (with any updates applied to
        it since: those are the user's, and a rebuild from the file would drop them)."""
        return self.header["kb_sha256"] == kb_sha256 and self.header["tokenizer_sha256"] == tokenizer.sha256

    @property
    def version(self) -> str:
        """What the answers come from: the KB file's hash, or after updates a hash of it and of
        each change file applied in turn."""
        return self.header.get("version", self.header["kb_sha256"])

    @property
    def triples(self) -> int:
        """How many triples the index answers from."""
        return int(self.header["triples"])

    # -- strings ---------------------------------------------------------------------------
    def _string(self, offsets: np.ndarray, at: int) -> str:
        return bytes(self.blob[int(offsets[at]):int(offsets[at + 1])]).decode("utf-8")

    def disambiguation(self, entity: int) -> str:
        return self._string(self.m_offset, int(self.ent_m[entity]))

    def surface(self, sid: int) -> str:
        return self.surfaces.restore_key(sid)

    def surface_id(self, surface: str) -> int | None:
        """The id of a KB subject surface, or None where the KB has no such subject."""
        return self.surfaces.get(surface)

    def predicate(self, pid: int) -> str:
        return self.predicates.restore_key(pid)

    # -- queries ---------------------------------------------------------------------------
    def mentions(self, question: str) -> list[int]:
        """Surface ids of every KB subject occurring in the question, longest first."""
        ids = (self.surface_id(key) for key in sorted(self._mentioned(question), key=lambda key: (-len(key), key)))
        return [sid for sid in ids if sid is not None]

    def _mentioned(self, question: str) -> set[str]:
        """The surfaces the string trie finds in the question."""
        return {key for start in range(len(question)) for key in self.surfaces.prefixes(question[start:])}

    @property
    def key_count(self) -> int:
        """The size of the key id space (`answer` takes 0 ... key_count - 1 where `is_live`)."""
        return len(self.grp_pred)

    def is_live(self, key: int) -> bool:
        """Whether a key id is one of the KB's now (an updated index keeps its base's ids of
        changed subjects, hidden)."""
        return 0 <= key < len(self.grp_pred)

    def predicate_names(self) -> list[str]:
        """Every predicate the KB holds."""
        return list(self.predicates.keys())

    def keys(self, sid: int) -> Iterator[tuple[int, str, str]]:
        """(key id, predicate, disambiguation) of every KB key under one surface."""
        for entity in range(int(self.ent_start[sid]), int(self.ent_start[sid + 1])):
            disambiguation = self.disambiguation(entity)
            for key in range(int(self.grp_start[entity]), int(self.grp_start[entity + 1])):
                yield key, self.predicate(int(self.grp_pred[key])), disambiguation

    @functools.cached_property
    def predicate_key_counts(self) -> np.ndarray:
        """Keys per predicate id in this index's own arrays (an updated index's: its base's)."""
        return np.bincount(self.grp_pred, minlength=len(self.predicates))

    def prominence(self, key: int) -> tuple[int, int, int]:
        """(subject entity, how many KB keys carry this key's predicate, how many keys its subject
        entity has): the reranker weighs a predicate by how common it is in the KB, among the
        subject's others, and a subject by how much the KB holds of it."""
        return (int(self.grp_ent[key]), int(self.predicate_key_counts[int(self.grp_pred[key])]),
                len(self.subject_keys(key)))

    def subject_keys(self, key: int) -> range:
        """Every KB key of the subject entity (surface and disambiguation) that `key` belongs to."""
        entity = int(self.grp_ent[key])
        return range(int(self.grp_start[entity]), int(self.grp_start[entity + 1]))

    def surface_of(self, key: int) -> int:
        """The surface id a KB key's subject has."""
        return int(self.ent_sid[int(self.grp_ent[key])])

    def subject_triples(self, sid: int) -> list[tuple[int, str, str, list[str]]]:
        """(key id, predicate, disambiguation, objects) of every key under one surface, in `keys`
        order: a surface's objects lie together in `strings.bin`, read in one slice."""
        first, last = int(self.ent_start[sid]), int(self.ent_start[sid + 1])
        keys = range(int(self.grp_start[first]), int(self.grp_start[last]))
        starts = self.obj_start[keys.start:keys.stop + 1].tolist()
        offsets = self.obj_offset[starts[0]:starts[-1] + 1].tolist()
        data = bytes(self.blob[offsets[0]:offsets[-1]])
        objects = [data[a - offsets[0]:b - offsets[0]].decode("utf-8") for a, b in zip(offsets, offsets[1:])]
        return [(key, predicate, disambiguation, objects[starts[at] - starts[0]:starts[at + 1] - starts[0]])
                for at, (key, predicate, disambiguation) in enumerate(self.keys(sid))]

    def answer(self, key: int) -> Answer:
        entity = int(self.grp_ent[key])
        objects = [self._string(self.obj_offset, i)
                   for i in range(int(self.obj_start[key]), int(self.obj_start[key + 1]))]
        return Answer(self.surface(int(self.ent_sid[entity])), self.predicate(int(self.grp_pred[key])),
                      self.disambiguation(entity), objects)

    def predicate_objects(self, predicate: str) -> list[str]:
        """First objects of up to PREDICATE_SAMPLE keys carrying `predicate` across the whole KB
        (those of the smallest `key_hashes`: a sample the KB's content fixes); [] for a predicate
        the KB does not hold. What kind of thing a predicate holds is read off these
        (`kgqa.rank.answer_kinds`)."""
        return [self.first_object(int(key)) for key in self.sampled_keys(predicate)[0][:PREDICATE_SAMPLE]]

    def sampled_keys(self, predicate: str) -> tuple[np.ndarray, np.ndarray]:
        """(keys, their hashes) of the up to SAMPLE_KEPT keys of `predicate` with the smallest hashes."""
        if predicate not in self.predicates:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        pid = self.predicates[predicate]
        span = slice(int(self.pred_sample_start[pid]), int(self.pred_sample_start[pid + 1]))
        return self.pred_sample_key[span], self.pred_sample_hash[span]

    def first_object(self, key: int) -> str:
        """A key's answer: its first object."""
        return self._string(self.obj_offset, int(self.obj_start[key]))

    def lookup(self, surface: str, predicate: str, disambiguation: str) -> Answer | None:
        sid = self.surface_id(surface)
        if sid is None:
            return None
        for key, p, m in self.keys(sid):
            if p == predicate and m == disambiguation:
                return self.answer(key)
        return None

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


def _identity(header_path: str) -> tuple[int, int, int]:
    """What tells one written header file from another: inode, size and modification time."""
    found = os.stat(header_path)
    return found.st_ino, found.st_size, found.st_mtime_ns
