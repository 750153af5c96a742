"""Hours under load: `kgqa serve` with 8 clients and one abusive client for T minutes while the KB
changes under it — a triple added and the index updated every few minutes, the service following
its index directory between batches.

    python benchmarks/soak.py --checkpoint CK [--kb KB] [--minutes 30] [--update-every 180] [--clients 8]
                              [--by update|rebuild] [--workers N]

Each update adds a triple (a new predicate of a dev subject, a new object) and removes the one
added two updates before: `--by update` (the default) runs `kgqa update CHANGES --index DIR
--checkpoint CK` on the index directory the service reads; `--by rebuild` writes the changed KB and
runs `kgqa index NEW_KB -o DIR --checkpoint CK`, which swaps a rebuilt index in. A probe (a client
of its own, from another loopback address than the load's) then asks about the new triple until
the answer holds its object, and about the removed one until it no longer does.
Printed: per 5-minute window the good clients' answers, errors, p50/p99 and the service's memory
(its processes' proportional set sizes summed: shared pages once); per update the command's seconds, how long after it returned the first right answer came,
and the service's /health version before and after.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time

import aiohttp
import numpy as np

from harness import arguments, CLI, missing, record  # first: it puts kgqa on sys.path
from serve_load import client, lone_session, memory_of, poison, served  # noqa: E402

from kgqa.data import read_questions  # noqa: E402

NUMERALS = "一二三四五六七八九十"


async def soak(url: str, pid: int, questions: list[str], args: argparse.Namespace, kb: str, index: str,
               subjects: list[str]) -> tuple[list[dict], list[dict]]:
    latencies: list[float] = []  # seconds, of the answers that came at `answered`
    answered: list[float] = []
    errors: list[str] = []
    statuses: dict = {}
    memory: list[tuple[float, float]] = []
    updates: list[dict] = []
    started = time.time()
    until = started + 60 * args.minutes
    with open(kb, encoding="utf-8") as handle:
        base = handle.read()

    async def watch_memory() -> None:
        while time.time() < until:
            memory.append((time.time(), memory_of(pid)))
            await asyncio.sleep(10)

    async def update(session: aiohttp.ClientSession, prober: aiohttp.ClientSession) -> None:
        triples = []
        for number in range(1, 1000):
            await asyncio.sleep(max(0.0, started + number * args.update_every - time.time()))
            if time.time() > until - 30:
                return
            subject = subjects[number % len(subjects)]
            predicate = "新增属性" + NUMERALS[(number - 1) % 10] + NUMERALS[(number - 1) // 10 % 10]
            obj = f"第{number}次更新的值"
            triples.append(f"{subject}\t{predicate}\t{obj}")
            removed = triples[-3] if len(triples) > 2 else None
            added = "".join(line + "\n" for line in triples[-2:]) if args.by == "rebuild" else ""
            path = os.path.join(os.path.dirname(index), f"changes{number}.tsv")
            with open(path, "w", encoding="utf-8") as out:
                out.write(base + added if args.by == "rebuild" else
                          f"+\t{triples[-1]}\n" + (f"-\t{removed}\n" if removed else ""))
            command = ["index", path, "-o", index] if args.by == "rebuild" else ["update", path, "--index", index]
            before = await (await session.get(url + "/health")).json()
            began = time.time()
            process = await asyncio.create_subprocess_exec(*CLI, *command, "--checkpoint", args.checkpoint,
                                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await process.wait()
            returned = time.time()
            first_right = await probe(prober, triples[-1], returned, True)
            gone = None if removed is None else await probe(prober, removed, returned, False)
            after = await (await session.get(url + "/health")).json()
            updates.append({"update": number, "command_s": round(returned - began, 1), "exit": process.returncode,
                            "first_right_s": first_right, "removed_gone_s": gone,
                            "triples": [before["kb_triples"], after["kb_triples"]],
                            "switches": after["index_switches"]})
            os.remove(path)

    async def probe(session: aiohttp.ClientSession, triple: str, since: float, present: bool) -> float | None:
        """Seconds after `since` until the triple's question is answered with its object
        (`present`), or no longer is; None if not within a minute."""
        subject, predicate, obj = triple.split("\t")
        question = f"{subject.split('（')[0]}的{predicate}是什么？"
        while time.time() < since + 60:
            async with session.post(url + "/ask", json={"question": question}) as response:
                body = await response.json()
            if bool(body.get("answer") and body["answer"].endswith(obj)) == present:
                return round(time.time() - since, 2)
            await asyncio.sleep(0.05)
        return None

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session, lone_session() as prober:
        await asyncio.gather(*(client(session, url, questions, until, seed, latencies, errors, answered)
                               for seed in range(args.clients)),
                             poison(session, url, until, statuses), watch_memory(), update(session, prober))
    windows = []
    for start in np.arange(started, until, args.window_s):
        ms = np.array([s for t, s in zip(answered, latencies) if start <= t < start + args.window_s]) * 1000
        sampled = [m for t, m in memory if start <= t < start + args.window_s]
        windows.append({"minutes": f"{(start - started) / 60:.0f}-{(start + args.window_s - started) / 60:.0f}",
                        "answers": len(ms),
                        "p50": float(np.percentile(ms, 50)) if len(ms) else None,
                        "p99": float(np.percentile(ms, 99)) if len(ms) else None,
                        "pss_mb": max(m["pss_mb"] for m in sampled) if sampled else None,
                        "anonymous_mb": max(sum(m["anonymous_mb"]) for m in sampled) if sampled else None,
                        "per_process": sampled[-1]["anonymous_mb"] if sampled else None,
                        "files_mb": max(m["pss_file_mb"] for m in sampled) if sampled else None})
    print(f"poison client's replies: {statuses}; good requests that failed: {len(errors)}")
    for error in errors[:5]:
        print("error:", error)
    return windows, updates, len(errors)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--update-every", type=float, default=180.0, help="seconds between updates")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--by", choices=["update", "rebuild"], default="update", help="how the index changes")
    parser.add_argument("--workers", type=int, default=1, help="kgqa serve --workers")
    parser.add_argument("--window-s", type=float, default=300.0, help="seconds of each printed window")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    dev = read_questions(args.questions)
    questions = [q.question for q in dev]
    subjects = [q.gold()[0] for q in dev if q.gold()][:50]
    scratch = tempfile.mkdtemp(prefix="kgqa-soak-")
    kb = os.path.join(scratch, "kb.tsv")
    shutil.copyfile(args.kb, kb)
    index = os.path.join(scratch, "index")
    try:
        with served(CLI, ["--checkpoint", args.checkpoint, "--kb", kb, "--index", index, "--workers", str(args.workers)],
                    up_s=600) as (url, pid):
            windows, updates, failed = asyncio.run(soak(url, pid, questions, args, kb, index, subjects))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.clients} clients and one abusive client, {args.minutes:.0f} minutes, an update (by {args.by}) "
          f"every {args.update_every:.0f} s, --workers {args.workers}\n")
    print("| minutes | answers | p50 ms | p99 ms | service PSS MB (max) | anonymous MB (max; at the window's end, "
          "per process) | mapped files' PSS MB (max) |")
    print("|---|---|---|---|---|---|---|")
    for w in windows:
        print(f"| {w['minutes']} | {w['answers']} | {w['p50'] or 0:.0f} | {w['p99'] or 0:.0f} | {w['pss_mb'] or 0:.0f} | "
              f"{w['anonymous_mb'] or 0:.0f} ({w['per_process']}) | {w['files_mb'] or 0:.0f} |")
    print(f"\n| update | `kgqa {args.by}` s | exit | first right answer after it returned, s | removed triple "
          "no longer answered after, s | triples before → after | switches |")
    print("|---|---|---|---|---|---|---|")
    for u in updates:
        print(f"| {u['update']} | {u['command_s']} | {u['exit']} | {u['first_right_s']} | {u['removed_gone_s']} | "
              f"{u['triples'][0]} → {u['triples'][1]} | {u['switches']} |")
    answered = sum(w["answers"] for w in windows)
    pss = [w["pss_mb"] for w in windows if w["pss_mb"]]
    record("soak", {"minutes": args.minutes, "workers": args.workers, "by": args.by, "failed": failed, "windows": windows,
                    "updates": updates},
           f"{args.minutes:.0f} min, {args.clients} clients + an abusive one, an update every {args.update_every:.0f} s, "
           f"--workers {args.workers}: {failed} failed of {answered} good requests; PSS {pss[0]:.0f} MB in the first window, "
           f"at most {max(pss):.0f} (+{100 * (max(pss) / pss[0] - 1):.1f}%), {pss[-1]:.0f} in the last; "
           f"{sum(u['exit'] != 0 for u in updates)} failed updates of {len(updates)}" if pss else "no window measured")


if __name__ == "__main__":
    main()
