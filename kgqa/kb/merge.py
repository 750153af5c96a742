"""Merging an index's segments: the policy that keeps their count small, and the merge itself.

Each update adds a segment (`kgqa.kb.update`); left alone, the decoder would walk ever more
tries. The policy is tiered, as Lucene's and Tantivy's are: segments are put in tiers by their
live triples (tier t holds those of `floor * factor**t` up to `factor` times that), and once a
tier holds `factor` segments they become one of the tier above (`TieredMergePolicy`). So a
triple is rewritten about log_FACTOR(KB / FLOOR) times over any run of updates, never at each.
Besides: a segment mostly hidden by later ones is rewritten alone (its space and walk dropped),
an empty one dropped, and past `max_segments` the smallest are merged. Segments past half of
`segment_triples` (a build's parts) are merged only when mostly hidden: a merge's memory is
bounded as the build's is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from kgqa.kb.build import SEGMENT_TRIPLES, TripleArrays, add_segment, index_lock
from kgqa.kb.index import KBIndex
from kgqa.kb.manifest import SegmentEntry, read_manifest, uncommitted, write_manifest
from kgqa.model.tokenizer import Tokenizer

@dataclass(frozen=True)
class TieredMergePolicy:
    """Which segments to merge next (Lucene's `TieredMergePolicy` is the model): its settings are
    checked where it is made, and `plan` reads only the manifest's segment entries."""

    factor: int = 4  # segments a tier holds before they become one of the tier above
    floor: int = 10_000  # live triples below which a segment counts as this size
    max_segments: int = 12  # past this many, the smallest are merged
    segment_triples: int = SEGMENT_TRIPLES  # a build's part: past half of it, merged only when mostly hidden

    def __post_init__(self) -> None:
        for name, least in (("factor", 2), ("floor", 1), ("max_segments", 1), ("segment_triples", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < least:
                raise ValueError(f"TieredMergePolicy.{name} has to be an integer of at least {least}, not {value!r}")

    def plan(self, entries: list[SegmentEntry]) -> list[int]:
        """The segments (places in the manifest's list) to merge next; [] for none."""
        live = [entry.live_triples for entry in entries]
        for i, entry in enumerate(entries):
            if (live[i] == 0 and len(entries) > 1) or \
                    (0 < live[i] < self.segment_triples and 2 * entry.hidden_triples > entry.triples):
                return [i]
        small = [i for i in range(len(entries)) if 2 * live[i] < self.segment_triples]
        tiers: dict[int, list[int]] = {}
        for i in small:
            tier = 0
            while live[i] >= self.floor * self.factor ** (tier + 1):
                tier += 1
            tiers.setdefault(tier, []).append(i)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= self.factor:
                return sorted(sorted(tiers[tier], key=live.__getitem__)[:self.factor])
        smallest = sorted(sorted(small, key=live.__getitem__)[:len(entries) - self.max_segments + 1])
        return smallest if len(entries) > self.max_segments and len(smallest) >= 2 else []


@dataclass(frozen=True)
class MergeDownTo:
    """`kgqa merge --segments N`: the smallest segments merged until at most `segments` are left
    (1: the whole index as one segment, as a build writes it: a lone segment that hides triples is
    rewritten without them)."""

    segments: int

    def __post_init__(self) -> None:
        if not isinstance(self.segments, int) or self.segments < 1:
            raise ValueError(f"MergeDownTo.segments has to be an integer of at least 1, not {self.segments!r}")

    def plan(self, entries: list[SegmentEntry]) -> list[int]:
        """The segments (places in the manifest's list) to merge next; [] for none."""
        if len(entries) > self.segments:
            by_size = sorted(range(len(entries)), key=lambda i: entries[i].live_triples)
            return sorted(by_size[:len(entries) - self.segments + 1])
        lone = entries[0] if len(entries) == 1 else None
        return [0] if lone is not None and lone.hidden_triples and lone.live_triples else []


class MergePolicy(Protocol):
    """Which segments to merge next, from the manifest's segment entries alone ([] for none)."""

    def plan(self, entries: list[SegmentEntry]) -> list[int]: ...


def merge_policy(directory: str, tokenizer: Tokenizer, policy: MergePolicy = TieredMergePolicy()) -> list[int]:
    """Run `policy`'s merges on the index in `directory` (its lock held by the caller) until it
    plans none; returns the segment count after each."""
    counts = []
    while True:
        picks = policy.plan(read_manifest(directory).segments)
        if not picks:
            return counts
        counts.append(merge_segments(directory, tokenizer, picks))


def merge_index(directory: str, tokenizer: Tokenizer, policy: MergePolicy = TieredMergePolicy()) -> list[int]:
    """`kgqa merge`: `policy`'s merges (`MergeDownTo(N)` for `--segments N`), under the index's lock."""
    directory = os.path.abspath(directory)
    with index_lock(directory):
        return merge_policy(directory, tokenizer, policy)


def merge_segments(directory: str, tokenizer: Tokenizer, picks: list[int]) -> int:
    """Write the live triples of segments `picks` as one new segment in place of the first of
    them, and commit (the caller holds the lock). Returns the segment count now."""
    index = KBIndex(directory, tokenizer)
    manifest = read_manifest(directory)
    triples = TripleArrays()
    for i in picks:
        segment = index.segments[i]
        for sid in range(len(segment.surfaces)):
            if index.names.live_in(i, sid):
                surface = segment.surface(sid)
                for _, predicate, disambiguation, objects in segment.subject_triples(sid):
                    for obj in objects:
                        triples.add(surface, disambiguation, predicate, obj)
    kept = [entry for i, entry in enumerate(manifest.segments) if i not in picks]
    with uncommitted(directory):
        entry = add_segment(directory, manifest, triples, tokenizer)
        if entry:
            kept.insert(picks[0], entry)  # picks ascend: the places before the first are all kept
        manifest.segments = kept
        manifest.generation += 1
        write_manifest(directory, manifest)
    return len(kept)
