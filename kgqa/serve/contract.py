"""The service's HTTP contract, one copy for every engine that serves it (`kgqa serve`'s aiohttp
app, `kgqa.serve.ray_app`'s Ray Serve deployment): what a request to `POST /ask` must be, which
requests the API key lets through, and what an answer holds. Plain functions of a request's parts
(content type, charset, bytes, headers), so neither web framework's request type reaches them.
"""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from email.message import Message

from kgqa.candidate import Candidate, answer_record
from kgqa.data import asked_question

MAX_QUESTIONS = 256  # per request
MAX_REQUEST_CHARS = 16384  # characters of question text per request
MAX_BODY_BYTES = 1 << 20
KEYED_PATHS = frozenset({"/ask", "/metrics"})
KEY_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kgqa"'}
BUSY = "the service is busy; retry shortly"


class BadRequest(Exception):
    """A request the service refuses: its HTTP status and the message its JSON error carries."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Asked:
    """A valid `/ask` request: its questions as kgqa answers them, whether the one question wants
    its explanation, and whether it asked one question (`"question"`: one record comes back) or
    a list (`"questions"`: a list comes back)."""

    questions: list[str]
    explain: bool
    single: bool


def body_json(content_type: str, raw: bytes) -> object:
    """The request's JSON body, by its `Content-Type` header as sent (BadRequest: 415 where it is
    not JSON in UTF-8, 400 where it does not parse)."""
    header = Message()
    header["Content-Type"] = content_type
    if header.get_content_type() != "application/json":
        raise BadRequest(415, "expected Content-Type: application/json")
    charset = header.get_param("charset", "utf-8")  # an RFC 2231 one comes as a tuple: not UTF-8 as said
    if not isinstance(charset, str) or charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise BadRequest(415, "expected a UTF-8 body")
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(413, "Request Entity Too Large")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "the body is not JSON") from None
    except RecursionError:
        raise BadRequest(400, "the body's JSON is nested too deeply") from None


def asked(body: object) -> Asked:
    """The questions a parsed body asks (BadRequest 400: why it asks none)."""
    if not isinstance(body, dict):
        raise BadRequest(400, 'expected a JSON object with "question" (a string) or "questions" (a list of strings)')
    questions = body.get("questions", [body["question"]] if "question" in body else None)
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) for q in questions):
        raise BadRequest(400, '"question" must be a string, or "questions" a non-empty list of strings')
    if len(questions) > MAX_QUESTIONS:
        raise BadRequest(400, f"at most {MAX_QUESTIONS} questions per request")
    if sum(len(q) for q in questions) > MAX_REQUEST_CHARS:
        raise BadRequest(400, f"more than {MAX_REQUEST_CHARS} characters of questions in one request")
    if not isinstance(body.get("explain", False), bool):
        raise BadRequest(400, '"explain" must be true or false')
    try:
        questions = [asked_question(q) for q in questions]
    except ValueError as problem:
        raise BadRequest(400, str(problem)) from None
    return Asked(questions, body.get("explain", False) and len(questions) == 1,
                 "question" in body and "questions" not in body)


def key_refusal(path: str, authorization: str, api_key: str | None) -> BadRequest | None:
    """With a key, the refusal (401) of a request to a keyed path that does not carry it
    (`Authorization: Bearer KEY`, compared in constant time); else None."""
    if api_key is None or path not in KEYED_PATHS:
        return None
    given = authorization.encode("utf-8", "surrogateescape")
    if hmac.compare_digest(given, f"Bearer {api_key}".encode()):
        return None
    return BadRequest(401, "this service needs its API key: Authorization: Bearer KEY", KEY_CHALLENGE)


def answer_json(question: str, top: list[Candidate], explanation: dict | None, min_confidence: float) -> dict:
    """A question's answer as `/ask` returns it: the answer string (null below the minimum
    confidence, "" where no KB key was reachable), its confidence, the top candidates, and the
    explanation where one was asked for."""
    return {**answer_record(question, top, min_confidence),
            **({"explanation": explanation} if explanation is not None else {})}


def reply_body(records: list[dict], request: Asked) -> bytes:
    """The `/ask` reply: one record for one `"question"`, else the list."""
    return json.dumps(records[0] if request.single else records, ensure_ascii=False).encode("utf-8")


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")
