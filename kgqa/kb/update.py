"""An index updated in place, write side: `update_index` applies a change file (triples added and
removed, `kgqa.kb.triples.read_changes`) to an index without rebuilding it.

Each update writes a new layer (`kgqa.kb.layered`) holding every surface changed since the base
was built, as it is after the change: its triples come from the index as it was (the layer where
it has the surface, else the base) with the changes applied in file order. Its cost follows the
layer, not the KB; once the layer holds more than `merge_share` of the triples, the update merges
instead (base and layer written out as one new base, a full build's cost). Either way the new
index is written beside the old one, the base's files hard-linked, and swapped in whole
(`atomic_directory`): a kill at any moment leaves the index before or after the update.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from kgqa.errors import KgqaError
from kgqa.files import atomic_directory
from kgqa.kb.build import TripleArrays, index_lock, is_index, write_index
from kgqa.kb.index import HEADER, PREDICATE_SAMPLE, SAMPLE_KEPT, KBIndex, key_hashes, string_hashes
from kgqa.kb.layered import LAYER, LayeredIndex, open_index
from kgqa.kb.trie import ROOT, TokenTrie, value_of
from kgqa.kb.triples import Change, ReadStats, file_sha256, read_changes
from kgqa.model.tokenizer import Tokenizer

MERGE_SHARE = 0.05  # the layer's share of the triples past which an update merges it into the base


@dataclass
class UpdateReport:
    """What an update did: triples added and removed, change lines that changed nothing (a triple
    removed that is not in the KB, one added that is), lines skipped as unreadable, and whether
    the layer was merged into the base."""

    added: int = 0
    removed: int = 0
    not_in_kb: list[int] = field(default_factory=list)  # line numbers
    already_in_kb: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    merged: bool = False

    def warnings(self, path: str) -> list[str]:
        found = []
        if self.not_in_kb:
            found.append(f"{path}: {len(self.not_in_kb)} removed triples are not in the KB (lines "
                         f"{_lines(self.not_in_kb)}); nothing removed for them")
        if self.already_in_kb:
            found.append(f"{path}: {len(self.already_in_kb)} added triples are in the KB already (lines "
                         f"{_lines(self.already_in_kb)})")
        if self.skipped:
            found.append(f"{path}: skipped {', '.join(f'{n} {why}' for why, n in sorted(self.skipped.items()))}")
        return found


def _lines(numbers: list[int], shown: int = 10) -> str:
    return ", ".join(map(str, numbers[:shown])) + (", ..." if len(numbers) > shown else "")


def update_index(directory: str, changes_path: str, tokenizer: Tokenizer, strict: bool = False,
                 merge_share: float = MERGE_SHARE) -> tuple[KBIndex, UpdateReport]:
    """Apply the change file to the index in `directory` (processes sharing it wait, as for a
    build); `merge_share` 0 always merges. Returns the index now there and what was done."""
    directory = os.path.abspath(directory)
    if not is_index(directory):
        raise KgqaError("not a kgqa index (build one with `kgqa index`)", directory)
    stats = ReadStats()
    changes = list(read_changes(changes_path, strict, stats))
    changes_sha256 = file_sha256(changes_path)
    with index_lock(directory):
        index = open_index(directory, tokenizer)
        if index.header["tokenizer_sha256"] != tokenizer.sha256:
            raise KgqaError("built with another tokenizer than this checkpoint's", directory)
        report = UpdateReport(skipped=stats.skipped)
        subjects = _changed_subjects(index, changes, report)
        header = {key: value for key, value in index.header.items() if key != "layer"}
        header["version"] = hashlib.sha256(f"{index.version}:{changes_sha256}".encode()).hexdigest()
        header["changes"] = index.header.get("changes", []) + [
            {"file": os.path.abspath(changes_path), "sha256": changes_sha256, "added": report.added,
             "removed": report.removed}]
        layer_triples = sum(len(objects) for keys in subjects.values() for objects in keys.values())
        report.merged = layer_triples >= merge_share * index.triples
        with atomic_directory(directory, is_index, "index") as temp:
            if report.merged:
                _write_merged(index, subjects, tokenizer, temp, header)
            else:
                _write_layered(index, subjects, tokenizer, temp, header)
    return open_index(directory, tokenizer), report


Subject = dict[tuple[str, str], list[str]]  # (disambiguation, predicate) -> objects, in order


def _changed_subjects(index: KBIndex, changes: list[Change], report: UpdateReport) -> dict[str, Subject]:
    """Every surface the layer will hold (those the index's layer holds, and those the changes
    touch) with its triples after the changes, applied in file order."""
    surfaces = []
    if isinstance(index, LayeredIndex):  # every surface changed before: the layer's, and those removed
        surfaces = list(index.layer.surfaces.keys()) + [index.surfaces.restore_key(sid) for sid in index.hidden.tolist()]
    surfaces += [change.triple.surface for change in changes]
    subjects: dict[str, Subject] = {}
    for surface in surfaces:
        if surface not in subjects:
            subjects[surface] = _subject(index, surface)
    for change in changes:
        t = change.triple
        objects = subjects[t.surface].setdefault((t.disambiguation, t.predicate), [])
        if change.added:
            if t.obj in objects:
                report.already_in_kb.append(t.line)
            else:
                objects.append(t.obj)
                report.added += 1
        elif t.obj in objects:
            objects.remove(t.obj)
            report.removed += 1
        else:
            report.not_in_kb.append(t.line)
    return {surface: {key: objects for key, objects in keys.items() if objects} for surface, keys in subjects.items()}


def _subject(index: KBIndex, surface: str) -> Subject:
    sid = index.surface_id(surface)
    if sid is None:
        return {}
    return {(m, p): objects for _, p, m, objects in index.subject_triples(sid)}


def _arrays(subjects: dict[str, Subject], t: TripleArrays | None = None) -> TripleArrays:
    """`subjects`' triples added to `t` (or to new arrays)."""
    t = TripleArrays() if t is None else t
    for surface, keys in subjects.items():
        for (disambiguation, predicate), objects in keys.items():
            for obj in objects:
                t.add(surface, disambiguation, predicate, obj)
    return t


