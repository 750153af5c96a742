"""The HTTP service (`kgqa serve`): `POST /ask`, `GET /health`, and a page at `/`, on aiohttp.

Why a batcher: one decode of 32 questions costs little more than one of a single question, so
requests that arrive within a few milliseconds of each other are answered by one decode on a
worker thread, while the event loop keeps accepting connections.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

from aiohttp import web

from kgqa.data import MAX_QUESTION_CHARS
from kgqa.pipeline import KGQA

BATCHER = web.AppKey("batcher", object)
BATCHER_TASK = web.AppKey("batcher_task", asyncio.Task)
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")


@dataclass
class Batcher:
    """Collects questions for up to `wait_s` (or `max_batch` of them) into one `KGQA.answer`."""

    kgqa: KGQA
    max_batch: int = 32
    wait_s: float = 0.01
    decodes: int = 0  # batches decoded so far, for /health and the tests
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def ask(self, questions: list[str]) -> list[dict]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in questions]
        for question, future in zip(questions, futures):
            self.queue.put_nowait((question, future))
        return list(await asyncio.gather(*futures))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            questions = [question for question, _ in batch]
            try:
                found = await loop.run_in_executor(None, self.kgqa.answer, questions)
            except Exception as error:  # a failed decode fails its requests, not the service
                for _, future in batch:
                    future.set_exception(error)
                continue
            self.decodes += 1
            for (question, future), candidates in zip(batch, found):
                if not future.done():
                    future.set_result({
                        "question": question,
                        "answer": candidates[0].answer() if candidates else "",
                        "candidates": [{"answer": c.answer(), "score": round(c.score, 4)} for c in candidates],
                    })


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _questions(body: object) -> list[str] | str:
    """The questions of a request body, or why it is not one."""
    if not isinstance(body, dict):
        return 'expected a JSON object with "question" (a string) or "questions" (a list of strings)'
    asked = body.get("questions", [body["question"]] if "question" in body else None)
    if not isinstance(asked, list) or not asked or not all(isinstance(q, str) for q in asked):
        return '"question" must be a string, or "questions" a non-empty list of strings'
    if len(asked) > 256:
        return "at most 256 questions per request"
    if any(not q.strip() for q in asked):
        return "empty question"
    if any(len(q) > MAX_QUESTION_CHARS for q in asked):
        return f"a question longer than {MAX_QUESTION_CHARS} characters"
    return [q.strip() for q in asked]


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    """aiohttp's own 4xx (unknown path, wrong method, body too large) as JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(error.status, error.reason)


def make_app(kgqa: KGQA, max_batch: int = 32, wait_s: float = 0.01) -> web.Application:
    app = web.Application(client_max_size=1 << 20, middlewares=[_json_errors])
    started = time.time()

    async def start_batcher(app: web.Application) -> None:
        app[BATCHER] = Batcher(kgqa, max_batch, wait_s)
        app[BATCHER_TASK] = asyncio.create_task(app[BATCHER].run())

    async def stop_batcher(app: web.Application) -> None:
        app[BATCHER_TASK].cancel()

    async def ask(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        asked = _questions(body)
        if isinstance(asked, str):
            return _error(400, asked)
        answers = await request.app[BATCHER].ask(asked)
        if body.get("explain") and len(asked) == 1:
            loop = asyncio.get_running_loop()
            answers[0]["explanation"] = await loop.run_in_executor(None, kgqa.explain, asked[0])
        return web.json_response(answers[0] if "question" in body and "questions" not in body else answers,
                                 dumps=lambda data: json.dumps(data, ensure_ascii=False))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_s": round(time.time() - started, 1),
                                  "decodes": request.app[BATCHER].decodes,
                                  "kb_triples": kgqa.index.header["triples"]})

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app.on_startup.append(start_batcher)
    app.on_cleanup.append(stop_batcher)
    app.router.add_post("/ask", ask)
    app.router.add_get("/health", health)
    app.router.add_get("/", page)
    return app


def serve(kgqa: KGQA, host: str = "127.0.0.1", port: int = 8000) -> None:
    web.run_app(make_app(kgqa), host=host, port=port, print=None)
