"""The service on Ray Serve (`pip install 'kgqa[ray]'`): replicas on as many nodes as the Ray
cluster has, Serve's routing, autoscaling, health checks and rolling reconfiguration, and the same
HTTP contract as `kgqa serve` (`kgqa.serve.contract`: `POST /ask` one question or a list,
`GET /health`, the API key, the same 4xx).

    serve run deploy/ray-serve.yaml              # or: kgqa serve --engine ray --replicas N

Each replica opens the pipeline `kgqa serve` opens (one `Source`) and answers the questions of
the requests Serve batches together (`@serve.batch`), with the batches formed while the decode
before ran, in one decode (`Decodes`), on a thread, so it keeps taking requests meanwhile. Every answer and `/health` say which replica answered and from which
KB version.

One KB version everywhere: the deployment's `user_config` names the index version every replica
is to answer from (`{"kb_version": V}`, the version `kgqa update` printed; none: whatever the index
holds). Given a published index (`published_index`: a directory every node can read, where `kgqa
update` runs), each node answers from its own copy at `index_dir`, brought to the published
version segment by segment (`kb.mirror`: the files it lacks copied and checked, the copy opened,
then its manifest switched; a damaged copy leaves the version before) when a replica starts and
when it is reconfigured. A replica follows its index directory between batches, as `kgqa serve`
does, so a request is answered wholly from one version. A replica whose index is not the
configured version a grace period after it was configured fails Serve's health check (Serve
replaces it), so replicas never disagree silently; nor does one whose decode of a canary question
fails.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import asdict
from typing import Callable

import ray
from ray import serve
from ray.serve import metrics
from starlette.requests import Request
from starlette.responses import Response

from kgqa.settings import DecodeSettings
from kgqa.errors import KgqaError
from kgqa.kb.mirror import mirror
from kgqa.model.tokenizer import load_tokenizer
from kgqa.serve.contract import BadRequest, answer_json, asked, body_json, error_body, key_refusal, reply_body
from kgqa.serve.workers import Answered, ThreadWorker, Worker, WorkerState
from kgqa.source import Source

VERSION_GRACE_S = 30.0  # how long a replica may answer from another version than configured
CANARY = "北京的人口有多少？"  # asked by each health check: its decode must still run


MAX_ONGOING_REQUESTS = 64  # a replica's requests at once (Serve's router sends it no more)


def _split(flat: list, parts: list[list]) -> list[list]:
    """`flat` cut back into pieces as long as each of `parts`, in order."""
    cuts = list(itertools.accumulate((len(part) for part in parts), initial=0))
    return [flat[start:stop] for start, stop in zip(cuts, cuts[1:])]


class Decodes:
    """A replica's decodes, one at a time: the batches handed in while one decodes wait, and are
    decoded together, as one, when it ends. Serve's batching hands each batch on as soon as it is
    formed (its next batch is formed meanwhile, from what comes in its wait), so under load it
    forms batches of about one request while a decode runs; this takes the place of its limit of
    one batch at a time, so that a decode holds every question that came during the one before
    (as `kgqa serve`'s scheduler hands a free worker its whole queue)."""

    def __init__(self, worker: Worker, observe: Callable[[float], None]) -> None:
        self.worker, self.observe = worker, observe  # observe: each decode's seconds
        self.waiting: list[tuple[list[tuple[str, bool]], asyncio.Future]] = []
        self.turn = asyncio.Lock()

    async def decode(self, asked: list[tuple[str, bool]]) -> tuple[list, WorkerState]:
        """`asked`'s results, in order, and the pipeline's state they were answered in."""
        mine = asyncio.get_running_loop().create_future()
        self.waiting.append((asked, mine))
        async with self.turn:
            if not mine.done():  # no decode before this one took it
                taken, self.waiting = self.waiting, []
                try:
                    decoded = await self.worker.decode([question for batch, _ in taken for question in batch])
                except asyncio.CancelledError:  # the others taken are not cancelled: they fail
                    for _, future in taken:
                        future.cancel() if future is mine else future.set_exception(RuntimeError("decode cancelled"))
                    raise
                except Exception as error:  # every batch taken hears it, not only this one
                    for _, future in taken:
                        future.set_exception(error)
                else:
                    self.observe(decoded.seconds or 0.0)
                    for (_, future), results in zip(taken, _split(decoded.results, [batch for batch, _ in taken])):
                        future.set_result((results, decoded.state))
        return await mine


@serve.deployment(ray_actor_options={"num_cpus": 1}, health_check_period_s=10, health_check_timeout_s=60,
                  max_ongoing_requests=MAX_ONGOING_REQUESTS)
class Replica:
    """One replica: a pipeline and the HTTP contract over it."""

    def __init__(self, source: Source, api_key: str | None = None, published: str | None = None) -> None:
        import torch

        # torch's threads as the CPUs Ray gave the replica (as `kgqa serve` shares the cores out
        # between its workers): by default each replica would start one per core of the node
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.source, self.published = source, published
        self.problem: str | None = None  # why the node's copy is not at the published version, if it is not
        self._mirror()
        # one decode at a time, on a thread of its own (`kgqa serve`'s worker): a health check's
        # canary never decodes beside a batch, and the event loop keeps taking requests meanwhile
        self.worker = ThreadWorker(source.open(), "replica")
        self.api_key = api_key
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.wanted: str | None = None  # the KB version configured (None: any)
        self.wanted_since = time.monotonic()
        self.started = time.time()
        self.requests = metrics.Counter("kgqa_requests", "HTTP requests, by path and status", tag_keys=("path", "status"))
        self.answers = metrics.Counter("kgqa_answers", "Questions answered (abstentions among them)")
        self.abstentions = metrics.Counter("kgqa_abstentions", "Questions given no answer (no KB key reachable, "
                                           "or a confidence below the minimum)")
        seconds = metrics.Histogram("kgqa_decode_seconds", "Seconds of each batch's decode",
                                    boundaries=[0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6])
        self.decodes = Decodes(self.worker, seconds.observe)

    async def reconfigure(self, config: dict) -> None:
        """`{"kb_version": V}`: the index version to answer from (switched to now where the index
        directory holds it; else the health check counts the grace period down)."""
        self.wanted = config.get("kb_version") or None
        self.wanted_since = time.monotonic()
        self._mirror()
        await self.worker.decode([])  # a batch follows the index first: this one only that

    def _mirror(self) -> None:
        """The node's copy brought to the published index's version (where there is one); a copy
        that fails is said in /health and leaves the version before."""
        if self.published is None:
            return
        try:
            mirror(self.published, self.source.index_dir, load_tokenizer(os.path.join(self.source.checkpoint, "tokenizer")))
            self.problem = None
        except KgqaError as error:
            self.problem = str(error)

    async def check_health(self) -> None:
        """Serve replaces a replica whose check raises: one answering from another KB version than
        configured past the grace period, or one whose decode of a canary question fails."""
        decoded = await self.worker.decode([(CANARY, False)])
        version = decoded.state.kb_version
        if self.wanted and version != self.wanted and time.monotonic() - self.wanted_since > VERSION_GRACE_S:
            raise RuntimeError(f"replica {self.replica} answers from KB version {version}, not the configured "
                               f"{self.wanted}")
        if not isinstance(decoded.results[0], Answered):
            raise RuntimeError(f"replica {self.replica} cannot answer: {decoded.results[0].message}")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, max_concurrent_batches=MAX_ONGOING_REQUESTS)
    async def _decode(self, requests: list[list[tuple[str, bool]]]) -> list[tuple[list, WorkerState]]:
        """The questions of the requests Serve batched, decoded by the replica's worker with the
        other batches waiting for it (`Decodes`); each request's results, and the pipeline's state
        they were answered in."""
        results, state = await self.decodes.decode([question for request in requests for question in request])
        return [(part, state) for part in _split(results, requests)]

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        method = {"/ask": "POST", "/health": "GET"}.get(path)
        refusal = key_refusal(path, request.headers.get("authorization", ""), self.api_key)
        if refusal is not None:
            response = _error(refusal)
        elif method is None:
            response = _error(BadRequest(404, "Not Found"))
        elif request.method != method:
            response = _error(BadRequest(405, "Method Not Allowed"))
        else:
            response = await self._ask(request) if path == "/ask" else self._health()
        self.requests.inc(tags={"path": path if method else "other", "status": str(response.status_code)})
        return response

    async def _ask(self, request: Request) -> Response:
        try:
            wanted = asked(body_json(request.headers.get("content-type", ""), await request.body()))
        except BadRequest as refusal:
            return _error(refusal)
        results, state = await self._decode([(question, wanted.explain) for question in wanted.questions])
        failed = [r for r in results if not isinstance(r, Answered)]
        if failed:
            return _error(BadRequest(500, f"could not answer: {failed[0].message}"))
        records = [answer_json(question, r.top, r.explanation, state.min_confidence) | self._served(state)
                   for question, r in zip(wanted.questions, results)]
        refused = sum(not r["answer"] for r in records)
        for counter, count in ((self.answers, len(records)), (self.abstentions, refused)):
            if count:  # a Ray counter takes no 0
                counter.inc(count)
        return Response(reply_body(records, wanted), media_type="application/json; charset=utf-8")

    def _served(self, state: WorkerState) -> dict:
        return {"replica": self.replica, "kb_version": state.kb_version}

    def _health(self) -> Response:
        state = self.worker.state  # as of its last batch (a health check decodes one every 10 s)
        current = not self.wanted or state.kb_version == self.wanted
        status = "ok" if current else f"answering from another KB version than the configured {self.wanted}"
        body = {"status": status + (f" ({self.problem})" if self.problem else ""),
                "engine": "ray", "uptime_s": round(time.time() - self.started, 1),
                "configured_kb_version": self.wanted, "pid": os.getpid(), **asdict(state), **self._served(state)}
        return Response(json.dumps(body, ensure_ascii=False), status_code=200 if current else 503,
                        media_type="application/json; charset=utf-8")


