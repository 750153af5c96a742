"""Load on `kgqa serve` over loopback: N concurrent clients, each asking dev questions one at a time
for T seconds; throughput, latency p50/p99, errors, and how many decodes the service ran.

    python benchmarks/serve_load.py --checkpoint CKPT [--kb KB] [--clients 8] [--seconds 30] [--poison]
        [--serve "--workers 1" "--workers 2" ...] [--lone]
        [--baseline-code DIR [--baseline-checkpoint CK0] [--baseline-cache DIR]]

--serve runs one service for each string of `kgqa serve` options, in turn, in one run. With --lone, each
service also gets a lone client (a person: one question, its answer, a pause, the next), from
another loopback address (127.0.0.2) so the service can tell it from the load: first on the idle
service, then beside the N clients; its p50 in both, and the memory of the service's processes
under load (resident, and proportional: shared pages — the index's maps, the libraries — split
between the processes that map them, so the sum counts them once).

With --poison the same load runs twice against one server, first alone, then beside a client that
sends nothing but abuse (lone surrogates, deeply nested JSON, bodies over the size limit, wrong
content types and charsets, rebound Host names, requests it abandons mid-flight): the
well-behaved clients should see no error and a p99 within 2x of the first run.

With --baseline-code the same load runs first against a server of another checkout (a `git
worktree` of an earlier commit, reading CK0 and its own index cache where those differ): the two
side by side in one run.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from typing import Iterator

import aiohttp
import numpy as np

from harness import arguments, CLI, missing, record  # first: it puts kgqa on sys.path

from kgqa.data import read_questions  # noqa: E402


async def client(session: aiohttp.ClientSession, url: str, questions: list[str], until: float, seed: int,
                 latencies: list[float], errors: list[str], when: list[float] | None = None,
                 pause_s: float = 0.0) -> None:
    """Ask until `until` (`pause_s` between an answer and the next question); each good answer's
    seconds go to `latencies` (and the time it came to `when`, where given), each failure to
    `errors`."""
    rng = random.Random(seed)
    while time.time() < until:
        await asyncio.sleep(pause_s)
        started = time.perf_counter()
        try:
            async with session.post(url + "/ask", json={"question": rng.choice(questions)}) as response:
                body = await response.json()
                if response.status != 200 or "answer" not in body:
                    errors.append(f"{response.status}: {body}")
                    continue
        except aiohttp.ClientError as error:
            errors.append(repr(error))
            continue
        latencies.append(time.perf_counter() - started)
        if when is not None:
            when.append(time.time())


POISON = [  # (body, headers) a hostile or broken client sends
    (b'{"question": "\\ud800\\udfff\\ud800"}', {"Content-Type": "application/json"}),
    (b"[" * 200_000 + b"]" * 200_000, {"Content-Type": "application/json"}),
    (b'{"question": "' + "长".encode() * 400_000 + b'"}', {"Content-Type": "application/json"}),
    (b'{"question": "x"}', {"Content-Type": "text/plain"}),
    (b'{"question": "x"}', {"Content-Type": "application/json; charset=bogus"}),
    (b'{"question": "x"}', {"Content-Type": "application/json", "Host": "evil.example"}),
    (b'{"questions": [' + b",".join([b'"' + "长".encode() * 500 + b'"'] * 256) + b"]}", {"Content-Type": "application/json"}),
    (b"\xff\xfe not utf-8", {"Content-Type": "application/json"}),
]


async def poison(session: aiohttp.ClientSession, url: str, until: float, statuses: dict) -> None:
    """Abuse, in a loop; every third request is abandoned 5 ms in (a client that went away)."""
    rng = random.Random(1)
    sent = 0
    while time.time() < until:
        body, headers = POISON[sent % len(POISON)]
        sent += 1
        try:
            if sent % 3 == 0:
                (await asyncio.wait_for(session.post(url + "/ask", data=body, headers=headers), timeout=0.005)).release()
                continue
            async with session.post(url + "/ask", data=body, headers=headers) as response:
                await response.json()  # a body that is not JSON raises
                statuses[response.status] = statuses.get(response.status, 0) + 1
        except asyncio.TimeoutError:
            statuses["abandoned"] = statuses.get("abandoned", 0) + 1
        except (aiohttp.ClientError, ValueError) as error:
            statuses[type(error).__name__] = statuses.get(type(error).__name__, 0) + 1
        await asyncio.sleep(rng.uniform(0, 0.01))


LONE_ADDRESS = "127.0.0.2"  # loopback too, but another client to the service than the load's 127.0.0.1
LONE_PAUSE_S = 0.25


def lone_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                 connector=aiohttp.TCPConnector(local_addr=(LONE_ADDRESS, 0)))


async def load(url: str, questions: list[str], clients: int, seconds: float, with_poison: bool = False,
               lone: bool = False, pid: int | None = None) -> tuple[list[float], list[str], dict]:
    """`clients` clients for `seconds` (beside an abusive one, or a lone one from another address):
    the clients' latencies and errors, and what else was seen (decodes, the lone client's
    latencies, the service's peak memory)."""
    latencies: list[float] = []
    errors: list[str] = []
    statuses: dict = {}
    alone: list[float] = []
    memory: list[dict] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session, lone_session() as apart:
        before = await (await session.get(url + "/health")).json()
        cpu_before = cpu_seconds(pid) if pid else {}
        until = time.time() + seconds
        beside = [poison(session, url, until, statuses)] if with_poison else []
        beside += [client(apart, url, questions, until, 99, alone, errors, pause_s=LONE_PAUSE_S)] if lone else []
        beside += [watch_memory(pid, until, memory)] if pid else []
        await asyncio.gather(*(client(session, url, questions, until, seed, latencies, errors)
                               for seed in range(clients)), *beside)
        after = await (await session.get(url + "/health")).json()
        cpu = {process: round(spent - cpu_before.get(process, 0.0), 1)
               for process, spent in (cpu_seconds(pid) if pid else {}).items()}
    # a Ray Serve replica's /health has no decode count or worker (ray_serve_load.py)
    return latencies, errors, {"decodes": after.get("decodes", 0) - before.get("decodes", 0), "poison": statuses,
                               "worker_running": after.get("worker_running"), "lone": alone, "cpu": list(cpu.values()),
                               "memory": max(memory, key=lambda m: m["pss_mb"]) if memory else None}


