"""Where the benchmarks find the project and KgCLUE's files, and how they skip without them.

The real data lives in ../shared beside the project and is absent on a fresh clone or in CI; every
benchmark must then skip cleanly, and all of them must look in the same place.
"""
from __future__ import annotations

import collections
import contextlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "kgclue")
CLI = [sys.executable, os.path.join(ROOT, "cli.py")]  # `kgqa` as a child process, installed or not
sys.path.insert(0, ROOT)  # kgqa importable from a checkout that was never pip-installed


def missing(*paths: str) -> bool:
    """True, after saying which, when any of `paths` is not a file: the benchmark then skips."""
    absent = [path for path in paths if not os.path.isfile(path)]
    if absent:
        print(f"skipped: no {' or '.join(absent)}")
    return bool(absent)


SPENT: collections.Counter = collections.Counter()  # seconds per label, filled by `timing`
CALLS: collections.Counter = collections.Counter()


@contextlib.contextmanager
def timing(owner, name: str, label: str):
    """Accumulate the wall time of every call of owner.name into SPENT[label] (and count it)."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter() - start
            CALLS[label] += 1

    setattr(owner, name, timed)
    try:
        yield
    finally:
        setattr(owner, name, original)