def _error(refusal: BadRequest) -> Response:
    return Response(error_body(refusal.message), status_code=refusal.status, headers=refusal.headers,
                    media_type="application/json")


def deployment(source: Source, replicas: int, api_key: str | None = None, kb_version: str | None = None,
               published: str | None = None) -> serve.Application:
    """`replicas` replicas answering from `source`, with `api_key` (None: none), each to answer
    from `kb_version` (None: whatever its index holds); given `published` (an index directory),
    `source.index_dir` is each node's copy of it."""
    if published is not None and source.index_dir is None:
        raise KgqaError("a published index needs index_dir: where each node keeps its copy")
    return Replica.options(num_replicas=replicas, user_config={"kb_version": kb_version}).bind(source, api_key,
                                                                                              published)


def app(args: dict) -> serve.Application:
    """The application `serve run` builds from a config file's `args` (`deploy/ray-serve.yaml`):
    `checkpoint`, `kb`, and optionally `index_dir`, `published_index` (then `index_dir` is each
    node's copy of it), `device` (cpu), `settings` (DecodeSettings' fields by name),
    `skip_bad_lines`, `replicas` (1), `api_key` (else the environment's KGQA_API_KEY, as `kgqa
    serve` reads it; neither: none) and `kb_version`."""
    source = Source(args["checkpoint"], args["kb"], args.get("index_dir"), args.get("device", "cpu"),
                    DecodeSettings(**args.get("settings", {})), bool(args.get("skip_bad_lines", False)))
    return deployment(source, int(args.get("replicas", 1)), args.get("api_key", os.environ.get("KGQA_API_KEY")),
                      args.get("kb_version"), args.get("published_index"))


def run(source: Source, replicas: int, host: str, port: int, api_key: str | None) -> None:
    """`kgqa serve --engine ray`: join the Ray cluster `RAY_ADDRESS` names (none: start one on this
    machine), deploy `replicas` replicas behind Serve's proxy on `host`:`port`, and serve until
    interrupted (Ctrl-C, SIGINT: Serve and a Ray started here shut down; at SIGTERM Ray's own
    handler ends the process at once)."""
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment(source, replicas, api_key), name="kgqa", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
