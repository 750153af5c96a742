"""Atomic writes: a run killed at any moment leaves the previous file or directory (or none),
never a torn one, never neither, and never a user's own directory replaced.

Why each step: the temporary name is beside the target so the rename stays on one file system;
the data and then the directory entry are fsynced, so a power cut after the rename cannot bring
back the old name with empty content; new files get the permissions a plain `open` would give
(mkstemp's 0600 would lock other users out of a file they could read before); a directory swap
goes through a fixed `.NAME.old` name that `recover_directory` puts back when a kill lands
between the two renames.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import stat
import tempfile
from typing import IO, Callable, Iterator

from kgqa.errors import KgqaError


def readable_file(path: str, expected: str) -> None:
    """The one message for an input path that is not a file: missing, or a directory where
    `expected` (say, "a KB file") was meant; the readers of KBs, question and change files share it."""
    if not os.path.exists(path):
        raise KgqaError("no such file", path)
    if os.path.isdir(path):
        raise KgqaError(f"is a directory, expected {expected}", path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[IO]:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`.

    The new file keeps the mode of the one it replaces (or gets 0666 less the umask)."""
    if os.path.isdir(path):
        raise KgqaError("is a directory, expected a file to write", path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(handle, stat.S_IMODE(os.stat(path).st_mode) if os.path.isfile(path) else 0o666 & ~_umask())
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _old(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.old")


def recover_directory(path: str) -> None:
    """Finish a directory swap a kill interrupted: with `path` gone, its previous version (left
    at `.NAME.old` between the two renames) is put back; with both present, the old one goes."""
    path = os.path.abspath(path)
    old = _old(path)
    if not os.path.isdir(old):
        return
    if os.path.lexists(path):
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, path)


def _remove_abandoned(path: str) -> None:
    """Temporary directories of killed writers (a cached index build can be gigabytes): each
    live writer holds a lock on its own, so one that can be locked is abandoned."""
    pattern = os.path.join(os.path.dirname(path), f".{glob.escape(os.path.basename(path))}.*.tmp")
    for temp in glob.glob(pattern):
        try:
            handle = os.open(temp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a writer is filling it right now
        else:
            shutil.rmtree(temp, ignore_errors=True)
        finally:
            os.close(handle)


def check_replaceable(path: str, replaceable: Callable[[str], bool], kind: str) -> None:
    """Refuse, before any work, to replace a path that is not one of ours (see atomic_directory)."""
    recover_directory(path)
    if os.path.lexists(path) and not (os.path.isdir(path) and (not os.listdir(path) or replaceable(path))):
        raise KgqaError(f"exists and is not a kgqa {kind}; not replacing it (choose another path)", path)


@contextlib.contextmanager
def atomic_directory(path: str, replaceable: Callable[[str], bool], kind: str) -> Iterator[str]:
    """Fill a temporary directory, then swap it in for `path`; the old one goes only after.

    `path` is replaced only when it does not exist, is empty, or `replaceable(path)` says it is
    one of ours (a kgqa `kind`); anything else is the user's and is refused before any work."""
    path = os.path.abspath(path)
    check_replaceable(path, replaceable, kind)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    _remove_abandoned(path)
    temp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    lock = os.open(temp, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.chmod(temp, 0o777 & ~_umask())
        yield temp
        for folder, _, names in os.walk(temp):
            for name in names:
                with open(os.path.join(folder, name), "rb") as written:
                    os.fsync(written.fileno())
            _fsync_directory(folder)
        old = _old(path)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(temp, path)
        _fsync_directory(parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def file_sha256(path: str) -> str:
    """A file's content hash: an index records its KB's, so one built from another KB is never used;
    the fitted models' manifest and the answer journal record theirs, so a changed file is seen."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