def processes(pid: int) -> list[int]:
    """`pid` and its descendants (the service and its worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # one that ended as it was read
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as handle:
                    todo.extend(int(child) for child in handle.read().split())
    return found


def memory_of(pid: int) -> dict:
    """The service's processes' memory, MB: resident (each process counts every page it maps),
    proportional (a shared page split between the processes that map it: the sum is the machine's
    cost), anonymous per process (its own: model and heap) and the files' proportional part (the
    index's maps and the libraries, each page once however many processes map it)."""
    each = []
    for process in processes(pid):
        fields = {}
        try:
            with open(f"/proc/{process}/smaps_rollup", encoding="ascii") as rollup:
                for line in rollup:
                    name, _, rest = line.partition(":")
                    if rest.strip().endswith("kB"):
                        fields[name] = int(rest.split()[0]) / 1024
        except (FileNotFoundError, ProcessLookupError):  # it ended since it was listed
            continue
        each.append({"rss": fields["Rss"], "pss": fields["Pss"], "anonymous": fields["Anonymous"],
                     "pss_file": fields["Pss_File"]})
    return {"rss_mb": sum(m["rss"] for m in each), "pss_mb": sum(m["pss"] for m in each),
            "anonymous_mb": [round(m["anonymous"]) for m in each],
            "pss_file_mb": sum(m["pss_file"] for m in each), "processes": len(each)}