def _write_merged(index: KBIndex, subjects: dict[str, Subject], tokenizer: Tokenizer, directory: str,
                  header: dict) -> None:
    """Base and layer as one new base: every surface the index has, changed ones as `subjects` say."""
    t = TripleArrays()
    for surface, sid in index.surfaces.items():  # the base's surfaces; the layer's are all in `subjects`
        if surface not in subjects:
            for _, predicate, disambiguation, objects in index.subject_triples(sid):
                for obj in objects:
                    t.add(surface, disambiguation, predicate, obj)
    _arrays(subjects, t)
    header.pop("base_triples", None)
    header["triples"] = len(t.offsets) - 1
    write_index(t, tokenizer, directory, header)


def _write_layered(index: KBIndex, subjects: dict[str, Subject], tokenizer: Tokenizer, directory: str,
                   header: dict) -> None:
    """The base's files linked, a new layer of `subjects` beside them."""
    for name in os.listdir(index.directory):
        if name != HEADER and name != LAYER:
            os.link(os.path.join(index.directory, name), os.path.join(directory, name))
    layer_dir = os.path.join(directory, LAYER)
    os.mkdir(layer_dir)
    layer_header = {"kb_sha256": header["version"], "triples": 0, "skipped": {}}
    arrays = _arrays(subjects)
    layer_header["triples"] = len(arrays.offsets) - 1
    write_index(arrays, tokenizer, layer_dir, layer_header)
    layer = KBIndex(layer_dir, tokenizer)
    # the base's string trie (also under a layer): the base ids the layer replaces
    hidden = np.array(sorted(sid for sid in map(index.surfaces.get, subjects) if sid is not None), np.int64)
    key_ranges = [range(int(index.grp_start[index.ent_start[sid]]), int(index.grp_start[index.ent_start[sid + 1]]))
                  for sid in hidden.tolist()]
    hidden_keys = np.array([key for keys in key_ranges for key in keys], np.int64)
    predicates, counts = np.unique(index.grp_pred[hidden_keys], return_counts=True)
    np.save(os.path.join(layer_dir, "hidden.npy"), hidden)
    np.save(os.path.join(layer_dir, "pruned.npy"), _pruned(index, hidden, tokenizer))
    np.save(os.path.join(layer_dir, "predicates.npy"), np.stack([predicates, counts], axis=1).astype(np.int64))
    removed, added = _changed_keys(index, layer, hidden)
    touched = sorted({p for p, _, _ in added} | {index.predicate(int(pid)) for pid in index.grp_pred[removed]})
    with open(os.path.join(layer_dir, "samples.json"), "w", encoding="utf-8") as handle:
        json.dump(touched, handle, ensure_ascii=False)
    for name, values in _samples(index, touched, removed, added).items():
        np.save(os.path.join(layer_dir, f"{name}.npy"), values)
    hidden_objects = sum(int(index.obj_start[keys.stop] - index.obj_start[keys.start]) for keys in key_ranges)
    base_triples = index.header.get("base_triples", index.header["triples"])
    header.update({"base_triples": base_triples, "triples": base_triples - hidden_objects + layer.triples,
                   "layer": {"triples": layer.triples, "hidden_surfaces": len(hidden)}})
    with open(os.path.join(directory, HEADER), "w", encoding="utf-8") as handle:
        json.dump(header, handle, ensure_ascii=False, indent=1)


