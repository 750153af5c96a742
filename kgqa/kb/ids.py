"""Ids across an index's segments: a segment's surface, entity and key ids follow those of the
segments before it, so an index-wide id is a segment's own id plus where that segment's ids begin.
`Offsets.locate` is the one place that turns an index-wide id into (segment, its own id)."""
from __future__ import annotations

import bisect
from typing import Iterable


class Offsets:
    """Where each segment's ids of one kind begin, from the segments' sizes in order."""

    def __init__(self, sizes: Iterable[int]) -> None:
        self.starts = [0]
        for size in sizes:
            self.starts.append(self.starts[-1] + size)

    def __getitem__(self, i: int) -> int:
        """Where segment i's ids begin."""
        return self.starts[i]

    @property
    def total(self) -> int:
        """How many ids in all."""
        return self.starts[-1]

    def locate(self, at: int) -> tuple[int, int]:
        """(segment, its own id) of an index-wide id."""
        if len(self.starts) == 2:
            return 0, at
        i = bisect.bisect_right(self.starts, at) - 1
        return i, at - self.starts[i]
