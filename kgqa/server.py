"""The HTTP service (`kgqa serve`): `POST /ask`, `GET /health`, and a page at `/`, on aiohttp.

Why a batcher: one decode of 32 questions costs little more than one of a single question, so
requests that arrive within a few milliseconds of each other are answered by one decode on one
worker thread, while the event loop keeps accepting connections. Explanations go through the same
worker, so no second decode ever runs beside it.

Why the guards: the service is shared, so no request may harm another. A body that is not text
is refused before it reaches the shared decode; a decode that fails is retried question by
question so only the bad question fails; the worker loop survives anything a batch does and
`/health` says whether it runs; the queue is bounded (503 with Retry-After) and requests whose
client went away are dropped before decoding. On loopback, only `application/json` bodies and
loopback `Host` names are served, so a web page the user visits can neither post to the service
as a plain form nor reach it through DNS rebinding.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from kgqa.data import asked_question
from kgqa.errors import KgqaError
from kgqa.pipeline import KGQA
from kgqa.rank.candidate import answer_json

BATCHER = web.AppKey("batcher", object)
BATCHER_TASK = web.AppKey("batcher_task", asyncio.Task)
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
MAX_QUESTIONS = 256  # per request
MAX_REQUEST_CHARS = 16384  # characters of question text per request
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
log = logging.getLogger("kgqa.server")


class Busy(Exception):
    """The queue holds as many questions as the service takes; the client should retry later."""


@dataclass
class Job:
    question: str
    explain: bool
    future: asyncio.Future


@dataclass
class Batcher:
    """Collects questions into one `KGQA.answer`: those already waiting (up to `max_batch`), and,
    after a batch of several, those arriving within `wait_s` more — several clients whose answers
    just came back ask again within milliseconds of each other, so waiting a little joins them
    into one decode; after a batch of one, the next question is decoded at once (a lone client
    would only wait)."""

    qa: KGQA
    max_batch: int  # questions decoded together: the pipeline's batch size
    wait_s: float = 0.01
    max_pending: int = 1024  # questions waiting; more get 503
    decodes: int = 0  # batches decoded so far, for /health and the tests
    last_batch: int = 0  # questions in the batch decoded last
    index_switches: int = 0  # rebuilt indexes taken up since the start
    dropped: int = 0  # questions whose client went away before their decode
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="kgqa-decode"))

    async def ask(self, questions: list[str], explain: bool = False) -> list[dict | Exception]:
        """Each question's answer record, or the exception its decode raised."""
        if self.queue.qsize() + len(questions) > self.max_pending:
            raise Busy()
        loop = asyncio.get_running_loop()
        jobs = [Job(question, explain, loop.create_future()) for question in questions]
        for job in jobs:
            self.queue.put_nowait(job)
        try:
            return list(await asyncio.gather(*(job.future for job in jobs), return_exceptions=True))
        finally:
            for job in jobs:  # the client went away: the worker skips what is cancelled
                job.future.cancel()

    async def run(self) -> None:
        """The worker loop; nothing a batch does ends it (only cancellation at shutdown)."""
        while True:
            try:
                await self._one_batch()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one batch must not hang every later request
                log.exception("kgqa serve: a batch failed")

    async def _one_batch(self) -> None:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        deadline = loop.time() + (self.wait_s if self.last_batch > 1 else 0.0)
        while len(batch) < self.max_batch and loop.time() < deadline:
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
            except asyncio.TimeoutError:
                break
        self.last_batch = len(batch)
        live = [job for job in batch if not job.future.done()]
        self.dropped += len(batch) - len(live)
        if not live:
            return
        results = await loop.run_in_executor(self.worker, self._decode, [(j.question, j.explain) for j in live])
        self.decodes += 1
        for job, result in zip(live, results):
            if job.future.done():
                continue
            if isinstance(result, Exception):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _decode(self, asked: list[tuple[str, bool]]) -> list[dict | Exception]:
        """On the worker thread: one decode for the batch's plain questions (if it fails, one per
        question, so a question that breaks the decode fails alone); an explained question is
        decoded once, by `explain`, which gives its answer too."""
        if self.qa.follow_index():  # between batches: a batch is answered from one index, whole
            self.index_switches += 1
        plain = [question for question, explain in asked if not explain]
        try:
            found: list = self.qa.answer(plain) if plain else []
        except Exception:
            found = [self._alone(question) for question in plain]
        answers = iter(found)
        results: list[dict | Exception] = []
        for question, explain in asked:
            if not explain:
                candidates = next(answers)
                results.append(candidates if isinstance(candidates, Exception) else
                               {"question": question, **answer_json(candidates, self.qa.settings.min_confidence),
                                "candidates": [c.as_json() for c in candidates]})
                continue
            try:
                explanation = self.qa.explain(question)
            except Exception as error:
                log.exception("kgqa serve: cannot explain %r", question[:80])
                results.append(error)
                continue
            results.append({"question": question, **answer_json(explanation.top, self.qa.settings.min_confidence),
                            "candidates": [c.as_json() for c in explanation.top], "explanation": explanation.as_json()})
        return results

    def _alone(self, question: str) -> list | Exception:
        try:
            return self.qa.answer([question])[0]
        except Exception as error:
            log.exception("kgqa serve: cannot answer %r", question[:80])
            return error


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _questions(body: object) -> list[str] | str:
    """The questions of a request body, or why it is not one."""
    if not isinstance(body, dict):
        return 'expected a JSON object with "question" (a string) or "questions" (a list of strings)'
    asked = body.get("questions", [body["question"]] if "question" in body else None)
    if not isinstance(asked, list) or not asked or not all(isinstance(q, str) for q in asked):
        return '"question" must be a string, or "questions" a non-empty list of strings'
    if len(asked) > MAX_QUESTIONS:
        return f"at most {MAX_QUESTIONS} questions per request"
    if sum(len(q) for q in asked) > MAX_REQUEST_CHARS:
        return f"more than {MAX_REQUEST_CHARS} characters of questions in one request"
    try:
        return [asked_question(q) for q in asked]
    except ValueError as problem:
        return str(problem)


