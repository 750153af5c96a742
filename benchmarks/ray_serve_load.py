"""Ray Serve beside `kgqa serve` on one machine: the same load (N concurrent clients asking dev
questions one at a time for T seconds, `serve_load.py`'s client) against `kgqa serve --workers 2`
and then against the Ray Serve deployment with 2 replicas (`kgqa/serve/ray_app.py`, a local Ray),
same checkpoint, KB and index, in one run: answers/s, p50, errors, and each answering process's
memory under load (proportional: a page shared by several processes split between them, so the
index's file pages, mapped by every replica, show as its share, not its whole). Then the first
--same questions asked of the replicas in requests of 32 and one at a time, their top answers
against `kgqa predict`'s (the library's, in this process), and the replica ids seen.

    python benchmarks/ray_serve_load.py --checkpoint CK [--kb KB] [--clients 8] [--seconds 30]
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.request

import numpy as np

from harness import CLI, arguments, missing, record  # first: it puts kgqa on sys.path
from serve_load import load, memory_of, served

from kgqa.data import read_questions  # noqa: E402


def summary(name: str, latencies: list[float], errors: list[str], seconds: float) -> dict:
    ms = np.array(latencies) * 1000
    figures = {"answers_per_s": len(ms) / seconds, "p50_ms": float(np.percentile(ms, 50)), "errors": len(errors)}
    print(f"| {name} | {len(ms)} | {len(errors)} | {figures['answers_per_s']:.1f} | {figures['p50_ms']:.0f} | "
          f"{np.percentile(ms, 99):.0f} |")
    return figures


def replica_pids(url: str, replicas: int = 2) -> list[int]:
    """The replicas' process ids, as their /health says them (asked until each has answered)."""
    pids: set[int] = set()
    while len(pids) < replicas:
        with urllib.request.urlopen(url + "/health", timeout=30) as response:
            pids.add(json.loads(response.read())["pid"])
    return sorted(pids)


def same_answers(url: str, questions: list[str], checkpoint: str, kb: str) -> tuple[int, int]:
    """How many of the replicas' top answers to `questions` (asked in requests of 32, then one at a
    time) are `kgqa predict`'s, and how many replicas answered them."""
    from kgqa.settings import DecodeSettings
    from kgqa.source import Source

    qa = Source(checkpoint, kb, settings=DecodeSettings(min_confidence=0.0)).open()
    expected = [top[0].answer() if top else "" for top in qa.ask(questions)]
    served, replicas = [], set()
    requests = [questions[i:i + 32] for i in range(0, len(questions), 32)] + [[q] for q in questions]
    for asked in requests:
        body = json.dumps({"questions": asked}).encode()
        request = urllib.request.Request(url + "/ask", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            for answer in json.loads(response.read()):
                served.append(answer["candidates"][0]["answer"] if answer["candidates"] else "")
                replicas.add(answer["replica"])
    return sum(a == b for a, b in zip(served, expected + expected)), len(replicas)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--same", type=int, default=200, help="questions whose top answers are compared")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    questions = [q.question for q in read_questions(args.questions)]
    rows = {}
    print("| service | answers | errors | answers/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    with served(CLI, ["--checkpoint", args.checkpoint, "--kb", args.kb, "--workers", "2"], up_s=600) as (url, pid):
        latencies, errors, extra = asyncio.run(load(url, questions, args.clients, args.seconds, pid=pid))
    rows["kgqa serve --workers 2"] = summary("kgqa serve --workers 2", latencies, errors, args.seconds)
    rows["kgqa serve --workers 2"]["memory"] = extra["memory"]

    import ray
    from ray import serve

    from kgqa.serve.ray_app import app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("KGQA_")}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    started = time.time()
    serve.run(app({"checkpoint": args.checkpoint, "kb": args.kb, "replicas": 2}), name="kgqa", route_prefix="/")
    print(f"(Ray Serve: 2 replicas up in {time.time() - started:.0f} s)")
    memory: list[list[dict]] = []
    stop = threading.Event()

    pids = replica_pids(f"http://127.0.0.1:{port}")

    def watch() -> None:  # the replicas' memory every 5 s under the load
        while not stop.wait(5):
            memory.append([memory_of(pid) for pid in pids])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        latencies, errors, _ = asyncio.run(load(f"http://127.0.0.1:{port}", questions, args.clients, args.seconds))
    finally:
        stop.set()
        watcher.join()
    rows["ray serve, 2 replicas"] = summary("Ray Serve, 2 replicas", latencies, errors, args.seconds)
    same, replicas = same_answers(f"http://127.0.0.1:{port}", questions[:args.same], args.checkpoint, args.kb)
    serve.shutdown()
    ray.shutdown()
    peak = max(memory, key=lambda each: sum(m["pss_mb"] for m in each))
    rows["ray serve, 2 replicas"]["memory"] = peak
    ratio = rows["ray serve, 2 replicas"]["answers_per_s"] / rows["kgqa serve --workers 2"]["answers_per_s"]
    mine = rows["kgqa serve --workers 2"]["memory"]
    print(f"\nRay Serve / kgqa serve: {ratio:.2f}x the answers a second")
    print(f"the same top answer as kgqa predict: {same} of {2 * len(questions[:args.same])} (in requests of 32, "
          f"then one at a time); replicas seen: {replicas}")
    print(f"memory under load, kgqa serve --workers 2 (serving process, 2 workers, the lane): proportional "
          f"{mine['pss_mb']:.0f} MB, of it mapped files {mine['pss_file_mb']:.0f} MB; anonymous per process "
          f"{mine['anonymous_mb']} MB")
    for n, replica in enumerate(peak):
        print(f"Ray replica {n}: proportional {replica['pss_mb']:.0f} MB = anonymous {replica['anonymous_mb'][0]} MB "
              f"+ its share of mapped files {replica['pss_file_mb']:.0f} MB (resident {replica['rss_mb']:.0f} MB)")
    record("ray_serve_load", {"clients": args.clients, "seconds": args.seconds, **rows, "ratio": ratio,
                              "same_answers": same, "asked": 2 * len(questions[:args.same]), "replicas_seen": replicas},
           f"Ray Serve, 2 replicas: {rows['ray serve, 2 replicas']['answers_per_s']:.1f} answers/s, p50 "
           f"{rows['ray serve, 2 replicas']['p50_ms']:.0f} ms beside kgqa serve --workers 2's "
           f"{rows['kgqa serve --workers 2']['answers_per_s']:.1f}, {rows['kgqa serve --workers 2']['p50_ms']:.0f} ms "
           f"({ratio:.2f}x), {args.clients} clients")


if __name__ == "__main__":
    main()
