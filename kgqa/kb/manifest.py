"""The index's manifest, write side: the one file (`header.json`) that names the segments an index
answers from and, for each, the file of its surfaces hidden by later ones. Writing it is the
commit point of a build, an update and a merge: everything it names is written (and fsynced)
first, then the manifest replaces the old one atomically, then whatever no manifest names any
more is removed. A kill at any moment leaves the old manifest and what it names, or the new one.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Iterator

from kgqa.files import atomic_file
from kgqa.kb.index import FORMAT_VERSION, HEADER, read_manifest


def new_manifest(kb_sha256: str, tokenizer_sha256: str) -> dict:
    """The manifest of an index with no segments yet."""
    return {"format": FORMAT_VERSION, "kb_sha256": kb_sha256, "tokenizer_sha256": tokenizer_sha256, "triples": 0,
            "skipped": {}, "segments": [], "next_segment": 0, "generation": 0}


def segment_entry(name: str, header: dict) -> dict:
    """A segment's entry in the manifest, from the header `write_segment` returned; nothing hidden."""
    return {"name": name, "triples": header["triples"], "skipped": header["skipped"], "deletes": None,
            "hidden_surfaces": 0, "hidden_triples": 0}


def live_triples(entry: dict) -> int:
    """The triples of a segment no later one hides."""
    return entry["triples"] - entry["hidden_triples"]


def write_manifest(directory: str, manifest: dict) -> None:
    """Commit `manifest` into `directory` (its triple count summed from its segments), then
    remove every file and segment it does not name."""
    manifest["triples"] = sum(live_triples(entry) for entry in manifest["segments"])
    with atomic_file(os.path.join(directory, HEADER)) as handle:
        json.dump(manifest, handle, ensure_ascii=False, indent=1)
    collect_garbage(directory, manifest)


def named_files(manifest: dict) -> set[str]:
    """The names in an index directory a manifest needs: itself, its segments, their deletes."""
    names = {HEADER}
    for entry in manifest["segments"]:
        names.add(entry["name"])
        if entry["deletes"]:
            names.update(f"{entry['deletes']}.{part}.npy" for part in ("hidden", "pruned"))
    return names


def collect_garbage(directory: str, manifest: dict) -> None:
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
