"""The door: admission of requests before Flask sees them.

A request is counted from the moment a handler thread takes it (gunicorn.conf.py sizes the threads from the same
bound, so an admitted request never waits for one) until its last byte is sent or its stream is closed. Past
`capacity` requests in flight the answer is an immediate 429 with Retry-After, prepared once as bytes: a flood of
clients that ignore Retry-After pays for no Flask request, no JSON encoding, no lock held while answering, since
every Python cycle spent refusing is taken from the inference thread, which shares the interpreter's lock.

Probes and scrapes (OPEN_PATHS) never count and are never refused: they hold no engine work. A client that left
while its request waited for a thread (its socket shows the peer closed) costs nothing either.
"""
import json
from http import HTTPStatus

from werkzeug.wsgi import ClosingIterator

from common.admission import Gate
from common.http import HTTPError, dream_body, is_under, openai_body

from .disconnects import client_gone

OPEN_PATHS = frozenset({"/health", "/ping", "/metrics", "/openapi.json"})
RETRY_AFTER_S = 1
GONE = ("499 Client Closed Request", [("Content-Length", "0")], [b""])  # nginx's status; nobody reads it


def prepared(error: HTTPError, shape) -> tuple:
    """(status line, headers, body) of `error` in `shape` (common/http.py's), as WSGI takes them."""
    body = json.dumps(shape(error), ensure_ascii=False).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *error.headers.items()]
    return f"{error.status} {HTTPStatus(error.status).phrase}", headers, [body]


class Door:
    """WSGI middleware: at most `capacity` requests in flight through `app`; `count(path, status)` hears of each
    request the door answers itself (paths not in `paths`, the app's routes, are counted as `unmatched`)."""

    def __init__(self, app, capacity: int, paths, count, openai_prefix: str = "/v1", unmatched: str = "unmatched"):
        self.app = app
        self.paths = frozenset(paths)
        self.count = count
        self.openai_prefix = openai_prefix
        self.unmatched = unmatched
        self.gate = Gate(capacity)
        refusal = HTTPError(429, f"the server is at capacity ({capacity} requests in flight); retry later",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
        self.refusals = {True: prepared(refusal, openai_body), False: prepared(refusal, dream_body)}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in OPEN_PATHS:
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
        self.count(path if path in self.paths else self.unmatched, status)
        status_line, headers, body = answer
        start_response(status_line, headers)
        return body
