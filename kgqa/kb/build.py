"""The persistent KB index, write side: `build_index` turns a KB file into the segments and
manifest `KBIndex` opens, `write_segment` writes one segment of triples, and `ensure_index` finds
the index of a KB and tokenizer in the cache, or builds it.

A segment is built in memory: one id per distinct string (surfaces, disambiguations, predicates)
and five numbers plus the bytes of the object per triple, no Python object per triple; the levels
then come from one numpy sort (about 250 bytes a triple at the peak). A KB larger than
`segment_triples` is first split by a hash of the subject surface into parts of about that many
triples (every surface whole in one part), each built as a segment in turn: the build's memory
is bounded by that setting, not by the KB.
"""
from __future__ import annotations

import array
import contextlib
import fcntl
import gzip
import json
import math
import multiprocessing
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import marisa_trie
import numpy as np

from kgqa.errors import KgqaError
from kgqa.errors import DamagedIndex
from kgqa.files import atomic_directory, check_replaceable, file_sha256, readable_file, recover_directory
from kgqa.kb.index import KBIndex
from kgqa.kb.manifest import HEADER, Manifest, SegmentEntry, write_manifest
from kgqa.kb.segment import key_hashes, string_hashes
from kgqa.kb import segment_format as fmt
from kgqa.kb.spellings import write_spellings
from kgqa.spelling import FINGERPRINT
from kgqa.kb.triples import ReadStats, bad_line, bad_lines_said, read_kb
from kgqa.model.tokenizer import Tokenizer
from kgqa.kb.trie import TokenTrie

SEGMENT_TRIPLES = 25_000_000  # a build splits a larger KB into segments of about this many triples


@dataclass
class TripleArrays:
    """Triples as flat arrays, in file order: per triple a surface, disambiguation and predicate
    id (first-seen numbering), and the object's bytes (`blob[offsets[i]:offsets[i + 1]]`)."""

    surface_ids: dict[str, int] = field(default_factory=dict)
    m_ids: dict[str, int] = field(default_factory=lambda: {"": 0})
    predicate_ids: dict[str, int] = field(default_factory=dict)
    sids: array.array = field(default_factory=lambda: array.array("i"))
    mids: array.array = field(default_factory=lambda: array.array("i"))
    pids: array.array = field(default_factory=lambda: array.array("i"))
    hashes: array.array = field(default_factory=lambda: array.array("q"))
    offsets: array.array = field(default_factory=lambda: array.array("q", [0]))
    blob: bytearray = field(default_factory=bytearray)

    def add(self, surface: str, disambiguation: str, predicate: str, obj: str) -> None:
        self.sids.append(self.surface_ids.setdefault(surface, len(self.surface_ids)))
        self.mids.append(self.m_ids.setdefault(disambiguation, len(self.m_ids)))
        self.pids.append(self.predicate_ids.setdefault(predicate, len(self.predicate_ids)))
        encoded = obj.encode("utf-8")
        self.hashes.append(hash(encoded))
        self.blob += encoded
        self.offsets.append(len(self.blob))


def _read(kb_path: str, skip_bad_lines: bool, stats: ReadStats, progress: bool) -> TripleArrays:
    from tqdm import tqdm

    t = TripleArrays()
    # `or None`: tqdm draws no bar where stderr is no terminal (a log)
    for triple in tqdm(read_kb(kb_path, skip_bad_lines, stats), desc="reading KB", unit=" triples",
                       disable=not progress or None, mininterval=2):
        t.add(triple.surface, triple.disambiguation, triple.predicate, triple.obj)
    return t


