"""Load on `kgqa serve` over loopback: N concurrent clients, each asking dev questions one at a time
for T seconds; throughput, latency p50/p99, errors, and how many decodes the batcher ran.

    python benchmarks/serve_load.py --checkpoint CKPT [--kb KB] [--clients 8] [--seconds 30]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import time

import aiohttp
import numpy as np

from shared_data import CLI, DATA, missing  # first: it puts kgqa on sys.path

from kgqa.data import read_questions  # noqa: E402


async def client(session: aiohttp.ClientSession, url: str, questions: list[str], until: float, seed: int,
                 latencies: list[float], errors: list[str]) -> None:
    rng = random.Random(seed)
    while time.time() < until:
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


async def load(url: str, questions: list[str], clients: int, seconds: float) -> tuple[list[float], list[str], dict]:
    latencies: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        before = await (await session.get(url + "/health")).json()
        until = time.time() + seconds
        await asyncio.gather(*(client(session, url, questions, until, seed, latencies, errors)
                               for seed in range(clients)))
        after = await (await session.get(url + "/health")).json()
    return latencies, errors, {"decodes": after["decodes"] - before["decodes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--kb", default=os.path.join(DATA, "kb.tsv"))
    parser.add_argument("--questions", default=os.path.join(DATA, "dev.json"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    questions = [q.question for q in read_questions(args.questions)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(CLI + ["serve", "--checkpoint", args.checkpoint, "--kb", args.kb, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async def wait_up() -> None:
            async with aiohttp.ClientSession() as session:
                for _ in range(600):
                    try:
                        async with session.get(url + "/health"):
                            return
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
                raise SystemExit("kgqa serve did not come up")

        asyncio.run(wait_up())
        latencies, errors, extra = asyncio.run(load(url, questions, args.clients, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = np.array(latencies) * 1000
    print("| clients | seconds | answers | errors | answers/s | p50 ms | p99 ms | decodes (mean batch) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.clients} | {args.seconds:.0f} | {len(ms)} | {len(errors)} | {len(ms) / args.seconds:.1f} | "
          f"{np.percentile(ms, 50):.0f} | {np.percentile(ms, 99):.0f} | {extra['decodes']} "
          f"({len(ms) / max(1, extra['decodes']):.1f}) |")
    for error in errors[:5]:
        print("error:", error)


if __name__ == "__main__":
    main()
