"""Scale on a KB of real size: `kgqa index` wall time, peak RSS and size on disk; the time to open
the index; `kgqa predict` peak RSS with it (its pages out of the page cache first), beside the same
run with a 1k-triple KB.

    python benchmarks/make_kb.py -o /tmp/kb20m.tsv
    python benchmarks/scale.py --kb /tmp/kb20m.tsv --checkpoint checkpoints/kgclue/best [--questions DEV] [--limit 1000]
        [--segment-triples N --jobs J]  (the big build's `kgqa index` options; default: the command's)
        [--skip-bad-lines]  (a KB an older make_kb.py wrote holds a few lines of a subject of spaces)

Every step runs as its own process (`kgqa ...` as a user runs it), so peak RSS is that process's
own (`wait4`'s ru_maxrss).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import arguments, CLI, missing, record  # first: it puts kgqa on sys.path


def run(command: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS GiB, stdout) of one child process; stops the benchmark if it fails."""
    started = time.time()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        sys.exit(f"failed ({status}): {' '.join(command)}")
    return time.time() - started, usage.ru_maxrss / 2**20, out.strip()


def uncached(directory: str) -> None:
    """Drop `directory`'s files from the page cache (`POSIX_FADV_DONTNEED`: their clean pages go; no
    root needed, unlike drop_caches): a predict right after the build would otherwise map the pages
    the build left cached around each one it reads (fault-around) and count them as its own."""
    for folder, _, files in os.walk(directory):
        for name in files:
            handle = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(handle)


def size_of(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory) for f in files)


def main() -> None:
    parser = arguments(__doc__, limit=1000)  # --kb: the big KB (benchmarks/make_kb.py writes one)
    parser.add_argument("--work", default=None, help="where indexes go (default: a temp dir, removed)")
    parser.add_argument("--segment-triples", type=int, default=None, help="the big build's segment size")
    parser.add_argument("--jobs", type=int, default=None, help="segments the big build makes at once")
    parser.add_argument("--skip-bad-lines", action="store_true", help="skip the KB's lines that are no triple")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    work = args.work or tempfile.mkdtemp(prefix="kgqa-scale-")
    try:
        big = os.path.join(work, "index-big")
        shutil.rmtree(big, ignore_errors=True)
        skip = ["--skip-bad-lines"] if args.skip_bad_lines else []
        options = [*skip, *(["--segment-triples", str(args.segment_triples)] if args.segment_triples else []),
                   *(["--jobs", str(args.jobs)] if args.jobs else [])]
        wall, rss, out = run(CLI + ["index", args.kb, "--checkpoint", args.checkpoint, "-o", big, *options])
        tsv, index_bytes = os.path.getsize(args.kb), size_of(big)
        print(f"kgqa index: {out}")
        print(f"| `kgqa index` | wall {wall / 60:.1f} min | peak RSS {rss:.2f} GiB | index {index_bytes / 2**30:.2f} GiB "
              f"= {index_bytes / tsv:.2f}× the TSV ({tsv / 2**30:.2f} GiB) |")

        probe = ("import sys, time; from kgqa.kb.index import KBIndex; t = time.perf_counter(); "
                 "i = KBIndex(sys.argv[1]); i.names.mentions('刘晓华主要讲什么课啊？'); print(time.perf_counter() - t)")
        opened = min(float(run([sys.executable, "-c", probe, big])[2]) for _ in range(3))
        print(f"| open the index + first mention query | {opened:.3f} s (best of 3, imports excluded) |")

        small_kb = os.path.join(work, "kb1k.tsv")
        with open(args.kb, encoding="utf-8") as source, open(small_kb, "w", encoding="utf-8") as out_file:
            for _, line in zip(range(1000), source):
                out_file.write(line)
        questions = os.path.join(work, "questions.json")
        with open(args.questions, encoding="utf-8") as source, open(questions, "w", encoding="utf-8") as out_file:
            for _, line in zip(range(args.limit), source):
                out_file.write(line)
        small = os.path.join(work, "index-small")
        run(CLI + ["index", small_kb, "--checkpoint", args.checkpoint, "-o", small, *skip])
        rows = {}
        for name, kb, index in (("1k-triple KB", small_kb, small), ("big KB", args.kb, big)):
            uncached(index)
            rows[name] = run(CLI + ["predict", questions, "--checkpoint", args.checkpoint, "--kb", kb,
                                    "--index", index, "-o", os.path.join(work, f"pred-{len(name)}.json"), *skip])
            print(f"| `kgqa predict` {args.limit} questions, {name} | wall {rows[name][0]:.0f} s | "
                  f"peak RSS {rows[name][1]:.2f} GiB |")
        print(f"| predict RSS, big KB minus 1k KB | {rows['big KB'][1] - rows['1k-triple KB'][1]:.2f} GiB |")
        with open(args.kb, "rb") as lines:
            triples = sum(1 for _ in lines)
        record("scale", {"kb_lines": triples, "index_min": wall / 60, "index_peak_gib": rss, "index_gib": index_bytes / 2 ** 30,
                         "open_s": opened, "predict": {name: {"wall_s": w, "peak_gib": r} for name, (w, r, _) in rows.items()}},
               f"{triples / 1e6:.1f}M-line KB: `kgqa index` {wall / 60:.1f} min at peak {rss:.2f} GiB, opened in "
               f"{opened:.3f} s; predict's memory {rows['big KB'][1] - rows['1k-triple KB'][1]:.2f} GiB above a 1k KB's")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
