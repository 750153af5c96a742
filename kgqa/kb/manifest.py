"""The index's manifest: the one file (`header.json`) that names the segments an index answers
from and, for each, the file of its surfaces hidden by later ones. `Manifest` and `SegmentEntry`
are its fields, typed; `read_manifest` is the read side every opener uses, `write_manifest` the
commit point of a build, an update and a merge: everything it names is written (and fsynced)
first, then the manifest replaces the old one atomically, then whatever no manifest names any
more is removed. A kill at any moment leaves the old manifest and what it names, or the new one.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Iterator

from kgqa.errors import DamagedIndex, KgqaError
from kgqa.files import atomic_file

FORMAT_VERSION = 7
HEADER = "header.json"


@dataclass
class SegmentEntry:
    """One segment as the manifest names it: its directory, its triples, and the deletes file pair
    (`NAME.dG.hidden.npy`, `.pruned.npy`) of its surfaces later segments hide, if any."""

    name: str
    triples: int
    deletes: str | None = None
    hidden_surfaces: int = 0
    hidden_triples: int = 0

    @property
    def live_triples(self) -> int:
        """The triples of the segment no later one hides."""
        return self.triples - self.hidden_triples

    def deletes_files(self) -> dict[str, str]:
        """Its deletes files by part ("hidden": the surfaces hidden, "pruned": the trie edges cut),
        the one place their names are spelled; {} for none."""
        return {part: f"{self.deletes}.{part}.npy" for part in ("hidden", "pruned")} if self.deletes else {}


@dataclass
class Manifest:
    """What an index is: the KB and tokenizer it was built from, its segments oldest first, and
    the counters a writer advances (`next_segment` names the next segment, `generation` the next
    deletes files); after updates, the hash of what it answers (`version`) and the change files
    applied (`changes`)."""

    kb_sha256: str
    tokenizer_sha256: str
    segments: list[SegmentEntry] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # KB lines left out, by why
    bad_lines: int = 0  # lines of the KB that are no triple, skipped (`kgqa index --skip-bad-lines`)
    first_bad_lines: list[tuple[int, str]] = field(default_factory=list)  # the first of them: (line, why)
    next_segment: int = 0
    generation: int = 0
    kb_path: str | None = None
    version: str | None = None
    changes: list[dict] = field(default_factory=list)
    format: int = FORMAT_VERSION

    @property
    def triples(self) -> int:
        """The triples the index answers from: its segments' live ones."""
        return sum(entry.live_triples for entry in self.segments)

    def new_segment_name(self) -> str:
        """The name of the next segment a writer adds (the counter advanced)."""
        name = f"s{self.next_segment:06d}"
        self.next_segment += 1
        return name

    def as_json(self) -> dict:
        """The manifest as `header.json` holds it (its triple count written for readers of the file;
        fields an index without updates lacks left out)."""
        found = asdict(self) | {"triples": self.triples}
        for optional in ("kb_path", "version"):
            if found[optional] is None:
                del found[optional]
        for optional in ("changes", "bad_lines", "first_bad_lines"):
            if not found[optional]:
                del found[optional]
        return found

    @classmethod
    def from_json(cls, found: dict, directory: str) -> Manifest:
        """The manifest `header.json` held, checked for its format and fields (`directory` names
        the index in an error)."""
        version = found.get("format") if isinstance(found, dict) else None
        if version != FORMAT_VERSION:
            raise KgqaError(f"index format {version}, this kgqa reads {FORMAT_VERSION}: rebuild this index with "
                            "`kgqa index` (a cached one is rebuilt by itself)", directory)
        missing = [key for key in ("kb_sha256", "tokenizer_sha256", "triples", "skipped", "segments") if key not in found]
        if missing:
            raise DamagedIndex(f"header lacks {', '.join(missing)}", directory)
        if not found["segments"]:
            raise DamagedIndex("its manifest names no segment", directory)
        try:
            segments = [SegmentEntry(**entry) for entry in found["segments"]]
            bad = [(int(line), str(why)) for line, why in found.get("first_bad_lines", [])]
            return cls(**{**{k: v for k, v in found.items() if k != "triples"}, "segments": segments,
                          "first_bad_lines": bad})
        except TypeError as error:
            raise DamagedIndex(f"unreadable {HEADER} ({error})", directory) from None


def read_manifest(directory: str) -> Manifest:
    """The manifest of the index in `directory` as committed, checked for its format and fields."""
    path = os.path.join(directory, HEADER)
    try:
        with open(path, encoding="utf-8") as handle:
            found = json.load(handle)
    except FileNotFoundError:
        raise KgqaError(f"not a kgqa index (no {HEADER})", directory) from None
    except (OSError, ValueError) as error:
        raise DamagedIndex(f"unreadable {HEADER} ({error})", directory) from None
    return Manifest.from_json(found, directory)


def write_manifest(directory: str, manifest: Manifest) -> None:
    """Commit `manifest` into `directory`, then remove every file and segment it does not name."""
    with atomic_file(os.path.join(directory, HEADER)) as handle:
        json.dump(manifest.as_json(), handle, ensure_ascii=False, indent=1)
    collect_garbage(directory, manifest)


def named_files(manifest: Manifest) -> set[str]:
    """The names in an index directory a manifest needs: itself, its segments, their deletes."""
    names = {HEADER}
    for entry in manifest.segments:
        names.add(entry.name)
        names.update(entry.deletes_files().values())
    return names


def collect_garbage(directory: str, manifest: Manifest) -> None:
    """Remove what `manifest` does not name: segments merged away, deletes superseded, and the
    leftovers of a writer killed before its commit. Only a writer holding the index's lock calls
    this; a reader that opened the old manifest keeps its maps (the files stay until unmapped),
    and one opening it right now retries with the new manifest."""
    keep = named_files(manifest)
    for name in os.listdir(directory):
        if name not in keep:
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


@contextlib.contextmanager
def uncommitted(directory: str) -> Iterator[None]:
    """Around a writer's work up to its commit: where it fails, what it wrote is removed."""
    try:
        yield
    except BaseException:
        collect_garbage(directory, read_manifest(directory))
        raise
