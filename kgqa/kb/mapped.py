"""Arrays of an index's files opened by memory map for random access.

A query reads a few bytes at scattered places (a key's objects, a surface's entities); the
kernel's default for a mapped file is to read ahead around each fault, which for such reads
fills the process's resident memory with pages it never looks at (gigabytes over a 200M-triple
index, after a few hundred questions). `MADV_RANDOM` turns that off: each fault reads its page.
"""
from __future__ import annotations

import mmap

import numpy as np


def random_access(array: np.ndarray) -> np.ndarray:
    """A plain ndarray view of a memory-mapped array, its map advised for random access
    (slicing an np.memmap costs several times more per call than slicing a plain view)."""
    found = getattr(array, "_mmap", None)
    if found is not None and hasattr(mmap, "MADV_RANDOM"):
        found.madvise(mmap.MADV_RANDOM)
    return np.asarray(array)


def load(path: str) -> np.ndarray:
    """The .npy file at `path`, mapped for random access."""
    return random_access(np.load(path, mmap_mode="r"))
