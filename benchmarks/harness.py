"""What every benchmark shares: where the project and KgCLUE's files are (and skipping cleanly
without them), the common options, opening the pipeline, the questions, timing, and the result
record each run leaves.

The real data lives in ../shared beside the project and is absent on a fresh clone or in CI; every
benchmark must then skip cleanly, and all of them look in the same place. A run's figures go to
`benchmarks/results/NAME.jsonl` as one JSON line (the commit, whether the tree had changes, the
machine, the command and the figures); `benchmarks/report.py` makes docs/benchmarks.md's table of
today's figures from the newest line of each.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "kgclue")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
CLI = [sys.executable, os.path.join(ROOT, "cli.py")]  # `kgqa` as a child process, installed or not
sys.path.insert(0, ROOT)  # kgqa importable from a checkout that was never pip-installed


def missing(*paths: str) -> bool:
    """True, after saying which, when any of `paths` is not a file: the benchmark then skips."""
    absent = [path for path in paths if not os.path.isfile(path)]
    if absent:
        print(f"skipped: no {' or '.join(absent)}")
    return bool(absent)


def arguments(doc: str, checkpoint: bool = True, limit: int | None = None, seed: bool = False,
              device: str | None = None) -> argparse.ArgumentParser:
    """A parser with the options the benchmarks share, described by the first line of `doc`:
    `--checkpoint` (required where `checkpoint`), `--kb` and `--questions` (a question file; both
    KgCLUE's by default), `--limit` (how many of them, where `limit` gives a default), `--seed`,
    `--device` (where `device` gives a default). The benchmark adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if checkpoint:
        parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--kb", default=os.path.join(DATA, "kb.tsv"))
    parser.add_argument("--questions", default=os.path.join(DATA, "dev.json"), help="a question file")
    if limit is not None:
        parser.add_argument("--limit", type=int, default=limit, help="how many of its questions (0: all)")
    if seed:
        parser.add_argument("--seed", type=int, default=0)
    if device is not None:
        parser.add_argument("--device", default=device, help="where the model runs (auto: a GPU where one is present)")
    return parser


def questions(args: argparse.Namespace, need_answers: bool = False) -> list:
    """The `Question`s of `--questions`, the first `--limit` where the benchmark has one."""
    from kgqa.data import read_questions

    asked = read_questions(args.questions, need_answers=need_answers)
    return asked[: args.limit] if getattr(args, "limit", None) else asked


def pipeline(args: argparse.Namespace, **settings):
    """The pipeline (`Source.open`) over `--checkpoint` and `--kb` (and `--device`, where the benchmark has
    one), with `settings` over the decoding defaults."""
    from kgqa.settings import DecodeSettings
    from kgqa.source import Source

    return Source(args.checkpoint, args.kb, device=getattr(args, "device", "auto"),
                  settings=DecodeSettings(**settings)).open()


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


def _git(*command: str) -> str:
    try:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# the code that runs is the one there at the start: a commit made while a long benchmark runs is not it
STARTED_AT = {"commit": _git("rev-parse", "--short", "HEAD"),
              # the records themselves excepted: a run before this one leaves its line there
              "changed_files": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                         ":!benchmarks/results")),
              # a run's records share it
              "run": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def machine() -> dict:
    """What the figures ran on: CPU model and cores, memory, and the GPU where torch sees one."""
    described = {"cores": os.cpu_count(), "python": platform.python_version()}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            described["cpu"] = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                                    platform.processor())
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="utf-8") as handle:
            described["memory_gb"] = round(int(handle.readline().split()[1]) / 2 ** 20, 1)
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        described["gpu"] = sys.modules["torch"].cuda.get_device_name(0)
    return described


def record(name: str, figures: dict, summary: str) -> str:
    """Append one run's result to benchmarks/results/NAME.jsonl: `figures` (what the run measured,
    baselines beside the figures they are read against), `summary` (the line docs/benchmarks.md's
    table shows), the commit the run started on and whether the tree differed from it, the machine,
    the command, the time. Returns the file's path."""
    os.makedirs(RESULTS, exist_ok=True)
    line = {"benchmark": name, "summary": summary, "figures": figures,
            **STARTED_AT, "machine": machine(),
            "command": shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = os.path.join(RESULTS, f"{name}.jsonl")
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"recorded in {os.path.relpath(path, ROOT)}")
    return path
