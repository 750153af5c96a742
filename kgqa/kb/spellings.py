"""A segment's subject surfaces by spelling key and by sound (`kgqa.spelling`): how a question's
words are matched to the KB's names however they are typed.

Two marisa tries whose values are the surfaces as the KB spells them (UTF-8):
- `folded.marisa`: `fold(S)` -> S, for each surface whose fold is not itself (ＡＢ, IPHONE, iPhone 4,
  《活着》, 劉曉華); a surface that is its own fold is found in the segment's surface trie itself,
  so a simplified KB adds little here and a traditional one its whole list of names;
- `sounds.marisa`: `sound(fold(S))` -> S, for each surface of at least NEAR_CHARS folded characters
  (a single character has too many homophones to be told apart by anything; a two-character name
  has many, which only the pipeline's choice of reading tells apart: `kgqa.reading`).
Both hold several values under one key where several surfaces share it (iPhone / IPHONE).
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

import marisa_trie

from kgqa.spelling import fold, sound

NEAR_CHARS = 2  # the shortest name found by its sound
FILES = ("folded.marisa", "sounds.marisa")


def write_spellings(surfaces: Iterable[str], directory: str) -> None:
    """Write the segment's two tries of `surfaces` into `directory`."""
    folded, sounds = [], []
    for surface in surfaces:
        key, value = fold(surface), surface.encode("utf-8")
        if key != surface:
            folded.append((key, value))
        if len(key) >= NEAR_CHARS:
            sounds.append((sound(key), value))
    for name, items in zip(FILES, (folded, sounds)):
        marisa_trie.BytesTrie(items).save(os.path.join(directory, name))


class Spellings:
    """A segment's surfaces as a question may write them: as the KB spells them (`surfaces`, the
    segment's trie of them), by spelling key and by sound (its two tries, opened by memory map)."""

    def __init__(self, directory: str, surfaces: marisa_trie.Trie) -> None:
        self.surfaces = surfaces
        self.folded, self.sounds = marisa_trie.BytesTrie(), marisa_trie.BytesTrie()
        for trie, name in zip((self.folded, self.sounds), FILES):
            trie.mmap(os.path.join(directory, name))

    def mentioned(self, question: str) -> set[str]:
        """The surfaces of this segment occurring in the question as the KB spells them."""
        return {surface for start in range(len(question)) for surface in self.surfaces.prefixes(question[start:])}

    def spelled(self, folded_text: str) -> Iterator[tuple[int, int, str]]:
        """(start, stop, surface) of every surface of this segment whose fold is `folded_text[start:stop]`."""
        for start in range(len(folded_text)):
            rest = folded_text[start:]
            for surface in self.surfaces.prefixes(rest):
                yield start, start + len(surface), surface
            yield from _items(self.folded, rest, start)

    def completed(self, folded_prefix: str, limit: int) -> list[str]:
        """Up to `limit` surfaces of this segment whose fold begins with `folded_prefix`."""
        found = []
        for surface in self.surfaces.iterkeys(folded_prefix):
            if fold(surface).startswith(folded_prefix):
                found.append(surface)
            if len(found) == limit:
                return found
        for key in self.folded.iterkeys(folded_prefix):
            found.extend(value.decode("utf-8") for value in self.folded[key])
            if len(found) >= limit:
                break
        return found[:limit]

    def sounded(self, sound_text: str) -> Iterator[tuple[int, int, str]]:
        """(start, stop, surface) of every surface of this segment whose folded name sounds like
        `sound_text[start:stop]` (`kgqa.spelling.sound` of a folded text)."""
        for start in range(len(sound_text) - NEAR_CHARS + 1):
            yield from _items(self.sounds, sound_text[start:], start)


def _items(trie: marisa_trie.BytesTrie, text: str, start: int) -> Iterator[tuple[int, int, str]]:
    """(start, start + len(key), surface) of every key of `trie` that begins `text`, a value each."""
    for key in trie.prefixes(text):
        for value in trie[key]:
            yield start, start + len(key), value.decode("utf-8")
