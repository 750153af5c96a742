"""Reading KgCLUE knowledge-base files: one `S<TAB>P<TAB>O` triple a line, UTF-8, maybe gzipped.

Streaming on purpose: the real KB has 20M lines and must never sit in memory as Python objects.
"""
from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from typing import IO, Iterator, NamedTuple

from kgqa.errors import KgqaError
from kgqa.files import readable_file
from kgqa.spelling import fold_whitespace

# A disambiguation is a trailing full-width bracket group: 刘晓华（广东工业大学教授）.
_DISAMBIGUATION = re.compile(r"^(.+?)（([^（）]*)）$")


class Triple(NamedTuple):
    surface: str
    predicate: str
    obj: str
    disambiguation: str
    line: int


class Fact(NamedTuple):
    """What one KB key (S, P, M) holds: its objects in file order (the first is its answer)."""

    surface: str
    predicate: str
    disambiguation: str
    objects: list[str]


def split_subject(subject: str) -> tuple[str, str]:
    """`刘晓华（广东工业大学教授）` -> (`刘晓华`, `广东工业大学教授`); the model writes M last."""
    match = _DISAMBIGUATION.match(subject)
    if match is None:
        return subject, ""
    return match.group(1), match.group(2)


def join_subject(surface: str, disambiguation: str) -> str:
    return f"{surface}（{disambiguation}）" if disambiguation else surface


BAD_LINES_KEPT = 20  # bad lines a lenient read names by number (all are counted)


@dataclass
class ReadStats:
    """What a lenient read skipped, so the user sees a count instead of silent loss: lines left
    out by why, and the first BAD_LINES_KEPT bad ones by number."""

    triples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    bad: int = 0  # lines that are not a triple (blank lines are not bad)
    first_bad: list[tuple[int, str]] = field(default_factory=list)  # (line, why)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def reject(self, line: int, reason: str) -> None:
        self.skip(reason)
        self.bad += 1
        if len(self.first_bad) < BAD_LINES_KEPT:
            self.first_bad.append((line, reason))


def _open_binary(path: str) -> IO[bytes]:
    readable_file(path, "a KB file")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_kb(path: str, skip_bad_lines: bool = False, stats: ReadStats | None = None) -> Iterator[Triple]:
    """Yield the triples of a KB file in file order.

    Bad lines (wrong number of tabs, empty S or P, a NUL character in S or P, bytes that are not
    UTF-8) stop the read with the file and line named, unless `skip_bad_lines`: then they are
    skipped, counted and the first named by number in `stats`.
    A BOM and CRLF line ends are accepted silently: both are common and unambiguous.
    """
    stats = stats if stats is not None else ReadStats()
    strict = not skip_bad_lines
    for number, parts in _fields(path, strict, stats):
        if len(parts) != 3:
            _reject(path, number, f"expected 3 tab-separated fields, found {len(parts)}", strict, stats)
            continue
        triple = _triple(parts, path, number, strict, stats)
        if triple is not None:
            yield triple
    if stats.triples == 0:
        raise KgqaError("no triples in the KB file", path)


class Change(NamedTuple):
    added: bool  # else removed
    triple: Triple


def read_changes(path: str, skip_bad_lines: bool = False, stats: ReadStats | None = None) -> Iterator[Change]:
    """Yield the changes of a change file in file order: `+<TAB>S<TAB>P<TAB>O` adds a triple,
    `-<TAB>S<TAB>P<TAB>O` removes one (S, P and O as a KB line has them). Bad lines are treated
    as `read_kb` treats them."""
    stats = stats if stats is not None else ReadStats()
    strict = not skip_bad_lines
    for number, parts in _fields(path, strict, stats):
        if len(parts) != 4 or parts[0] not in ("+", "-"):
            _reject(path, number, "expected `+` or `-`, then S, P and O, tab-separated", strict, stats)
            continue
        triple = _triple(parts[1:], path, number, strict, stats)
        if triple is not None:
            yield Change(parts[0] == "+", triple)


def _fields(path: str, strict: bool, stats: ReadStats) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of each line that is UTF-8 and not blank."""
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
            yield number, text.split("\t")


def _triple(parts: list[str], path: str, number: int, strict: bool, stats: ReadStats) -> Triple | None:
    """The triple of an S, P, O line, or None (rejected) where it cannot be one."""
    subject, predicate, obj = (part.strip() for part in parts)
    if not subject or not predicate:
        _reject(path, number, "empty subject or predicate", strict, stats)
        return None
    if "\x00" in subject or "\x00" in predicate:  # the index's string tries cannot hold NUL
        _reject(path, number, "a NUL character in the subject or predicate", strict, stats)
        return None
    surface, disambiguation = split_subject(subject)
    stats.triples += 1
    return Triple(surface, predicate, fold_whitespace(obj), disambiguation, number)


def _reject(path: str, line: int, reason: str, strict: bool, stats: ReadStats) -> None:
    if strict:
        raise bad_line(path, line, reason)
    stats.reject(line, reason)


def bad_line(path: str, line: int, reason: str) -> KgqaError:
    """The error a bad line stops a read with: the file and line, why, and how to skip such lines."""
    return KgqaError(f"{reason} (--skip-bad-lines skips such lines)", path, line)


def bad_lines_said(path: str, bad: int, first_bad: list[tuple[int, str]]) -> str:
    """One line naming the bad lines a lenient read skipped: how many, and the first by number."""
    named = "; ".join(f"line {line}: {reason}" for line, reason in first_bad)
    more = f"; and {bad - len(first_bad)} more" if bad > len(first_bad) else ""
    return f"{path}: skipped {bad} bad line{'s' if bad != 1 else ''} ({named}{more})"
