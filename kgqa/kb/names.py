"""The index's subject names across its segments: a surface id's name, a name's id, and the names
a question writes, exactly (`mentions`), by spelling key (`spelled`), by sound (`sounded`) or as a
short form (`completed`).

A subject surface is live in exactly one segment (later segments hide the ones they change); a
surface id is its segment's own id after the ids of the segments before it. Every list returned
is in an order the KB's content fixes, so an index of several segments finds the same names as
one rebuilt from the same triples.
"""
from __future__ import annotations

from kgqa.kb.ids import Offsets
from kgqa.kb.segment import Segment


class Names:
    """The subject names of `segments`, each hiding the surface ids `hidden_sets[i]` of its own,
    their surface ids spaced by `offsets`."""

    def __init__(self, segments: list[Segment], hidden_sets: list[set[int]], offsets: Offsets) -> None:
        self.segments = segments
        self.hidden_sets = hidden_sets
        self.offsets = offsets

    def live_in(self, i: int, sid: int) -> bool:
        """Whether segment i's own surface `sid` is live (no later segment hides it)."""
        return sid not in self.hidden_sets[i]

    def surface(self, sid: int) -> str:
        """The name a surface id stands for."""
        i, local = self.offsets.locate(sid)
        return self.segments[i].surface(local)

    def surface_id(self, surface: str) -> int | None:
        """The id of a KB subject surface, or None where the KB has no such subject."""
        found = self.located(surface)
        return None if found is None else self.offsets[found[0]] + found[1]

    def located(self, surface: str) -> tuple[int, int] | None:
        """(segment, its own surface id) of the segment a surface is live in, or None."""
        for i, segment in enumerate(self.segments):
            local = segment.surface_id(surface)
            if local is not None and self.live_in(i, local):
                return i, local
        return None

    def mentions(self, question: str) -> list[int]:
        """Surface ids of every KB subject occurring in the question, longest first."""
        found = set().union(*(segment.spellings.mentioned(question) for segment in self.segments))
        ids = (self.surface_id(surface) for surface in sorted(found, key=lambda surface: (-len(surface), surface)))
        return [sid for sid in ids if sid is not None]

    def spelled(self, folded_text: str) -> list[tuple[int, int, int]]:
        """(start, stop, surface id) of every KB subject whose spelling key (`kgqa.spelling.fold`)
        is folded_text[start:stop], shortest spans first at each start."""
        return self._live(match for segment in self.segments for match in segment.spellings.spelled(folded_text))

    def sounded(self, sound_text: str) -> list[tuple[int, int, int]]:
        """(start, stop, surface id) of every KB subject of at least `spellings.NEAR_CHARS`
        characters whose folded name sounds like sound_text[start:stop] (`kgqa.spelling.sound`)."""
        return self._live(match for segment in self.segments for match in segment.spellings.sounded(sound_text))

    def completed(self, folded_prefix: str, limit: int = 64) -> list[int]:
        """Surface ids of up to `limit` KB subjects per segment whose fold begins with
        `folded_prefix`: the names a short form may stand for (兰利号航母: 兰利号航空母舰)."""
        found = {sid for segment in self.segments for surface in segment.spellings.completed(folded_prefix, limit)
                 if (sid := self.surface_id(surface)) is not None}
        return sorted(found, key=self.surface)

    def _live(self, matches) -> list[tuple[int, int, int]]:
        """The matches' live surfaces by id, each (start, stop, surface) once, in the content's order."""
        found = {(start, stop, sid) for start, stop, surface in set(matches)
                 if (sid := self.surface_id(surface)) is not None}
        return sorted(found, key=lambda match: (match[0], match[1], self.surface(match[2])))