def _repeats(s: np.ndarray, m: np.ndarray, p: np.ndarray, starts: np.ndarray, digest: np.ndarray,
             data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(an order of the triples, which of them in that order repeat the triple before): a repeated
    (S, M, P, O) keeps its first line. A hash match is confirmed byte for byte."""
    lengths = np.diff(starts)
    order = np.lexsort((np.arange(len(s)), digest, lengths, p, m, s))
    first, then = order[:-1], order[1:]
    repeat = np.zeros(len(order), bool)
    repeat[1:] = ((s[first] == s[then]) & (m[first] == m[then]) & (p[first] == p[then])
                  & (lengths[first] == lengths[then]) & (digest[first] == digest[then]))
    for at in np.flatnonzero(repeat):
        repeat[at] = np.array_equal(_gather(data, starts, order[at - 1:at]), _gather(data, starts, order[at:at + 1]))
    return order, repeat


def _levels(s: np.ndarray, m: np.ndarray, p: np.ndarray, lengths: np.ndarray, m_bytes: list[bytes],
            surfaces: int, predicates: int, hashes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """The CSR arrays KBIndex reads, from the kept triples sorted by (S, M, P, file order) (M and
    P by their strings); `lengths` are their objects' byte lengths in that order, `hashes` the
    `string_hashes` of the surfaces, disambiguations and predicates by id."""
    surface_h, m_h, p_h = hashes
    new_entity = np.ones(len(s), bool)
    new_entity[1:] = (s[1:] != s[:-1]) | (m[1:] != m[:-1])
    new_key = new_entity.copy()
    new_key[1:] |= p[1:] != p[:-1]
    key_first = np.flatnonzero(new_key)
    entity_first = np.flatnonzero(new_entity)
    ent_sid = s[entity_first].astype(np.int32)
    obj_offset = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return {
        "ent_start": np.searchsorted(ent_sid, np.arange(surfaces + 1)).astype(np.int64),
        "ent_m": m[entity_first].astype(np.int32),
        "m_offset": obj_offset[-1] + np.concatenate([[0], np.cumsum([len(b) for b in m_bytes])]).astype(np.int64),
        "ent_sid": ent_sid,
        "grp_start": np.append(np.searchsorted(key_first, entity_first), len(key_first)).astype(np.int64),
        "grp_pred": p[key_first].astype(np.int32),
        "grp_ent": (np.cumsum(new_entity) - 1)[key_first].astype(np.int32),
        "obj_start": np.append(key_first, len(s)).astype(np.int64),
        "obj_offset": obj_offset,
        "pred_count": np.bincount(p[key_first], minlength=predicates).astype(np.int64),
        **_predicate_samples(p[key_first], key_hashes(surface_h[s[key_first]], m_h[m[key_first]], p_h[p[key_first]]),
                             predicates),
    }


def _predicate_samples(key_pred: np.ndarray, key_hash: np.ndarray, predicates: int) -> dict[str, np.ndarray]:
    """The SAMPLE_KEPT keys of each predicate with the smallest hashes (keys are sorted by subject,
    so the first ones would all be early in the alphabet; a hash of the key's strings picks the
    same sample from any index of the same KB, updated or rebuilt): what a predicate's objects are
    like is read off their first objects (`KBIndex.predicate_objects`)."""
    by_predicate = np.lexsort((key_hash, key_pred))
    counts = np.bincount(key_pred, minlength=predicates)
    first = np.cumsum(counts) - counts
    rank = np.arange(len(by_predicate)) - np.repeat(first, counts)
    picked = by_predicate[rank < fmt.SAMPLE_KEPT]
    return {"pred_sample_start": np.concatenate([[0], np.cumsum(np.minimum(counts, fmt.SAMPLE_KEPT))]).astype(np.int64),
            "pred_sample_key": picked.astype(np.int64), "pred_sample_hash": key_hash[picked]}


def build_index(kb_path: str, tokenizer: Tokenizer, directory: str, skip_bad_lines: bool = False,
                kb_sha256: str | None = None, progress: bool = False, cached: bool = False,
                segment_triples: int = SEGMENT_TRIPLES, jobs: int = 1) -> KBIndex:
    """Read the KB, write its segments and manifest to a temporary directory, then rename it in.
    A KB split into parts has them built by `jobs` processes at once (memory: `jobs` segments').

    `directory` may replace an earlier index there (any directory when `cached`: the cache is
    kgqa's own), never a directory of the user's: that is refused before the KB is read.
    """
    readable_file(kb_path, "a KB file")
    replaceable = (lambda _: True) if cached else is_index
    check_replaceable(directory, replaceable, "index")
    stats = ReadStats()
    parts = _parts(kb_path, segment_triples)
    with atomic_directory(directory, replaceable, "index") as temp:
        if parts == 1:
            os.mkdir(os.path.join(temp, "s000000"))
            built = [write_segment(_read(kb_path, skip_bad_lines, stats, progress), tokenizer, os.path.join(temp, "s000000"))]
        else:
            built = _build_parts(_split(kb_path, skip_bad_lines, stats, parts, temp, progress), tokenizer, temp, jobs)
        # what reading the KB left out, then what each part did
        manifest = Manifest(kb_sha256 or file_sha256(kb_path), tokenizer.sha256, kb_path=os.path.abspath(kb_path),
                            skipped=dict(stats.skipped), bad_lines=stats.bad, first_bad_lines=stats.first_bad)
        for header in built:
            name = manifest.new_segment_name()
            if header is not None:
                manifest.segments.append(SegmentEntry(name, header["triples"]))
                for why, count in header["skipped"].items():
                    manifest.skipped[why] = manifest.skipped.get(why, 0) + count
        write_manifest(temp, manifest)
    return KBIndex(directory, tokenizer)


def _parts(kb_path: str, segment_triples: int) -> int:
    """How many parts to split the KB into: its size over `segment_triples` lines of the length
    its first lines have (1: built whole, and for a file with nothing to read: its reader says so)."""
    size = os.path.getsize(kb_path) * (4 if kb_path.endswith(".gz") else 1)  # gzip: about a quarter
    with (gzip.open if kb_path.endswith(".gz") else open)(kb_path, "rb") as handle:
        head = handle.read(1 << 22)
    if not head:
        return 1
    line = len(head) / max(1, head.count(b"\n"))
    return max(1, math.ceil(size / line / segment_triples))


def _split(kb_path: str, skip_bad_lines: bool, stats: ReadStats, parts: int, temp: str, progress: bool) -> list[str]:
    """The KB's triples written to `parts` files in `temp` by a hash of the surface (so every
    surface is whole in one), checked, as S, M, P, O lines in file order."""
    from tqdm import tqdm

    paths = [os.path.join(temp, f".part{part}.tsv") for part in range(parts)]
    outputs = [open(path, "w", encoding="utf-8") for path in paths]
    try:
        # `or None`: tqdm draws no bar where stderr is no terminal (a log)
        for t in tqdm(read_kb(kb_path, skip_bad_lines, stats), desc="splitting KB", unit=" triples",
                      disable=not progress or None, mininterval=2):
            outputs[zlib.crc32(t.surface.encode("utf-8")) % parts].write(
                f"{t.surface}\t{t.disambiguation}\t{t.predicate}\t{t.obj}\n")
    finally:
        for output in outputs:
            output.close()
    return paths


_part_tokenizer: Tokenizer | None = None  # the build's, for the processes `_build_parts` forks


def _build_parts(paths: list[str], tokenizer: Tokenizer, temp: str, jobs: int) -> list[dict | None]:
    """Each part file built as segment `s{part:06d}` of `temp` (`jobs` at a time); their headers
    (None for an empty part)."""
    global _part_tokenizer
    tasks = [(path, os.path.join(temp, f"s{part:06d}")) for part, path in enumerate(paths)]
    if jobs == 1:
        return [_build_part(path, segment, tokenizer) for path, segment in tasks]
    _part_tokenizer = tokenizer
    try:
        with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=1) as pool:
            return pool.starmap(_build_part, tasks, chunksize=1)
    finally:
        _part_tokenizer = None


def _build_part(path: str, directory: str, tokenizer: Tokenizer | None = None) -> dict | None:
    triples = TripleArrays()
    with open(path, encoding="utf-8", newline="\n") as handle:
        for line in handle:
            triples.add(*line[:-1].split("\t"))
    os.unlink(path)
    if len(triples.offsets) == 1:
        return None
    os.mkdir(directory)
    return write_segment(triples, tokenizer or _part_tokenizer, directory)


def add_segment(directory: str, manifest: Manifest, triples: TripleArrays, tokenizer: Tokenizer) -> SegmentEntry | None:
    """Write `triples` as a new segment of the index in `directory`, named from `manifest`'s
    counter (advanced), and return its manifest entry; None when there are no triples. Nothing
    names it until the manifest is committed."""
    if len(triples.offsets) == 1:
        return None
    name = manifest.new_segment_name()
    with atomic_directory(os.path.join(directory, name), lambda _: False, "index segment") as temp:
        header = write_segment(triples, tokenizer, temp)
    return SegmentEntry(name, header["triples"])


def is_index(path: str) -> bool:
    """Whether a directory holds a kgqa index (which `kgqa index` and `kgqa update` may replace)."""
    return os.path.isfile(os.path.join(path, HEADER))


def write_segment(t: TripleArrays, tokenizer: Tokenizer, directory: str, progress: bool = False) -> dict:
    """Write the segment of triples `t` into the (empty) `directory` and return its header (counts,
    tokenizer). A repeated (S, M, P, O) keeps its first line and is counted in its "skipped"."""
    from tqdm import tqdm

    header: dict = {"skipped": {}}
    surfaces = marisa_trie.Trie(t.surface_ids)
    predicates = marisa_trie.Trie(t.predicate_ids)
    surface_ids = _renumbered(t.surface_ids, surfaces)
    predicate_ids = _renumbered(t.predicate_ids, predicates)
    s = surface_ids[np.frombuffer(t.sids, np.int32)]
    p = predicate_ids[np.frombuffer(t.pids, np.int32)]
    m = np.frombuffer(t.mids, np.int32)
    starts = np.frombuffer(t.offsets, np.int64)
    data = np.frombuffer(t.blob, np.uint8)
    order, repeat = _repeats(s, m, p, starts, np.frombuffer(t.hashes, np.int64), data)
    if repeat.any():
        header["skipped"]["duplicate triples"] = int(repeat.sum())
    kept = order[~repeat]
    m_names = list(t.m_ids)
    m_rank = _ranks(m_names)
    p_rank = np.empty(len(predicates), np.int64)
    p_rank[predicate_ids] = _ranks(list(t.predicate_ids))
    order = kept[np.lexsort((kept, p_rank[p[kept]], m_rank[m[kept]], s[kept]))]  # file order within a key
    m_bytes = [name.encode("utf-8") for name in m_names]
    surface_h = np.empty(len(surfaces), np.uint64)
    surface_h[surface_ids] = string_hashes(t.surface_ids)
    p_h = np.empty(len(predicates), np.uint64)
    p_h[predicate_ids] = string_hashes(t.predicate_ids)
    arrays = _levels(s[order], m[order], p[order], np.diff(starts)[order], m_bytes, len(surfaces),
                     len(predicates), (surface_h, string_hashes(m_names), p_h))
    surface_trie = TokenTrie.build(
        (tokenizer.encode(surfaces.restore_key(sid)) + [tokenizer.sep_id], sid)
        # `or None`: tqdm draws no bar where stderr is no terminal (a log)
        for sid in tqdm(range(len(surfaces)), desc="surface trie", disable=not progress or None, mininterval=2)
    )
    header.update({"tokenizer_sha256": tokenizer.sha256, "spelling": FINGERPRINT, "triples": len(order),
                   "surfaces": len(surfaces),
                   "entities": len(arrays["ent_sid"]), "predicates": len(predicates)})
    firsts = order[arrays["obj_start"][arrays["pred_sample_key"]]]  # each sampled key's first object
    arrays["pred_sample_offset"] = np.concatenate([[0], np.cumsum(starts[firsts + 1] - starts[firsts])]).astype(np.int64)
    with open(fmt.path(directory, fmt.SAMPLES), "wb") as handle:
        _write_gathered(handle, data, starts, firsts)
    surfaces.save(fmt.path(directory, fmt.SURFACES))
    write_spellings(t.surface_ids, directory)
    predicates.save(fmt.path(directory, fmt.PREDICATES))
    if sorted(arrays) != sorted(fmt.ARRAYS):  # the reader opens exactly these
        raise AssertionError(f"a segment's arrays are {fmt.ARRAYS}, not {tuple(arrays)}")
    for name in fmt.ARRAYS:
        np.save(fmt.array_path(directory, name), arrays[name])
    with open(fmt.path(directory, fmt.STRINGS), "wb") as handle:
        _write_gathered(handle, data, starts, order)
        handle.write(b"".join(m_bytes))
    surface_trie.save(directory, fmt.SURFACE_TRIE)
    with open(fmt.path(directory, fmt.HEADER), "w", encoding="utf-8") as handle:
        json.dump(header, handle, ensure_ascii=False, indent=1)
    return header


def _ranks(names: list[str]) -> np.ndarray:
    """Each name's place in the sorted names: the order content fixes, whatever the ids."""
    ranks = np.empty(len(names), np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    return ranks


def _write_gathered(handle: BinaryIO, data: np.ndarray, starts: np.ndarray, picks: np.ndarray) -> None:
    """Write the bytes of objects `picks` in order, a million at a time (the gather's index
    arrays are eight bytes a byte)."""
    for chunk in range(0, len(picks), 1 << 20):
        handle.write(_gather(data, starts, picks[chunk:chunk + (1 << 20)]).tobytes())


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
                 skip_bad_lines: bool = False, progress: bool = False) -> KBIndex:
    """Open the index for this KB and tokenizer, building it first when none matches.

    An index records the hashes it was built from; one built from another KB or tokenizer is
    rebuilt, never used, so an answer can't come from the wrong KB. A damaged index in the cache
    is rebuilt; a damaged one the user named (`--index`) is their file: an error says so.
    A KB with bad lines is refused at the first, file and line named (`bad_lines_checked`),
    unless `skip_bad_lines`; an index built from it skipping them is refused the same way.
    """
    readable_file(kb_path, "a KB file")
    kb_sha256 = file_sha256(kb_path)
    cached = directory is None
    if cached:
        directory = os.path.join(cache_root(), "index", f"{kb_sha256[:16]}-{tokenizer.sha256[:16]}")
    directory = os.path.abspath(directory)
    with index_lock(directory):
        if os.path.isfile(os.path.join(directory, HEADER)):
            try:
                index = KBIndex(directory, tokenizer)
            except DamagedIndex:
                if not cached:
                    raise
            except KgqaError:
                pass  # an index of an older format: rebuilt below
            else:
                if index.matches(kb_sha256, tokenizer):
                    return bad_lines_checked(index, kb_path, skip_bad_lines, progress)
        built = build_index(kb_path, tokenizer, directory, skip_bad_lines=skip_bad_lines, kb_sha256=kb_sha256,
                            progress=progress, cached=cached)
        return bad_lines_checked(built, kb_path, skip_bad_lines, progress)


def bad_lines_checked(index: KBIndex, kb_path: str, skip_bad_lines: bool, progress: bool) -> KBIndex:
    """The index, where the KB it was built from has no bad line or `skip_bad_lines` (then, with
    `progress`, a warning names them by number); else the first bad line's error."""
    m = index.manifest
    if m.bad_lines and not skip_bad_lines:
        raise bad_line(kb_path, *m.first_bad_lines[0])
    if m.bad_lines and progress:
        print(f"warning: {bad_lines_said(kb_path, m.bad_lines, m.first_bad_lines)}", file=sys.stderr)
    return index