def _pruned(index: KBIndex, hidden: np.ndarray, tokenizer: Tokenizer) -> np.ndarray:
    """(node, token) edges of the base surface trie the layered one leaves out: each hidden
    surface's last edge, then each edge into a node all of whose edges are left out."""
    trie = TokenTrie.open(index.directory, "surfaces")
    cut: dict[int, set[int]] = {}
    above: dict[int, tuple[int, int, int]] = {}  # node -> (depth, parent, token into it)
    for sid in hidden.tolist():
        node, depth = ROOT, 0
        tokens = tokenizer.encode(index.surfaces.restore_key(sid)) + [tokenizer.sep_id]
        for token in tokens:
            target = trie.step(node, token)
            if target is None:
                break
            if target < 0:
                if value_of(target) == sid:  # else another surface of the same tokens holds the key
                    cut.setdefault(node, set()).add(token)
                break
            depth += 1
            above.setdefault(target, (depth, node, token))
            node = target
    for node in sorted(above, key=lambda n: -above[n][0]):
        if node in cut and len(cut[node]) == len(trie.children(node)):
            _, parent, token = above[node]
            cut.setdefault(parent, set()).add(token)
    return np.array(sorted((node, token) for node, tokens in cut.items() for token in tokens), np.int64).reshape(-1, 2)


