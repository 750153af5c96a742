"""A node's own copy of an index published elsewhere (a shared volume, a directory every node can
read): what a service past one machine answers from (`kgqa.serve.ray_app`), so each node maps the
index from its own disk, once for all its replicas.

A new version reaches a node as segment-replicating engines ship one (OpenSearch's segment
replication, Solr's PULL replicas): an index never rewrites a file it wrote (an update or a merge
writes new segments and deletes files under new names, then a new manifest), so the node copies
only the files its copy lacks, each checked against the published file by size and sha256 as it
lands; then it opens the copy as the new manifest names it, which checks every segment as any
index open does (`KBIndex`: a truncated or half-written segment is a `DamagedIndex`), and only
then commits the manifest. A copy that fails any of this leaves the node's copy at the version it
had, and says why.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from kgqa.errors import KgqaError
from kgqa.files import atomic_file, file_sha256
from kgqa.kb.build import index_lock, is_index
from kgqa.kb.index import KBIndex
from kgqa.kb.manifest import HEADER, Manifest, collect_garbage, named_files, read_manifest, write_manifest
from kgqa.model.tokenizer import Tokenizer


def mirror(published: str, local: str, tokenizer: Tokenizer) -> KBIndex:
    """Bring the index in `local` (made where missing) to the version in `published` and open it;
    KgqaError (the local copy as it was) where a copied file differs from the published one or
    the copy does not open."""
    with index_lock(local):
        wanted = read_manifest(published)
        current = read_manifest(local) if is_index(local) else None
        os.makedirs(local, exist_ok=True)
        try:
            for name in sorted(named_files(wanted) - {HEADER}):
                _copy(os.path.join(published, name), os.path.join(local, name))
            _check(local, wanted, tokenizer)
        except (KgqaError, OSError) as error:
            if current is not None:  # what this attempt copied goes; the version before stays
                collect_garbage(local, current)
            raise KgqaError(f"cannot take version {wanted.version or 'as built'} of the published index ({error}); "
                            f"answering from the version before", published) from None
        write_manifest(local, wanted)  # the manifest checked, not the published file: it may have moved on since
    return KBIndex(local, tokenizer)


def _copy(source: str, target: str) -> None:
    """A published file or segment directory into the local copy, unless already there (the same
    name is the same file: none is ever rewritten); each file's sha256 checked as it lands."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(source)):
            _copy(os.path.join(source, name), os.path.join(target, name))
        return
    if os.path.isfile(target) and os.path.getsize(target) == os.path.getsize(source):
        return
    expected = file_sha256(source)
    with atomic_file(target, "wb") as out, open(source, "rb") as handle:
        shutil.copyfileobj(handle, out)
    if file_sha256(target) != expected:
        os.unlink(target)
        raise KgqaError(f"{os.path.basename(target)} differs from the published file once copied")


def _check(local: str, manifest: Manifest, tokenizer: Tokenizer) -> None:
    """Open the local files as `manifest` names them, before it is committed: a staging directory
    of links to them and the manifest (DamagedIndex: a segment that does not add up)."""
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(local)), prefix=".kgqa-mirror-") as staging:
        for name in named_files(manifest) - {HEADER}:
            os.symlink(os.path.join(os.path.abspath(local), name), os.path.join(staging, name))
        write_manifest(staging, manifest)
        KBIndex(staging, tokenizer)
