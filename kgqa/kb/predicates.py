"""The index's predicates across its segments: which it holds, how many live keys carry each, and
a sample of each one's objects (what kind of thing it holds: `kgqa.rank.answer_kinds`).

A predicate's key count is a sum over the segments, less the keys of surfaces later segments hide;
its sample the keys of the smallest key hashes among the segments' own samples: both fixed by the
KB's content, so an index of several segments counts and samples as one rebuilt from the same
triples.
"""
from __future__ import annotations

import functools

import numpy as np

from kgqa.kb.ids import Offsets
from kgqa.kb.segment import Segment
from kgqa.kb.segment_format import SAMPLE_KEPT

PREDICATE_SAMPLE = 64  # keys of each predicate whose objects say what the predicate holds
COUNT_CACHE = 65536  # predicates whose key count across segments is kept once summed


class Predicates:
    """The predicates of `segments`, each hiding its own surface ids `hidden[i]` (sorted), their
    key ids spaced by `key_offsets`."""

    def __init__(self, segments: list[Segment], hidden: list[np.ndarray], key_offsets: Offsets) -> None:
        self.segments = segments
        self.hidden = hidden
        self.key_offsets = key_offsets
        # per index, not per process: a cache on the method would keep every index ever opened alive
        self._count = functools.lru_cache(maxsize=COUNT_CACHE)(self.count)

    @functools.cached_property
    def _live_counts(self) -> list[np.ndarray]:
        """Per segment, its live keys per predicate id of its own."""
        counts = []
        for segment, hidden in zip(self.segments, self.hidden):
            starts = segment.grp_start[segment.ent_start[hidden]]
            lengths = segment.grp_start[segment.ent_start[hidden + 1]] - starts
            hidden_keys = (np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
                           + np.arange(int(lengths.sum())))
            counts.append(segment.pred_count - np.bincount(segment.grp_pred[hidden_keys],
                                                           minlength=len(segment.predicates)))
        return counts

    def count(self, predicate: str) -> int:
        """The live keys of a predicate across the segments."""
        found = 0
        for segment, counts in zip(self.segments, self._live_counts):
            pid = segment.predicates.get(predicate)
            found += int(counts[pid]) if pid is not None else 0
        return found

    def count_of(self, i: int, pid: int) -> int:
        """`count` of segment i's own predicate id `pid` (kept once summed)."""
        if len(self.segments) == 1:
            return int(self._live_counts[0][pid])
        return self._count(self.segments[i].predicate(pid))

    def names(self) -> list[str]:
        """Every predicate the KB holds."""
        names: set[str] = set()
        for segment, counts in zip(self.segments, self._live_counts):
            names.update(name for name, pid in segment.predicates.items() if counts[pid] > 0)
        return sorted(names)

    def objects(self, predicate: str) -> list[str]:
        """First objects of up to PREDICATE_SAMPLE keys carrying `predicate` across the whole KB
        (those of the smallest key hashes: a sample the KB's content fixes, whatever its
        segments); [] for a predicate the KB does not hold. A segment keeps its sample's objects
        side by side, so they are read from a page or two, not from a page each."""
        found = []
        for key, place in zip(*self.sample(predicate)):
            i, local = self.key_offsets.locate(int(key))
            found.append(self.segments[i].sample_object(int(place)) if place >= 0
                         else self.segments[i].first_object(local))
        return found

    def sample(self, predicate: str, scan: bool = False) -> tuple[np.ndarray, np.ndarray]:
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
            keys.append(np.asarray(kept, np.int64) + self.key_offsets[i])
            hashes.append(np.asarray(kept_hashes, np.uint64))
            places.append(kept_places)
        keys, hashes, places = np.concatenate(keys), np.concatenate(hashes), np.concatenate(places)
        if limit is not None and np.count_nonzero(hashes <= limit) < PREDICATE_SAMPLE:
            return self.sample(predicate, scan=True)
        chosen = np.argsort(hashes, kind="stable")[:PREDICATE_SAMPLE]
        return keys[chosen], places[chosen]
