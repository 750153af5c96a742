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

import ipaddress
import logging
import os
import socket
import time

from aiohttp import web

from kgqa.errors import KgqaError
from kgqa.serve.contract import (BUSY, MAX_BODY_BYTES, Asked, BadRequest, answer_json, asked, body_json, error_body,
                                 key_refusal, reply_body)
from kgqa.serve.monitoring import Monitoring
from kgqa.serve.scheduler import Busy, Scheduler
from kgqa.serve.workers import Failure, Worker

SCHEDULER = web.AppKey("scheduler", Scheduler)
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
log = logging.getLogger("kgqa.serve")


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(body=error_body(message), status=status, headers=headers or None, content_type="application/json")


def _refused(refusal: BadRequest) -> web.Response:
    return _error(refusal.status, refusal.message, **refusal.headers)


async def _asked(request: web.Request) -> Asked:
    """The request's questions (`contract.asked`; BadRequest: why there are none)."""
    return asked(body_json(request.headers.get("Content-Type", ""), await request.read()))


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


def _key_guard(api_key: str | None):
    @web.middleware
    async def guard(request: web.Request, handler) -> web.StreamResponse:
        """With a key, `/ask` and `/metrics` answer only a request that carries it; nothing of
        the request is read first."""
        refusal = key_refusal(request.path, request.headers.get("Authorization", ""), api_key)
        return _refused(refusal) if refusal is not None else await handler(request)
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
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[
        _counted(monitoring), _json_errors, _host_guard(allowed_hosts), _key_guard(api_key)])
    started = time.time() if started is None else started
    state = workers[0].state

    async def start_scheduler(app: web.Application) -> None:
        app[SCHEDULER] = Scheduler(workers, state.batch_size, wait_s, max_pending, monitoring)
        app[SCHEDULER].start()

    async def stop_scheduler(app: web.Application) -> None:
        app[SCHEDULER].stop()

    async def ask(request: web.Request) -> web.Response:
        try:
            request_asked = await _asked(request)
        except BadRequest as refusal:
            return _refused(refusal)
        client = (request.headers.get(client_header) if client_header else None) or request.remote or ""
        try:
            answers = await request.app[SCHEDULER].ask(request_asked.questions, request_asked.explain, client)
        except Busy:
            return _error(503, BUSY, **{"Retry-After": "1"})
        failed = [a for a in answers if isinstance(a, Failure)]
        if failed:
            return _error(500, f"could not answer: {failed[0].message}")
        records = [answer_json(question, answered.top, answered.explanation, workers[0].state.min_confidence)
                   for question, answered in zip(request_asked.questions, answers)]
        return web.Response(body=reply_body(records, request_asked), content_type="application/json", charset="utf-8")

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
