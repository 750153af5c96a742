"""Merging an index's segments: the policy that keeps their count small, and the merge itself.

Each update adds a segment (`kgqa.kb.update`); left alone, the decoder would walk ever more
tries. The policy is tiered, as Lucene's and Tantivy's are: segments are put in tiers by their
live triples (tier t holds those of `MERGE_FLOOR * MERGE_FACTOR**t` up to `MERGE_FACTOR` times
that), and once a tier holds `MERGE_FACTOR` segments they become one of the tier above. So a
triple is rewritten about log_FACTOR(KB / FLOOR) times over any run of updates, never at each.
Besides: a segment mostly hidden by later ones is rewritten alone (its space and walk dropped),
an empty one dropped, and past `MAX_SEGMENTS` the smallest are merged. Segments past half of
`segment_triples` (a build's parts) are merged only when mostly hidden: a merge's memory is
bounded as the build's is.
"""
from __future__ import annotations

import os

from kgqa.kb.build import SEGMENT_TRIPLES, TripleArrays, add_segment, index_lock
from kgqa.kb.index import KBIndex, read_manifest
from kgqa.kb.manifest import live_triples, uncommitted, write_manifest
from kgqa.model.tokenizer import Tokenizer

MERGE_FACTOR = 4
MERGE_FLOOR = 10_000  # live triples below which segments count as this size
MAX_SEGMENTS = 12


def plan(entries: list[dict], segment_triples: int = SEGMENT_TRIPLES) -> list[int]:
    """The segments (places in the manifest's list) the policy merges next; [] for none."""
    live = [live_triples(entry) for entry in entries]
    for i, entry in enumerate(entries):
        if (live[i] == 0 and len(entries) > 1) or (0 < live[i] < segment_triples and 2 * entry["hidden_triples"] > entry["triples"]):
            return [i]
    small = [i for i in range(len(entries)) if 2 * live[i] < segment_triples]
    tiers: dict[int, list[int]] = {}
    for i in small:
        tier = 0
        while live[i] >= MERGE_FLOOR * MERGE_FACTOR ** (tier + 1):
            tier += 1
        tiers.setdefault(tier, []).append(i)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= MERGE_FACTOR:
            return sorted(sorted(tiers[tier], key=live.__getitem__)[:MERGE_FACTOR])
    smallest = sorted(sorted(small, key=live.__getitem__)[:len(entries) - MAX_SEGMENTS + 1])
    return smallest if len(entries) > MAX_SEGMENTS and len(smallest) >= 2 else []


def merge_policy(directory: str, tokenizer: Tokenizer, segment_triples: int = SEGMENT_TRIPLES) -> list[int]:
    """Run the policy's merges on the index in `directory` (its lock held by the caller) until it
    plans none; returns the segment count after each."""
    counts = []
    while True:
        picks = plan(read_manifest(directory)["segments"], segment_triples)
        if not picks:
            return counts
        counts.append(merge_segments(directory, tokenizer, picks))


def merge_index(directory: str, tokenizer: Tokenizer, segments: int | None = None) -> list[int]:
    """`kgqa merge`: the policy's merges, or with `segments` the smallest segments merged until at
    most that many are left (1: the whole index as one segment, as a build writes it)."""
    directory = os.path.abspath(directory)
    with index_lock(directory):
        if segments is None:
            return merge_policy(directory, tokenizer)
        counts = []
        entries = read_manifest(directory)["segments"]
        while len(entries) > max(1, segments) or (len(entries) == 1 and entries[0]["hidden_triples"]
                                                  and live_triples(entries[0])):  # the last segment is kept
            by_size = sorted(range(len(entries)), key=lambda i: live_triples(entries[i]))
            counts.append(merge_segments(directory, tokenizer, sorted(by_size[:len(entries) - max(1, segments) + 1])))
            entries = read_manifest(directory)["segments"]
        return counts


def merge_segments(directory: str, tokenizer: Tokenizer, picks: list[int]) -> int:
    """Write the live triples of segments `picks` as one new segment in place of the first of
    them, and commit (the caller holds the lock). Returns the segment count now."""
    index = KBIndex(directory, tokenizer)
    manifest = read_manifest(directory)
    triples = TripleArrays()
    for i in picks:
        segment = index.segments[i]
        for sid in range(len(segment.surfaces)):
            if index.live_in(i, sid):
                surface = segment.surface(sid)
                for _, predicate, disambiguation, objects in segment.subject_triples(sid):
                    for obj in objects:
                        triples.add(surface, disambiguation, predicate, obj)
    entries = manifest["segments"]
    kept = [entry for i, entry in enumerate(entries) if i not in picks]
    with uncommitted(directory):
        entry = add_segment(directory, manifest, triples, tokenizer)
        if entry:
            kept.insert(picks[0], entry)  # picks ascend: the places before the first are all kept
        manifest["segments"] = kept
        manifest["generation"] += 1
        write_manifest(directory, manifest)
    return len(kept)
