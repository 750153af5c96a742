"""An index updated in place, write side: `update_index` applies a change file (triples added and
removed, `kgqa.kb.triples.read_changes`) to an index without rebuilding it.

An update writes one new segment (`kgqa.kb.segment`) holding just the subject surfaces the change
file touches, as they are after it (their triples read from the segment each is live in, the
changes applied in file order), and hides those surfaces in the segments that held them: its
cost is its own change, whatever came before. The manifest is then committed (`kgqa.kb.manifest`),
and the merge policy (`kgqa.kb.merge`) run, so the count of segments stays small. A kill at any
moment leaves the index before or after the update.

Since no file an index has written is ever written again, a copy of an index can share its files
(`updated_copy`: links, not copies) and take an update of its own, the original untouched.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from kgqa.errors import KgqaError
from kgqa.files import atomic_file, file_sha256
from kgqa.kb.build import TripleArrays, add_segment, index_lock, is_index
from kgqa.kb.index import KBIndex
from kgqa.kb.manifest import Manifest, collect_garbage, read_manifest, uncommitted, write_manifest
from kgqa.kb.merge import merge_policy
from kgqa.kb.segment import Segment
from kgqa.kb.trie import ROOT, value_of
from kgqa.kb.triples import Change, ReadStats, bad_lines_said, read_changes
from kgqa.model.tokenizer import Tokenizer


@dataclass
class UpdateReport:
    """What an update did: triples added and removed, change lines that changed nothing (a triple
    removed that is not in the KB, one added that is), lines skipped as unreadable, and the
    merges the policy ran after it (the segment count each left)."""

    added: int = 0
    removed: int = 0
    not_in_kb: list[int] = field(default_factory=list)  # line numbers
    already_in_kb: list[int] = field(default_factory=list)
    unread: ReadStats = field(default_factory=ReadStats)  # change lines that are no change (`--skip-bad-lines`)
    merges: list[int] = field(default_factory=list)
    seconds: float = 0.0  # to the commit: from then on the index answers with the changes
    merge_seconds: float = 0.0

    def warnings(self, path: str) -> list[str]:
        found = []
        if self.not_in_kb:
            found.append(f"{path}: {len(self.not_in_kb)} removed triples are not in the KB (lines "
                         f"{_lines(self.not_in_kb)}); nothing removed for them")
        if self.already_in_kb:
            found.append(f"{path}: {len(self.already_in_kb)} added triples are in the KB already (lines "
                         f"{_lines(self.already_in_kb)})")
        if self.unread.bad:
            found.append(bad_lines_said(path, self.unread.bad, self.unread.first_bad))
        return found


def _lines(numbers: list[int], shown: int = 10) -> str:
    return ", ".join(map(str, numbers[:shown])) + (", ..." if len(numbers) > shown else "")


def update_index(directory: str, changes_path: str, tokenizer: Tokenizer, skip_bad_lines: bool = False,
                 merge: bool = True) -> tuple[KBIndex, UpdateReport]:
    """Apply the change file to the index in `directory` (processes sharing it wait, as for a
    build), then run the merge policy unless not `merge`. Returns the index now there and what
    was done."""
    started = time.perf_counter()
    directory = os.path.abspath(directory)
    if not is_index(directory):
        raise KgqaError("not a kgqa index (build one with `kgqa index`)", directory)
    unread = ReadStats()
    changes = list(read_changes(changes_path, skip_bad_lines, unread))
    changes_sha256 = file_sha256(changes_path)
    with index_lock(directory):
        index = KBIndex(directory, tokenizer)
        if index.manifest.tokenizer_sha256 != tokenizer.sha256:
            raise KgqaError("built with another tokenizer than this checkpoint's", directory)
        manifest = read_manifest(directory)
        collect_garbage(directory, manifest)  # what a writer killed before its commit left
        report = UpdateReport(unread=unread)
        subjects = _changed_subjects(index, changes, report)
        manifest.version = hashlib.sha256(f"{index.version}:{changes_sha256}".encode()).hexdigest()
        manifest.changes.append({"file": os.path.abspath(changes_path), "sha256": changes_sha256,
                                 "added": report.added, "removed": report.removed})
        manifest.generation += 1
        with uncommitted(directory):
            _hide(index, manifest, list(subjects), tokenizer, directory)
            entry = add_segment(directory, manifest, _arrays(subjects), tokenizer)
            manifest.segments += [entry] if entry else []
            write_manifest(directory, manifest)
        report.seconds = time.perf_counter() - started
        if merge:
            report.merges = merge_policy(directory, tokenizer)
            report.merge_seconds = time.perf_counter() - started - report.seconds
    return KBIndex(directory, tokenizer), report


def updated_copy(index: KBIndex, changes_path: str, directory: str) -> KBIndex:
    """A copy of `index` in `directory` (new) with the change file applied, `index` untouched: each
    of its files linked into the copy where the filesystem allows, else copied, so the copy costs
    little more than its change (no merge is run: it would rewrite shared segments into new ones)."""
    for root, _, files in os.walk(index.directory):
        target = os.path.join(directory, os.path.relpath(root, index.directory))
        os.makedirs(target, exist_ok=True)
        for name in files:
            try:
                os.link(os.path.join(root, name), os.path.join(target, name))
            except OSError:  # another filesystem, or one without links
                shutil.copy2(os.path.join(root, name), os.path.join(target, name))
    copy, _ = update_index(directory, changes_path, index.tokenizer, merge=False)
    return copy


Subject = dict[tuple[str, str], list[str]]  # (disambiguation, predicate) -> objects, in order


def _changed_subjects(index: KBIndex, changes: list[Change], report: UpdateReport) -> dict[str, Subject]:
    """Every surface the changes touch, with its triples after them (applied in file order)."""
    subjects: dict[str, Subject] = {}
    for change in changes:
        surface = change.triple.surface
        if surface not in subjects:
            sid = index.names.surface_id(surface)
            subjects[surface] = {} if sid is None else {
                (m, p): objects for _, p, m, objects in index.subject_triples(sid)}
        t = change.triple
        objects = subjects[surface].setdefault((t.disambiguation, t.predicate), [])
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


def _arrays(subjects: dict[str, Subject]) -> TripleArrays:
    t = TripleArrays()
    for surface, keys in subjects.items():
        for (disambiguation, predicate), objects in keys.items():
            for obj in objects:
                t.add(surface, disambiguation, predicate, obj)
    return t


def _hide(index: KBIndex, manifest: Manifest, surfaces: list[str], tokenizer: Tokenizer, directory: str) -> None:
    """Hide `surfaces` in the segments they are live in now: for each such segment, a new deletes
    file pair (its hidden surface ids and pruned trie edges, the old ones' and these) named in
    its manifest entry."""
    by_segment: dict[int, list[int]] = {}
    for surface in surfaces:
        found = index.names.located(surface)
        if found is not None:
            by_segment.setdefault(found[0], []).append(found[1])
    for i, sids in by_segment.items():
        segment, entry = index.segments[i], manifest.segments[i]
        hidden = np.union1d(index.hidden[i], np.array(sids, np.int64)).astype(np.int64)
        pruned = _pruned(segment, index.pruned[i], sids, tokenizer)
        entry.deletes = f"{entry.name}.d{manifest.generation}"
        for part, values in (("hidden", hidden), ("pruned", pruned)):
            with atomic_file(os.path.join(directory, entry.deletes_files()[part]), "wb") as handle:
                np.save(handle, values)
        keys = [segment.surface_keys(sid) for sid in sids]
        objects = sum(int(segment.obj_start[k.stop] - segment.obj_start[k.start]) for k in keys)
        entry.hidden_surfaces = len(hidden)
        entry.hidden_triples += objects


def _pruned(segment: Segment, previous: np.ndarray, hidden: list[int], tokenizer: Tokenizer) -> np.ndarray:
    """(node, token) edges of a segment's surface trie the index leaves out: those `previous`ly
    left out, each newly `hidden` surface's last edge, then each edge into a node all of whose
    edges are left out (only nodes on the new surfaces' paths can have become so)."""
    trie = segment.surface_trie
    cut: dict[int, set[int]] = {}
    for node, token in previous.tolist():
        cut.setdefault(node, set()).add(token)
    above: dict[int, tuple[int, int, int]] = {}  # node -> (depth, parent, token into it)
    for sid in hidden:
        node, depth = ROOT, 0
        for token in tokenizer.encode(segment.surface(sid)) + [tokenizer.sep_id]:
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
