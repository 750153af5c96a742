"""The HTTP service (`kgqa serve`): `POST /ask`, `GET /health`, `GET /metrics`, and a page at `/`,
on aiohttp, over a `Scheduler` and its workers (`kgqa.serve.scheduler`, `kgqa.serve.workers`).

Why the guards: the service is shared, so no request may harm another. A body that is not text
is refused before it reaches a shared decode; a question that breaks a decode fails alone; the
workers' loops survive anything a batch does and `/health` says whether they run; the queue is
bounded (503 with Retry-After) and questions whose client went away are dropped before decoding.
On loopback, only `application/json` bodies and loopback `Host` names are served, so a web page
the user visits can neither post to the service as a plain form nor reach it through DNS
rebinding. With an API key, `/ask` and `/metrics` answer only requests that carry it
(`Authorization: Bearer KEY`, compared in constant time); `/health` and the page stay open, for
load balancers and for the page to ask for the key. Stopped (SIGTERM, SIGINT), the service takes
no new connection, answers the requests in flight (for at most `drain_s`), then ends its workers.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import socket
import time

from aiohttp import web

from kgqa.candidate import answer_record
from kgqa.data import asked_question
from kgqa.errors import KgqaError
from kgqa.serve.monitoring import Monitoring
from kgqa.serve.scheduler import Busy, Scheduler
from kgqa.serve.workers import Answered, Failure, Worker

SCHEDULER = web.AppKey("scheduler", Scheduler)
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
MAX_QUESTIONS = 256  # per request
MAX_REQUEST_CHARS = 16384  # characters of question text per request
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
KEYED_PATHS = frozenset({"/ask", "/metrics"})
log = logging.getLogger("kgqa.serve")


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


def _record(question: str, answered: Answered, min_confidence: float) -> dict:
    """A question's answer as `/ask` returns it: the answer string (null below the minimum
    confidence, "" where no KB key was reachable), its confidence, the top candidates, and the
    explanation where one was asked for."""
    return {**answer_record(question, answered.top, min_confidence),
            **({"explanation": answered.explanation} if answered.explanation is not None else {})}


def _key_guard(api_key: str | None):
    expected = f"Bearer {api_key}".encode() if api_key else None

    @web.middleware
    async def guard(request: web.Request, handler) -> web.StreamResponse:
        """With a key, `/ask` and `/metrics` answer only a request that carries it; nothing of
        the request is read first."""
        if expected is not None and request.path in KEYED_PATHS:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                return _error(401, "this service needs its API key: Authorization: Bearer KEY",
                              **{"WWW-Authenticate": 'Bearer realm="kgqa"'})
        return await handler(request)
    return guard


def _counted(monitoring: Monitoring):
    @web.middleware
    async def count(request: web.Request, handler) -> web.StreamResponse:
        """Every request by route (unknown paths as one) and status."""
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else "other"
        try:
            response = await handler(request)
        except Exception:
            monitoring.observe_request(path, 500)
            raise
        monitoring.observe_request(path, response.status)
        return response
    return count


def make_app(workers: list[Worker], wait_s: float = 0.01, max_pending: int = 1024,
             allowed_hosts: frozenset[str] | None = None, api_key: str | None = None,
             client_header: str | None = None, started: float | None = None) -> web.Application:
    """The service's app over `workers` (started: a `ProcessWorker` is `start`ed before), questions
    decoded up to the pipeline's batch size at a time; `allowed_hosts` (None: any) are the Host
    names it answers to; `api_key` (None: none) the key `/ask` and `/metrics` need; a client is
    told apart by the header `client_header` where given (set by a trusted proxy), else by its
    address; `started` (epoch seconds; None: now) is when the service began, its workers' loading
    included, from which `/health` counts `uptime_s`. The workers end with the app."""
    monitoring = Monitoring()
    app = web.Application(client_max_size=1 << 20, middlewares=[
        _counted(monitoring), _json_errors, _host_guard(allowed_hosts), _key_guard(api_key)])
    started = time.time() if started is None else started
    state = workers[0].state

    async def start_scheduler(app: web.Application) -> None:
        app[SCHEDULER] = Scheduler(workers, state.batch_size, wait_s, max_pending, monitoring)
        app[SCHEDULER].start()

    async def stop_scheduler(app: web.Application) -> None:
        app[SCHEDULER].stop()

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
        client = (request.headers.get(client_header) if client_header else None) or request.remote or ""
        try:
            answers = await request.app[SCHEDULER].ask(asked, explain, client)
        except Busy:
            return _error(503, "the service is busy; retry shortly", **{"Retry-After": "1"})
        failed = [a for a in answers if isinstance(a, Failure)]
        if failed:
            return _error(500, f"could not answer: {failed[0].message}")
        records = [_record(question, answered, workers[0].state.min_confidence)
                   for question, answered in zip(asked, answers)]
        return web.json_response(records[0] if "question" in body and "questions" not in body else records,
                                 dumps=lambda data: json.dumps(data, ensure_ascii=False))

    async def health(request: web.Request) -> web.Response:
        scheduler = request.app[SCHEDULER]
        running = scheduler.running()
        first = workers[0].state
        return web.json_response({"status": "ok" if running else "an answering worker has stopped",
                                  "worker_running": running, "uptime_s": round(time.time() - started, 1),
                                  "decodes": scheduler.decodes, "queued": scheduler.pending(),
                                  "dropped": scheduler.dropped, "kb_triples": first.kb_triples,
                                  "kb_version": first.kb_version, "index_switches": scheduler.index_switches,
                                  "confidence": first.confidence, "min_confidence": first.min_confidence,
                                  "workers": [{"name": w.name, "lane": w.lane, "running": w.alive(), "pid": w.pid,
                                               "restarts": w.restarts, "kb_version": w.state.kb_version}
                                              for w in workers]},
                                 status=200 if running else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=monitoring.text(), headers={"Content-Type": monitoring.content_type})

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.on_startup.append(start_scheduler)
    app.on_cleanup.append(stop_scheduler)
    app.router.add_post("/ask", ask)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
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


def serve(workers: list[Worker], sock: socket.socket, api_key: str | None = None, client_header: str | None = None,
          drain_s: float = 30.0, started: float | None = None) -> None:
    """Serve on a socket from `listen` until SIGTERM or SIGINT, then drain (at most `drain_s`);
    on loopback, only to loopback Host names."""
    host = sock.getsockname()[0]
    web.run_app(make_app(workers, allowed_hosts=LOOPBACK_NAMES if is_loopback(host) else None, api_key=api_key,
                         client_header=client_header, started=started), sock=sock, print=None, shutdown_timeout=drain_s)