async def _body(request: web.Request) -> object | web.Response:
    """The parsed JSON body, or the error response that says why there is none."""
    if request.content_type != "application/json":
        return _error(415, "expected Content-Type: application/json")
    if (request.charset or "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8"):
        return _error(415, "expected a UTF-8 body")
    try:
        return json.loads((await request.read()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    except RecursionError:
        return _error(400, "the body's JSON is nested too deeply")


def _host_guard(allowed_hosts: frozenset[str] | None):
    @web.middleware
    async def guard(request: web.Request, handler) -> web.StreamResponse:
        """A loopback service answers only to loopback names: a page on evil.example whose name
        was rebound to 127.0.0.1 sends `Host: evil.example`."""
        if allowed_hosts is not None:
            try:
                host = (request.url.host or "").strip("[]").lower()
            except ValueError:
                host = ""
            if host not in allowed_hosts:
                return _error(403, "this service answers only to a loopback Host name")
        return await handler(request)
    return guard


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    """aiohttp's own 4xx (unknown path, wrong method, body too large) as JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(error.status, error.reason)


def make_app(qa: KGQA, wait_s: float = 0.01, max_pending: int = 1024,
             allowed_hosts: frozenset[str] | None = None) -> web.Application:
    """The service's app: questions decoded `qa.settings.batch_size` at a time; `allowed_hosts`
    (None: any) are the Host names it answers to."""
    app = web.Application(client_max_size=1 << 20, middlewares=[_json_errors, _host_guard(allowed_hosts)])
    started = time.time()

    async def start_batcher(app: web.Application) -> None:
        app[BATCHER] = Batcher(qa, qa.settings.batch_size, wait_s, max_pending)
        app[BATCHER_TASK] = asyncio.create_task(app[BATCHER].run())

    async def stop_batcher(app: web.Application) -> None:
        app[BATCHER_TASK].cancel()
        app[BATCHER].worker.shutdown(wait=False, cancel_futures=True)

    async def ask(request: web.Request) -> web.Response:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        asked = _questions(body)
        if isinstance(asked, str):
            return _error(400, asked)
        if not isinstance(body.get("explain", False), bool):
            return _error(400, '"explain" must be true or false')
        explain = body.get("explain", False) and len(asked) == 1
        try:
            answers = await request.app[BATCHER].ask(asked, explain)
        except Busy:
            return _error(503, "the service is busy; retry shortly", **{"Retry-After": "1"})
        failed = [a for a in answers if isinstance(a, Exception)]
        if failed:
            return _error(500, f"could not answer: {type(failed[0]).__name__}: {failed[0]}")
        return web.json_response(answers[0] if "question" in body and "questions" not in body else answers,
                                 dumps=lambda data: json.dumps(data, ensure_ascii=False))

    async def health(request: web.Request) -> web.Response:
        running = not request.app[BATCHER_TASK].done()
        batcher = request.app[BATCHER]
        return web.json_response({"status": "ok" if running else "the answering worker has stopped",
                                  "worker_running": running, "uptime_s": round(time.time() - started, 1),
                                  "decodes": batcher.decodes, "queued": batcher.queue.qsize(),
                                  "dropped": batcher.dropped, "kb_triples": qa.index.triples,
                                  "kb_version": qa.index.version, "index_switches": batcher.index_switches,
                                  "confidence": qa.reranking and qa.calibrator is not None,
                                  "min_confidence": qa.settings.min_confidence},
                                 status=200 if running else 503)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.on_startup.append(start_batcher)
    app.on_cleanup.append(stop_batcher)
    app.router.add_post("/ask", ask)
    app.router.add_get("/health", health)
    app.router.add_get("/", page)
    return app


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads, so a port in use fails in a second."""
    try:
        sock = socket.create_server((host.strip("[]"), port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        raise KgqaError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    return sock


def serve(qa: KGQA, sock: socket.socket) -> None:
    """Serve on a socket from `listen`; on loopback, only to loopback Host names."""
    host = sock.getsockname()[0]
    web.run_app(make_app(qa, allowed_hosts=LOOPBACK_NAMES if is_loopback(host) else None), sock=sock,
                print=None)
