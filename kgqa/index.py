"""The persistent KB index: built once per (KB content, tokenizer), opened by memory map.

Layout, one id space per level, each level a CSR range into the next:
    surface (marisa id) -> entities (one per disambiguation M) -> groups (one per predicate)
    -> objects (file order; the first is the answer) -> their bytes in `strings.bin`
plus `surfaces.*.npy`, a TokenTrie over `tokens(S) [SEP]` whose values are surface ids. The rest
of a key, `P [SEP] M [EOS]`, is a tiny trie built per surface when decoding reaches it: a surface
has tens of groups, and building those on demand keeps the index to the size of the KB.
"""
from __future__ import annotations

import array
import contextlib
import fcntl
import functools
import json
import os
import sys
from typing import Iterator, NamedTuple

import marisa_trie
import numpy as np

from kgqa.errors import KgqaError
from kgqa.files import atomic_directory, check_replaceable, recover_directory
from kgqa.kb import ReadStats, file_sha256, read_kb
from kgqa.tokenizer import Tokenizer
from kgqa.trie import TokenTrie

FORMAT_VERSION = 2
HEADER = "header.json"
_HEADER_FIELDS = ("kb_sha256", "tokenizer_sha256", "triples", "skipped", "surfaces", "entities", "predicates")
_ARRAYS = ("ent_start", "ent_m", "m_offset", "ent_sid", "grp_start", "grp_pred", "grp_ent", "obj_start",
           "obj_offset")


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
    def __init__(self, directory: str) -> None:
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
        missing = [key for key in _HEADER_FIELDS if key not in self.header]
        if missing:
            raise DamagedIndex(f"header lacks {', '.join(missing)}", directory)
        self.directory = directory
        try:
            self.surfaces = marisa_trie.Trie()
            self.surfaces.mmap(os.path.join(directory, "surfaces.marisa"))
            self.predicates = marisa_trie.Trie()
            self.predicates.mmap(os.path.join(directory, "predicates.marisa"))
            for name in _ARRAYS:
                setattr(self, name, np.asarray(np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r")))
            strings = os.path.join(directory, "strings.bin")
            self.blob = np.memmap(strings, dtype=np.uint8, mode="r") if os.path.getsize(strings) \
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
            (objects >= 0 and self.obj_offset[-1] == self.m_offset[0], "obj_offset"),
            (len(self.m_offset) >= 1 and self.m_offset[-1] == len(self.blob), "strings.bin size"),
            (len(trie.first) >= 1 and trie.first[-1] == len(trie.tokens) == len(trie.targets), "surface trie"),
        ]
        wrong = [what for ok, what in checks if not ok]
        return f"{', '.join(wrong)} disagree with the header" if wrong else None

    def matches(self, kb_sha256: str, tokenizer: Tokenizer) -> bool:
        return self.header["kb_sha256"] == kb_sha256 and self.header["tokenizer_sha256"] == tokenizer.sha256

    # -- strings ---------------------------------------------------------------------------
    def _string(self, offsets: np.ndarray, at: int) -> str:
        return bytes(self.blob[int(offsets[at]):int(offsets[at + 1])]).decode("utf-8")

    def disambiguation(self, entity: int) -> str:
        return self._string(self.m_offset, int(self.ent_m[entity]))

    def surface(self, sid: int) -> str:
        return self.surfaces.restore_key(sid)

    def predicate(self, pid: int) -> str:
        return self.predicates.restore_key(pid)

    # -- queries ---------------------------------------------------------------------------
    def mentions(self, question: str) -> list[int]:
        """Surface ids of every KB subject occurring in the question, longest first."""
        found = {key for start in range(len(question)) for key in self.surfaces.prefixes(question[start:])}
        return [self.surfaces[key] for key in sorted(found, key=lambda key: (-len(key), key))]

    def groups(self, sid: int) -> Iterator[tuple[int, str, str]]:
        """(group id, predicate, disambiguation) of every key under one surface."""
        for entity in range(int(self.ent_start[sid]), int(self.ent_start[sid + 1])):
            disambiguation = self.disambiguation(entity)
            for group in range(int(self.grp_start[entity]), int(self.grp_start[entity + 1])):
                yield group, self.predicate(int(self.grp_pred[group])), disambiguation

    def answer(self, group: int) -> Answer:
        entity = int(self.grp_ent[group])
        objects = [self._string(self.obj_offset, i)
                   for i in range(int(self.obj_start[group]), int(self.obj_start[group + 1]))]
        return Answer(self.surface(int(self.ent_sid[entity])), self.predicate(int(self.grp_pred[group])),
                      self.disambiguation(entity), objects)

    def lookup(self, surface: str, predicate: str, disambiguation: str) -> Answer | None:
        if surface not in self.surfaces:
            return None
        for group, p, m in self.groups(self.surfaces[surface]):
            if p == predicate and m == disambiguation:
                return self.answer(group)
        return None

    @functools.lru_cache(maxsize=65536)
    def tail_trie(self, sid: int, tokenizer: Tokenizer) -> TokenTrie:
        """The trie of `P [SEP] M [EOS]` under one surface; values are group ids."""
        encode = functools.lru_cache(maxsize=None)(tokenizer.encode)
        return TokenTrie.build(
            (encode(p) + [tokenizer.sep_id] + encode(m) + [tokenizer.eos_id], group)
            for group, p, m in self.groups(sid)
        )

    # -- building --------------------------------------------------------------------------
    @staticmethod
    def build(kb_path: str, tokenizer: Tokenizer, directory: str, strict: bool = False,
              kb_sha256: str | None = None, progress: bool = False, cached: bool = False) -> "KBIndex":
        """Read the KB once, write every array to a temporary directory, then rename it in.

        Sized for the real KB (20M triples) on a 24 GB machine: the read keeps one id per
        distinct string (surfaces, disambiguations, predicates) and five numbers plus the bytes
        of the object per triple, no Python object per triple; the levels then come from one
        numpy sort. A repeated (S, P, O) keeps its first line and is counted as skipped.
        `directory` may replace an earlier index there (any directory when `cached`: the cache is
        kgqa's own), never a directory of the user's.
        """
        from tqdm import tqdm

        replaceable = (lambda _: True) if cached else (lambda path: os.path.isfile(os.path.join(path, HEADER)))
        check_replaceable(directory, replaceable, "index")
        stats = ReadStats()
        surface_ids: dict[str, int] = {}
        m_ids: dict[str, int] = {"": 0}
        predicate_ids: dict[str, int] = {}
        sids, mids, pids = array.array("i"), array.array("i"), array.array("i")
        hashes, offsets, blob = array.array("q"), array.array("q", [0]), bytearray()
        for triple in tqdm(read_kb(kb_path, strict, stats), desc="reading KB", unit=" triples",
                           disable=not progress, mininterval=2):
            sids.append(surface_ids.setdefault(triple.surface, len(surface_ids)))
            mids.append(m_ids.setdefault(triple.disambiguation, len(m_ids)))
            pids.append(predicate_ids.setdefault(triple.predicate, len(predicate_ids)))
            encoded = triple.obj.encode("utf-8")
            hashes.append(hash(encoded))
            blob += encoded
            offsets.append(len(blob))
        surfaces = marisa_trie.Trie(surface_ids)
        predicates = marisa_trie.Trie(predicate_ids)
        s = _renumbered(surface_ids, surfaces)[np.frombuffer(sids, np.int32)]
        p = _renumbered(predicate_ids, predicates)[np.frombuffer(pids, np.int32)]
        m = np.frombuffer(mids, np.int32)
        starts = np.frombuffer(offsets, np.int64)
        lengths = np.diff(starts)
        digest = np.frombuffer(hashes, np.int64)
        data = np.frombuffer(blob, np.uint8)
        order = np.lexsort((np.arange(len(s)), digest, lengths, p, m, s))
        first, then = order[:-1], order[1:]
        repeat = np.zeros(len(order), bool)
        repeat[1:] = ((s[first] == s[then]) & (m[first] == m[then]) & (p[first] == p[then])
                      & (lengths[first] == lengths[then]) & (digest[first] == digest[then]))
        for at in np.flatnonzero(repeat):  # a hash match is confirmed byte for byte
            repeat[at] = np.array_equal(_gather(data, starts, order[at - 1:at]), _gather(data, starts, order[at:at + 1]))
        if repeat.any():
            stats.skipped["duplicate triples"] = int(repeat.sum())
        if stats.skipped and progress:
            tqdm.write(f"warning: {kb_path}: {stats.summary()}", file=sys.stderr)
        kept = order[~repeat]
        order = kept[np.lexsort((kept, p[kept], m[kept], s[kept]))]  # file order within a group
        s, m, p = s[order], m[order], p[order]
        new_entity = np.ones(len(order), bool)
        new_entity[1:] = (s[1:] != s[:-1]) | (m[1:] != m[:-1])
        new_group = new_entity.copy()
        new_group[1:] |= p[1:] != p[:-1]
        group_first = np.flatnonzero(new_group)
        entity_first = np.flatnonzero(new_entity)
        ent_sid = s[entity_first].astype(np.int32)
        obj_offset = np.concatenate([[0], np.cumsum(lengths[order])]).astype(np.int64)
        m_bytes = [key.encode("utf-8") for key in m_ids]
        n = len(surfaces)
        arrays = {
            "ent_start": np.searchsorted(ent_sid, np.arange(n + 1)).astype(np.int64),
            "ent_m": m[entity_first].astype(np.int32),
            "m_offset": obj_offset[-1] + np.concatenate([[0], np.cumsum([len(b) for b in m_bytes])]).astype(np.int64),
            "ent_sid": ent_sid,
            "grp_start": np.append(np.searchsorted(group_first, entity_first), len(group_first)).astype(np.int64),
            "grp_pred": p[group_first].astype(np.int32),
            "grp_ent": (np.cumsum(new_entity) - 1)[group_first].astype(np.int32),
            "obj_start": np.append(group_first, len(order)).astype(np.int64),
            "obj_offset": obj_offset,
        }
        by_sid = surfaces.restore_key
        surface_trie = TokenTrie.build(
            (tokenizer.encode(by_sid(sid)) + [tokenizer.sep_id], sid)
            for sid in tqdm(range(n), desc="surface trie", disable=not progress, mininterval=2)
        )
        header = {
            "format": FORMAT_VERSION,
            "kb_sha256": kb_sha256 or file_sha256(kb_path),
            "tokenizer_sha256": tokenizer.sha256,
            "kb_path": os.path.abspath(kb_path),
            "triples": stats.triples,
            "skipped": stats.skipped,
            "surfaces": n,
            "entities": len(ent_sid),
            "predicates": len(predicates),
        }
        with atomic_directory(directory, replaceable, "index") as temp:
            surfaces.save(os.path.join(temp, "surfaces.marisa"))
            predicates.save(os.path.join(temp, "predicates.marisa"))
            for name, values in arrays.items():
                np.save(os.path.join(temp, f"{name}.npy"), values)
            with open(os.path.join(temp, "strings.bin"), "wb") as handle:
                for chunk in range(0, len(order), 1 << 20):
                    handle.write(_gather(data, starts, order[chunk:chunk + (1 << 20)]).tobytes())
                handle.write(b"".join(m_bytes))
            surface_trie.save(temp, "surfaces")
            with open(os.path.join(temp, HEADER), "w", encoding="utf-8") as handle:
                json.dump(header, handle, ensure_ascii=False, indent=1)
        return KBIndex(directory)


def _gather(data: np.ndarray, starts: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The bytes of objects `picks` (each data[starts[k]:starts[k + 1]]), concatenated in order."""
    lengths = starts[picks + 1] - starts[picks]
    begin = starts[picks] - np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return data[np.repeat(begin, lengths) + np.arange(int(lengths.sum()))]


def _renumbered(first_seen: dict[str, int], trie: marisa_trie.Trie) -> np.ndarray:
    """old id (first-seen order) -> marisa id."""
    mapping = np.empty(len(first_seen), np.int32)
    for key, old in first_seen.items():
        mapping[old] = trie[key]
    return mapping


def cache_root() -> str:
    return os.environ.get("KGQA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kgqa")


def check_kb_path(kb_path: str) -> None:
    if not os.path.exists(kb_path):
        raise KgqaError("no such file", kb_path)
    if os.path.isdir(kb_path):
        raise KgqaError("is a directory, expected a KB file", kb_path)


@contextlib.contextmanager
def index_lock(directory: str) -> Iterator[None]:
    """Processes sharing an index (torchrun's ranks, predicts side by side, `kgqa index`) take
    turns: one builds, the others wait and then open what it built, instead of swapping
    directories under each other."""
    directory = os.path.abspath(directory)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    with open(directory + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        recover_directory(directory)
        yield


def ensure_index(kb_path: str, tokenizer: Tokenizer, directory: str | None = None,
                 strict: bool = False, progress: bool = False) -> KBIndex:
    """Open the index for this KB and tokenizer, building it first when none matches.

    An index records the hashes it was built from; one built from another KB or tokenizer is
    rebuilt, never used, so an answer can't come from the wrong KB. A damaged index in the cache
    is rebuilt; a damaged one the user named (`--index`) is their file: an error says so.
    """
    check_kb_path(kb_path)
    kb_sha256 = file_sha256(kb_path)
    cached = directory is None
    if cached:
        directory = os.path.join(cache_root(), "index", f"{kb_sha256[:16]}-{tokenizer.sha256[:16]}")
    directory = os.path.abspath(directory)
    with index_lock(directory):
        if os.path.isfile(os.path.join(directory, HEADER)):
            try:
                index = KBIndex(directory)
            except DamagedIndex:
                if not cached:
                    raise
            except KgqaError:
                pass  # an index of an older format: rebuilt below
            else:
                if index.matches(kb_sha256, tokenizer):
                    return index
        return KBIndex.build(kb_path, tokenizer, directory, strict=strict, kb_sha256=kb_sha256, progress=progress,
                             cached=cached)
