"""The persistent KB index: built once per (KB content, tokenizer), opened by memory map.

Layout, one id space per level, each level a CSR range into the next:
    surface (marisa id) -> entities (one per disambiguation M) -> groups (one per predicate)
    -> objects (file order; the first is the answer)
plus `surfaces.*.npy`, a TokenTrie over `tokens(S) [SEP]` whose values are surface ids. The rest
of a key, `P [SEP] M [EOS]`, is a tiny trie built per surface when decoding reaches it: a surface
has tens of groups, and building those on demand keeps the index to the size of the KB.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Iterator, NamedTuple

import marisa_trie
import numpy as np

from kgqa.errors import KgqaError
from kgqa.files import atomic_directory
from kgqa.kb import ReadStats, file_sha256, read_kb
from kgqa.tokenizer import Tokenizer
from kgqa.trie import TokenTrie

FORMAT_VERSION = 1
HEADER = "header.json"
_ARRAYS = ("ent_start", "ent_m", "ent_sid", "grp_start", "grp_pred", "grp_ent", "obj_start", "obj_span")


class Answer(NamedTuple):
    surface: str
    predicate: str
    disambiguation: str
    objects: list[str]


class KBIndex:
    def __init__(self, directory: str) -> None:
        header_path = os.path.join(directory, HEADER)
        try:
            with open(header_path, encoding="utf-8") as handle:
                self.header = json.load(handle)
        except (OSError, ValueError) as error:
            raise KgqaError(f"not a kgqa index ({error})", directory) from None
        if self.header.get("format") != FORMAT_VERSION:
            raise KgqaError(f"index format {self.header.get('format')}, this kgqa reads {FORMAT_VERSION}", directory)
        self.directory = directory
        self.surfaces = marisa_trie.Trie()
        self.surfaces.mmap(os.path.join(directory, "surfaces.marisa"))
        self.predicates = marisa_trie.Trie()
        self.predicates.mmap(os.path.join(directory, "predicates.marisa"))
        for name in _ARRAYS:
            setattr(self, name, np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r"))
        self.blob = np.memmap(os.path.join(directory, "strings.bin"), dtype=np.uint8, mode="r") \
            if os.path.getsize(os.path.join(directory, "strings.bin")) else np.zeros(0, np.uint8)
        self.surface_trie = TokenTrie.open(directory, "surfaces")

    def matches(self, kb_sha256: str, tokenizer: Tokenizer) -> bool:
        return self.header["kb_sha256"] == kb_sha256 and self.header["tokenizer_sha256"] == tokenizer.sha256

    # -- strings ---------------------------------------------------------------------------
    def _string(self, span: np.ndarray) -> str:
        return bytes(self.blob[int(span[0]):int(span[1])]).decode("utf-8")

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
            disambiguation = self._string(self.ent_m[entity])
            for group in range(int(self.grp_start[entity]), int(self.grp_start[entity + 1])):
                yield group, self.predicate(int(self.grp_pred[group])), disambiguation

    def answer(self, group: int) -> Answer:
        entity = int(self.grp_ent[group])
        objects = [self._string(self.obj_span[i])
                   for i in range(int(self.obj_start[group]), int(self.obj_start[group + 1]))]
        return Answer(self.surface(int(self.ent_sid[entity])), self.predicate(int(self.grp_pred[group])),
                      self._string(self.ent_m[entity]), objects)

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
              kb_sha256: str | None = None, progress: bool = False) -> "KBIndex":
        """Read the KB once, write every array to a temporary directory, then rename it in."""
        from tqdm import tqdm

        stats = ReadStats()
        # surface -> M -> predicate -> objects; insertion order keeps file order at every level.
        tree: dict[str, dict[str, dict[str, list[str]]]] = {}
        for triple in tqdm(read_kb(kb_path, strict, stats), desc="reading KB", unit=" triples",
                           disable=not progress, mininterval=2):
            objects = tree.setdefault(triple.surface, {}).setdefault(triple.disambiguation, {}) \
                .setdefault(triple.predicate, [])
            if triple.obj not in objects:
                objects.append(triple.obj)
        surfaces = marisa_trie.Trie(tree.keys())
        predicates = marisa_trie.Trie({p for ents in tree.values() for preds in ents.values() for p in preds})
        n = len(surfaces)
        by_sid = [""] * n
        for key, sid in surfaces.items():
            by_sid[sid] = key
        blob = bytearray()

        def span(text: str) -> tuple[int, int]:
            data = text.encode("utf-8")
            blob.extend(data)
            return len(blob) - len(data), len(blob)

        ent_start, ent_m, ent_sid, grp_start, grp_pred, grp_ent, obj_start, obj_span = ([0], [], [], [0], [], [], [0], [])
        for sid, surface in enumerate(by_sid):
            for m, preds in tree[surface].items():
                ent_m.append(span(m))
                ent_sid.append(sid)
                for p, objects in preds.items():
                    grp_pred.append(predicates[p])
                    grp_ent.append(len(ent_sid) - 1)
                    obj_span.extend(span(o) for o in objects)
                    obj_start.append(len(obj_span))
                grp_start.append(len(grp_pred))
            ent_start.append(len(ent_sid))
        arrays = {
            "ent_start": np.asarray(ent_start, np.int64), "ent_m": np.asarray(ent_m, np.int64).reshape(-1, 2),
            "ent_sid": np.asarray(ent_sid, np.int32), "grp_start": np.asarray(grp_start, np.int64),
            "grp_pred": np.asarray(grp_pred, np.int32), "grp_ent": np.asarray(grp_ent, np.int32),
            "obj_start": np.asarray(obj_start, np.int64), "obj_span": np.asarray(obj_span, np.int64).reshape(-1, 2),
        }
        surface_trie = TokenTrie.build(
            (tokenizer.encode(surface) + [tokenizer.sep_id], sid)
            for sid, surface in enumerate(tqdm(by_sid, desc="surface trie", disable=not progress, mininterval=2))
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
        with atomic_directory(directory) as temp:
            surfaces.save(os.path.join(temp, "surfaces.marisa"))
            predicates.save(os.path.join(temp, "predicates.marisa"))
            for name, array in arrays.items():
                np.save(os.path.join(temp, f"{name}.npy"), array)
            with open(os.path.join(temp, "strings.bin"), "wb") as handle:
                handle.write(blob)
            surface_trie.save(temp, "surfaces")
            with open(os.path.join(temp, HEADER), "w", encoding="utf-8") as handle:
                json.dump(header, handle, ensure_ascii=False, indent=1)
        return KBIndex(directory)


def cache_root() -> str:
    return os.environ.get("KGQA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kgqa")


def ensure_index(kb_path: str, tokenizer: Tokenizer, directory: str | None = None,
                 strict: bool = False, progress: bool = False) -> KBIndex:
    """Open the index for this KB and tokenizer, building it first when none matches.

    An index records the hashes it was built from; one built from another KB or tokenizer is
    rebuilt, never used, so an answer can't come from the wrong KB.
    """
    if not os.path.exists(kb_path):
        raise KgqaError("no such file", kb_path)
    if os.path.isdir(kb_path):
        raise KgqaError("is a directory, expected a KB file", kb_path)
    kb_sha256 = file_sha256(kb_path)
    if directory is None:
        directory = os.path.join(cache_root(), "index", f"{kb_sha256[:16]}-{tokenizer.sha256[:16]}")
    if os.path.isfile(os.path.join(directory, HEADER)):
        try:
            index = KBIndex(directory)
            if index.matches(kb_sha256, tokenizer):
                return index
        except KgqaError:
            pass  # a stale or foreign index: rebuilt below
    return KBIndex.build(kb_path, tokenizer, directory, strict=strict, kb_sha256=kb_sha256, progress=progress)
