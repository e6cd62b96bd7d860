"""The door: admission of requests before Flask sees them.

The operations that wait for the engine (those the OpenAPI document says may answer 429) are counted from the
moment a handler thread takes them (gunicorn.conf.py sizes the threads from the same bound, so an admitted request
never waits for one) until the last byte is sent or the stream is closed. Past `capacity` in flight the answer is
an immediate 429 with Retry-After, prepared once as bytes: refusing runs no Flask request and no JSON encoding,
because every Python cycle spent refusing is taken from the inference thread, which shares the interpreter's lock.

Everything else (/health, /ping, /metrics, the documents, the playground) is neither counted nor refused. A client
that left while its request waited for a thread (its socket shows the peer closed) costs nothing either.
"""
import json
from http import HTTPStatus

from werkzeug.wsgi import ClosingIterator

from common.admission import Gate
from common.http import HTTPError, dream_body, is_under, openai_body

from .disconnects import client_gone

RETRY_AFTER_S = 1
GONE = ("499 Client Closed Request", [("Content-Length", "0")], [b""])  # nginx's status; nobody reads it


def refusable(document: dict) -> set:
    """(method, path) of each operation `document` (OpenAPI) says may answer 429."""
    return {(method.upper(), path) for path, operations in document["paths"].items()
            for method, operation in operations.items() if "429" in operation["responses"]}


def prepared(error: HTTPError, shape) -> tuple:
    """(status line, headers, body) of `error` in `shape` (common/http.py's), as WSGI takes them."""
    body = json.dumps(shape(error), ensure_ascii=False).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *error.headers.items()]
    return f"{error.status} {HTTPStatus(error.status).phrase}", headers, [body]


class Door:
    """WSGI middleware: at most `capacity` requests of the `gated` (method, path) operations in flight through
    `app`; `count(path, status)` hears of each request the door answers itself."""

    def __init__(self, app, capacity: int, gated: set, count, openai_prefix: str = "/v1"):
        self.app = app
        self.gated = frozenset(gated)
        self.count = count
        self.gate = Gate(capacity)
        refusal = HTTPError(429, f"the server is at capacity ({capacity} requests in flight); retry later",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
        self.refusals = {True: prepared(refusal, openai_body), False: prepared(refusal, dream_body)}
        self.openai_prefix = openai_prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD"), path) not in self.gated:
            return self.app(environ, start_response)
        if not self.gate.enter():
            return self._answer(path, 429, self.refusals[is_under(path, self.openai_prefix)], start_response)
        if client_gone(environ):
            self.gate.leave()
            return self._answer(path, 499, GONE, start_response)
        try:
            return ClosingIterator(self.app(environ, start_response), self.gate.leave)
        except BaseException:
            self.gate.leave()
            raise

    @property
    def in_flight(self) -> int:
        return self.gate.inside

    def _answer(self, path: str, status: int, answer: tuple, start_response):
        self.count(path, status)
        status_line, headers, body = answer
        start_response(status_line, headers)
        return body