def cpu_seconds(pid: int) -> dict[int, float]:
    """Each of the service's processes' CPU seconds so far (user and system)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for process in processes(pid):
        with open(f"/proc/{process}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        found[process] = (int(fields[11]) + int(fields[12])) / ticks
    return found


async def watch_memory(pid: int, until: float, memory: list[dict]) -> None:
    while time.time() < until:
        memory.append(memory_of(pid))
        await asyncio.sleep(2)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--poison", action="store_true", help="Run again beside an abusive client.")
    parser.add_argument("--serve", nargs="+", default=[""], help="`kgqa serve` options, one service per string")
    parser.add_argument("--lone", action="store_true", help="A lone client: on the idle service, then beside the load.")
    parser.add_argument("--lone-seconds", type=float, default=20.0)
    parser.add_argument("--baseline-code", help="another checkout, whose server is loaded first")
    parser.add_argument("--baseline-checkpoint")
    parser.add_argument("--baseline-cache", help="KGQA_CACHE for the baseline (an older index format)")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    questions = [q.question for q in read_questions(args.questions)]
    sides = ([("baseline", [sys.executable, os.path.join(args.baseline_code, "cli.py")],
               args.baseline_checkpoint or args.checkpoint, args.baseline_cache)] if args.baseline_code else [])
    for name, cli, checkpoint, cache in sides + [("current", CLI, args.checkpoint, os.environ.get("KGQA_CACHE"))]:
        for options in args.serve if name == "current" else [""]:
            print(f"\n{name}: {cli[-1]} {options}")
            serve_and_load(args, questions, cli, checkpoint, cache, shlex.split(options), name)


@contextlib.contextmanager
def served(cli: list[str], serve_args: list[str], cache: str | None = None, up_s: float = 120.0
           ) -> Iterator[tuple[str, int]]:
    """`kgqa serve` (the CLI `cli`, its options `serve_args`) on a free loopback port, up: (its URL,
    its pid); stopped on leaving. `up_s`: how long it may take to come up (an index to build)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, **({"KGQA_CACHE": cache} if cache else {}))
    server = subprocess.Popen(cli + ["serve", *serve_args, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async def wait_up() -> None:
            async with aiohttp.ClientSession() as session:
                for _ in range(int(up_s / 0.2)):
                    try:
                        async with session.get(url + "/health"):
                            return
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
                raise SystemExit("kgqa serve did not come up")

        asyncio.run(wait_up())
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def serve_and_load(args: argparse.Namespace, questions: list[str], cli: list[str], checkpoint: str,
                   cache: str | None, options: list[str], side: str = "current") -> None:
    with served(cli, ["--checkpoint", checkpoint, "--kb", args.kb, *options], cache) as (url, pid):
        if args.lone:
            _, idle_errors, idle_run = asyncio.run(load(url, questions, 0, args.lone_seconds, lone=True))
            alone = idle_run["lone"]
            idle = np.percentile(np.array(alone) * 1000, 50)
        runs = [(False, asyncio.run(load(url, questions, args.clients, args.seconds, pid=pid)))]
        if args.poison:
            runs.append((True, asyncio.run(load(url, questions, args.clients, args.seconds, with_poison=True))))
        if args.lone:
            beside = asyncio.run(load(url, questions, args.clients, args.seconds, lone=True))
    print("| clients | poison client | seconds | answers | errors | answers/s | p50 ms | p99 ms | decodes (mean batch) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for poisoned, (latencies, errors, extra) in runs:
        ms = np.array(latencies) * 1000
        print(f"| {args.clients} | {'yes' if poisoned else 'no'} | {args.seconds:.0f} | {len(ms)} | {len(errors)} | "
              f"{len(ms) / args.seconds:.1f} | {np.percentile(ms, 50):.0f} | {np.percentile(ms, 99):.0f} | "
              f"{extra['decodes']} ({len(ms) / max(1, extra['decodes']):.1f}) |")
        if poisoned:
            print(f"poison client's replies: {extra['poison']}; worker running after: {extra['worker_running']}")
        for error in errors[:5]:
            print("error:", error)
    unpoisoned = runs[0][1]  # (latencies, errors, extra) of the run without the abusive client
    figures = {"code": side, "serve": " ".join(options), "clients": args.clients, "answers_per_s": len(unpoisoned[0]) / args.seconds,
               "p50_ms": float(np.percentile(np.array(unpoisoned[0]) * 1000, 50)), "errors": len(unpoisoned[1]),
               "memory": unpoisoned[2]["memory"], "cpu_s": unpoisoned[2]["cpu"]}
    memory = runs[0][1][2]["memory"]
    if memory:
        print(f"memory under load, peak: {memory['processes']} processes, resident {memory['rss_mb']:.0f} MB, "
              f"proportional {memory['pss_mb']:.0f} MB = anonymous (model and heap) per process "
              f"{memory['anonymous_mb']} MB + mapped files (index, libraries) {memory['pss_file_mb']:.0f} MB; "
              f"CPU seconds per process over the {args.seconds:.0f} s: {runs[0][1][2]['cpu']}")
    if args.lone:
        lone = np.array(beside[2]["lone"]) * 1000
        loaded = np.array(beside[0]) * 1000
        print(f"lone client (one question, its answer, {LONE_PAUSE_S} s, the next): idle service p50 {idle:.0f} ms "
              f"({len(alone)} answers, {len(idle_errors)} errors); beside {args.clients} clients p50 {np.percentile(lone, 50):.0f} ms, "
              f"p90 {np.percentile(lone, 90):.0f} ms ({len(lone)} answers) = {np.percentile(lone, 50) / idle:.2f}x idle; "
              f"the {args.clients} clients meanwhile {len(loaded) / args.seconds:.1f} answers/s, "
              f"p50 {np.percentile(loaded, 50):.0f} ms; errors {len(beside[1])}")
        figures.update(lone_idle_p50_ms=float(idle), lone_loaded_p50_ms=float(np.percentile(lone, 50)))
    record("serve_load", figures, ("the code before: " if side != "current" else "")
           + f"`kgqa serve {' '.join(options)}`".replace(" `", "`") + f", {args.clients} clients: "
           f"{figures['answers_per_s']:.1f} answers/s, p50 {figures['p50_ms']:.0f} ms, {figures['errors']} errors"
           + (f"; a lone client's p50 {figures['lone_idle_p50_ms']:.0f} ms idle, {figures['lone_loaded_p50_ms']:.0f} ms "
              "beside the load" if args.lone else ""))


if __name__ == "__main__":
    main()