def _changed_keys(index: KBIndex, layer: KBIndex, hidden: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """The keys whose sample entry the update changes: base keys (sorted ids) no longer in the KB
    or with another first object now, and layer keys (predicate, id past the base's, key hash)
    new to the KB or with another first object. A hidden base key whose first object stands
    keeps its place in the base's samples: `predicate_objects` reads only first objects."""
    before = {}
    for sid in hidden.tolist():
        surface = index.surfaces.restore_key(sid)
        for key, predicate, disambiguation, objects in KBIndex.subject_triples(index, sid):  # the base's, also under a layer
            before[surface, disambiguation, predicate] = key, objects[0]
    removed, added, names = [], [], []
    for sid in range(len(layer.surfaces)):
        surface = layer.surface(sid)
        for key, predicate, disambiguation, objects in layer.subject_triples(sid):
            was = before.pop((surface, disambiguation, predicate), None)
            if was is None or was[1] != objects[0]:
                removed += [] if was is None else [was[0]]
                added.append((predicate, key + len(index.grp_pred)))
                names.append((surface, disambiguation, predicate))
    removed += [key for key, _ in before.values()]
    hashes = key_hashes(*(string_hashes(name[part] for name in names) for part in range(3))) if names \
        else np.zeros(0, np.uint64)
    return np.array(sorted(removed), np.int64), [(p, key, int(h)) for (p, key), h in zip(added, hashes)]


def _samples(index: KBIndex, predicates: list[str], removed: np.ndarray,
             added: list[tuple[str, int, int]]) -> dict[str, np.ndarray]:
    """For each of `predicates`, its keys with the smallest hashes: the base's kept sample less
    `removed` keys, and the `added` keys (predicate, id, hash) — as the `sample_start` (per
    predicate, and one past the last), `sample_key` and `sample_hash` arrays a `LayeredIndex`
    reads. The base kept only its smallest SAMPLE_KEPT of a predicate: a key it left out hashes
    above the largest kept, so the keys below that are sure; where fewer than PREDICATE_SAMPLE
    are, every base key of the predicate is hashed here."""
    group_of = {p: g for g, p in enumerate(predicates)}
    found = [(g, index.predicates[p]) for g, p in enumerate(predicates) if p in index.predicates]
    groups = np.array([g for g, _ in found], np.int64)
    pids = np.array([pid for _, pid in found], np.int64)
    sample_start = np.asarray(index.pred_sample_start)
    starts, lengths = sample_start[pids], sample_start[pids + 1] - sample_start[pids]
    at = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
    keys, hashes, group = index.pred_sample_key[at], index.pred_sample_hash[at], np.repeat(groups, lengths)
    live = ~np.isin(keys, removed)
    limited = np.zeros(len(predicates), bool)
    limit = np.zeros(len(predicates), np.uint64)
    full = lengths >= SAMPLE_KEPT  # may have left keys out
    limited[groups[full]] = True
    limit[groups[full]] = index.pred_sample_hash[(starts + lengths - 1)[full]]  # ascending: the last is largest
    group = np.concatenate([group[live], np.array([group_of[p] for p, _, _ in added], np.int64)])
    keys = np.concatenate([keys[live], np.array([k for _, k, _ in added], np.int64)])
    hashes = np.concatenate([hashes[live], np.array([h for _, _, h in added], np.uint64)])
    sure = ~limited[group] | (hashes <= limit[group])
    short = limited & (np.bincount(group[sure], minlength=len(predicates)) < PREDICATE_SAMPLE)
    keep = sure & ~short[group]
    group, keys, hashes = group[keep], keys[keep], hashes[keep]
    for g in np.flatnonzero(short).tolist():  # rare: a common predicate most of whose kept sample went
        every, every_hashes = _every(index, predicates[g], removed)
        mine = [(k, h) for p, k, h in added if p == predicates[g]]
        group = np.concatenate([group, np.full(len(every) + len(mine), g)])
        keys = np.concatenate([keys, every, np.array([k for k, _ in mine], np.int64)])
        hashes = np.concatenate([hashes, every_hashes, np.array([h for _, h in mine], np.uint64)])
    order = np.lexsort((hashes, group))
    counts = np.bincount(group, minlength=len(predicates))
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    picked = order[rank < SAMPLE_KEPT]
    return {"sample_start": np.concatenate([[0], np.cumsum(np.minimum(counts, SAMPLE_KEPT))]).astype(np.int64),
            "sample_key": keys[picked].astype(np.int64), "sample_hash": hashes[picked].astype(np.uint64)}


def _every(index: KBIndex, predicate: str, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key, hash) of every base key of `predicate` but the `removed` ones."""
    keys = np.flatnonzero(np.asarray(index.grp_pred) == index.predicates[predicate])
    keys = keys[~np.isin(keys, removed)]
    entities = index.grp_ent[keys]
    hashes = key_hashes(string_hashes(index.surfaces.restore_key(int(s)) for s in index.ent_sid[entities]),
                        string_hashes(index.disambiguation(int(e)) for e in entities),
                        string_hashes([predicate] * len(keys)))
    return keys, hashes
