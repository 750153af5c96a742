"""The same questions answered by two checkouts of kgqa, alternating in one run: questions per
second in batches, one question at a time (p50 and mean), and how many top answers agree — how a
speed change is measured against the code before it on a machine whose speed wanders.

    python benchmarks/versus.py --checkpoint CK --baseline-code DIR [--baseline-checkpoint CK0]
        [--baseline-cache DIR] [--baseline-index IDX0] [--index IDX] [--kb KB] [--questions DEV]
        [--limit 512] [--single 64] [--rounds 2]

DIR is another checkout (a `git worktree` of the earlier commit), or this one (`.`) to compare two
indexes of KB (IDX0, IDX: one segment and eight, say); CK0 the checkpoint it reads (its reranker
fitted by its own code, where the features changed) and its own index cache where the index
format changed. Each measurement runs in a fresh child process per checkout
(`benchmarks/versus_child.py` with that checkout's kgqa on PYTHONPATH), warmed on one batch first;
the rounds alternate baseline and current so both see the same machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from harness import arguments, missing, record, ROOT  # first: it puts kgqa on sys.path

from kgqa.data import read_questions  # noqa: E402

CHILD = os.path.join(ROOT, "benchmarks", "versus_child.py")  # run with each side's kgqa on PYTHONPATH


def baseline_commit(code: str) -> str:
    """The commit the baseline checkout is at (its path where it is not a git checkout)."""
    done = subprocess.run(["git", "-C", code, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or os.path.abspath(code)


def run(code: str, checkpoint: str, cache: str | None, index: str | None, kb: str, questions: str,
        batch_size: int) -> dict:
    env = dict(os.environ, PYTHONPATH=code)
    if cache:
        env["KGQA_CACHE"] = cache
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, CHILD, checkpoint, kb, index or "", questions, str(batch_size), out.name],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=code)
        with open(out.name, encoding="utf-8") as handle:
            return json.load(handle)


def main() -> None:
    parser = arguments(__doc__, limit=512)
    parser.add_argument("--baseline-code", required=True)
    parser.add_argument("--baseline-checkpoint")
    parser.add_argument("--baseline-cache", help="KGQA_CACHE for the baseline (an older index format)")
    parser.add_argument("--baseline-index", help="An index of KB the baseline answers from (else its cache's)")
    parser.add_argument("--index", help="An index of KB the current code answers from (else its cache's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--single", type=int, default=64, help="answered one at a time")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if missing(args.questions, args.kb):
        return
    questions = [q.question for q in read_questions(args.questions)]
    sides = {"baseline": (os.path.abspath(args.baseline_code), args.baseline_checkpoint or args.checkpoint,
                          args.baseline_cache, args.baseline_index),
             "current": (ROOT, args.checkpoint, os.environ.get("KGQA_CACHE"), args.index)}
    found: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for batch_size, count in ((args.batch_size, args.limit), (1, args.single)):
            path = os.path.join(scratch, f"{batch_size}.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(questions[:count], handle, ensure_ascii=False)
            for _ in range(args.rounds):
                for side, (code, checkpoint, cache, index) in sides.items():
                    found.setdefault((side, batch_size), []).append(
                        run(code, checkpoint, cache, index, args.kb, path, batch_size))
    print(f"{args.limit} questions in batches of {args.batch_size}, {args.single} one at a time, "
          f"{args.rounds} alternating rounds, CPU, {found['current', 1][0]['threads']} threads\n")
    print("| code | batches: questions/s (each round) | one question: p50 ms | mean ms |")
    print("|---|---|---|---|")
    for side in sides:
        batched = [args.limit / r["wall"] for r in found[side, args.batch_size]]
        single = np.concatenate([r["times"] for r in found[side, 1]]) * 1000
        print(f"| {side} | {' / '.join(f'{v:.1f}' for v in batched)} | {np.median(single):.1f} | {single.mean():.1f} |")
    ratio_batch = (np.mean([r["wall"] for r in found["baseline", args.batch_size]])
                   / np.mean([r["wall"] for r in found["current", args.batch_size]]))
    ratio_single = (np.median(np.concatenate([r["times"] for r in found["baseline", 1]]))
                    / np.median(np.concatenate([r["times"] for r in found["current", 1]])))
    before, after = found["baseline", args.batch_size][0]["answers"], found["current", args.batch_size][0]["answers"]
    same = sum(a == b for a, b in zip(before, after))
    print(f"\ncurrent / baseline: batches {ratio_batch:.2f}x, one question (p50) {ratio_single:.2f}x faster; "
          f"same top answer on {same}/{len(before)} ({100 * same / len(before):.2f}%)")
    record("versus", {"baseline_code": args.baseline_code, "batch_ratio": ratio_batch, "single_p50_ratio": ratio_single,
                      "same_top_answer": same, "questions": len(before),
                      "questions_per_s": {side: [args.limit / r["wall"] for r in found[side, args.batch_size]] for side in sides}},
           f"against {baseline_commit(args.baseline_code)}: batches {ratio_batch:.2f}x, one question "
           f"(p50) {ratio_single:.2f}x; the same top answer on {same}/{len(before)}")


if __name__ == "__main__":
    main()
