"""Reading KgCLUE knowledge-base files: one `S<TAB>P<TAB>O` triple a line, UTF-8, maybe gzipped.

Streaming on purpose: the real KB has 20M lines and must never sit in memory as Python objects.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from typing import IO, Iterator, NamedTuple

from kgqa.errors import KgqaError

# A disambiguation is a trailing full-width bracket group: 刘晓华（广东工业大学教授）.
_DISAMBIGUATION = re.compile(r"^(.+?)（([^（）]*)）$")


class Triple(NamedTuple):
    surface: str
    predicate: str
    obj: str
    disambiguation: str
    line: int


def split_subject(subject: str) -> tuple[str, str]:
    """`刘晓华（广东工业大学教授）` -> (`刘晓华`, `广东工业大学教授`); the model writes M last."""
    match = _DISAMBIGUATION.match(subject)
    if match is None:
        return subject, ""
    return match.group(1), match.group(2)


def join_subject(surface: str, disambiguation: str) -> str:
    return f"{surface}（{disambiguation}）" if disambiguation else surface


def normalize_object(obj: str) -> str:
    """Whitespace folding as KgCLUE's scorer does, so stored answers compare equal to gold."""
    return " ".join(obj.split())


@dataclass
class ReadStats:
    """What a lenient read skipped, so the user sees a count instead of silent loss."""

    triples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.triples} triples"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"{self.triples} triples (skipped: {parts})"


def _open_binary(path: str) -> IO[bytes]:
    if not os.path.exists(path):
        raise KgqaError("no such file", path)
    if os.path.isdir(path):
        raise KgqaError("is a directory, expected a KB file", path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_kb(path: str, strict: bool = False, stats: ReadStats | None = None) -> Iterator[Triple]:
    """Yield the triples of a KB file in file order.

    Bad lines (wrong number of tabs, empty S or P, a NUL character in S or P, bytes that are not
    UTF-8) stop the read with the file and line named when `strict`; otherwise they are skipped
    and counted in `stats`.
    A BOM and CRLF line ends are accepted silently: both are common and unambiguous.
    """
    stats = stats if stats is not None else ReadStats()
    with _open_binary(path) as raw:
        for number, data in enumerate(io.BufferedReader(raw), start=1):  # type: ignore[arg-type]
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                _reject(path, number, "bytes that are not UTF-8", strict, stats)
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                stats.skip("blank lines")
                continue
            parts = text.split("\t")
            if len(parts) != 3:
                _reject(path, number, f"expected 3 tab-separated fields, found {len(parts)}", strict, stats)
                continue
            subject, predicate, obj = (part.strip() for part in parts)
            if not subject or not predicate:
                _reject(path, number, "empty subject or predicate", strict, stats)
                continue
            if "\x00" in subject or "\x00" in predicate:  # the index's string tries cannot hold NUL
                _reject(path, number, "a NUL character in the subject or predicate", strict, stats)
                continue
            surface, disambiguation = split_subject(subject)
            stats.triples += 1
            yield Triple(surface, predicate, normalize_object(obj), disambiguation, number)
    if stats.triples == 0:
        raise KgqaError("no triples in the KB file", path)


def _reject(path: str, line: int, reason: str, strict: bool, stats: ReadStats) -> None:
    if strict:
        raise KgqaError(reason, path, line)
    stats.skip(reason)


def file_sha256(path: str) -> str:
    """Content hash: an index records it so one built from another KB is never used."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
