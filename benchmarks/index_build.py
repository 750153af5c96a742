"""The index build beside the code before a change: `kgqa index KB` by this checkout and by
another, alternating in one run, each a fresh process: wall time, peak RSS and size on disk.

    python benchmarks/index_build.py --checkpoint CK --baseline-code DIR [--kb KB] [--rounds 2]

CK gives the tokenizer both sides build with (the checkpoint's own). Records the medians and their
ratios (benchmarks/results/index_build.jsonl).
"""
from __future__ import annotations

import os
import statistics
import tempfile

from harness import CLI, arguments, missing, record  # first: it puts kgqa on sys.path
from scale import run, size_of
from versus import baseline_commit


def build(code: str, kb: str, checkpoint: str, out: str) -> tuple[float, float, int]:
    """(wall s, peak RSS GiB, bytes on disk) of one `kgqa index` by the checkout at `code`."""
    os.environ["PYTHONPATH"] = code
    try:
        wall, rss, _ = run([CLI[0], os.path.join(code, "cli.py"), "index", kb, "--checkpoint", checkpoint, "-o", out])
    finally:
        del os.environ["PYTHONPATH"]
    return wall, rss, size_of(out)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--baseline-code", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if missing(args.kb):
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sides = {"baseline": args.baseline_code, "current": here}
    found: dict[str, list[tuple[float, float, int]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as work:
        for round_no in range(args.rounds):
            for side, code in sides.items():
                found[side].append(build(code, args.kb, args.checkpoint, os.path.join(work, f"{side}{round_no}")))
                wall, rss, size = found[side][-1]
                print(f"round {round_no + 1} {side}: {wall:.1f} s, peak {rss:.2f} GiB, {size / 2**20:.0f} MiB")
    medians = {side: [statistics.median(values) for values in zip(*runs)] for side, runs in found.items()}
    (b_wall, b_rss, b_size), (c_wall, c_rss, c_size) = medians["baseline"], medians["current"]
    print(f"\nmedian: baseline {b_wall:.1f} s / {b_rss:.2f} GiB / {b_size / 2**20:.0f} MiB; current {c_wall:.1f} s / "
          f"{c_rss:.2f} GiB / {c_size / 2**20:.0f} MiB: {c_wall / b_wall:.2f}x the time, {c_rss / b_rss:.2f}x the memory, "
          f"{c_size / b_size:.2f}x the disk")
    record("index_build", {"baseline_commit": baseline_commit(args.baseline_code), "baseline": medians["baseline"],
                           "current": medians["current"], "time_ratio": c_wall / b_wall, "memory_ratio": c_rss / b_rss,
                           "disk_ratio": c_size / b_size},
           f"kgqa index {os.path.basename(args.kb)}: {c_wall:.1f} s / {c_rss:.2f} GiB beside {b_wall:.1f} s / "
           f"{b_rss:.2f} GiB before ({c_wall / b_wall:.2f}x, {c_rss / b_rss:.2f}x)")


if __name__ == "__main__":
    main()
