"""The door: admission of requests before Flask sees them.

The operations that wait for the engine (those the OpenAPI document says may answer 429) are counted from the
moment a handler thread takes them (gunicorn.conf.py sizes the threads from the same bound, so an admitted request
never waits for one) until the last byte is sent or the stream is closed. Past `capacity` in flight the answer is
an immediate 429 with Retry-After, prepared once as bytes: refusing runs no Flask request and no JSON encoding,
because every Python cycle spent refusing is taken from the inference thread, which shares the interpreter's lock.

A connection that comes back before the Retry-After of its last refusal (a client that ignores it, retrying at once)
is held until that Retry-After has passed, then admitted if there is room or refused: such a client asks once per
Retry-After, as an honest one does, instead of spinning through refusals that take the CPU and the interpreter's
lock from generation. A held request sleeps in its handler thread (gunicorn.conf.py sizes the pool for `holding`
of them; past that, a refusal is immediate).

Everything else (/health, /ping, /metrics, the documents, the playground) is neither counted nor refused. A client
that left while its request waited for a thread (its socket shows the peer closed) costs nothing either.
"""
import json
import threading
import time
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
    `app`, at most `holding` refusals held back at once; `count(path, status)` hears of each request the door
    answers itself."""

    def __init__(self, app, capacity: int, gated: set, count, openai_prefix: str = "/v1", holding: int = 0):
        self.app = app
        self.gated = frozenset(gated)
        self.count = count
        self.gate = Gate(capacity)
        self.held = Gate(holding)
        self.refused = {}  # a connection's socket -> when it was last refused, oldest first
        self._refused_lock = threading.Lock()
        refusal = HTTPError(429, f"the server is at capacity ({capacity} requests in flight); retry later",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
        self.refusals = {True: prepared(refusal, openai_body), False: prepared(refusal, dream_body)}
        self.openai_prefix = openai_prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD"), path) not in self.gated:
            return self.app(environ, start_response)
        # The connection is its socket: (REMOTE_ADDR, REMOTE_PORT) is the same for every client of a unix socket.
        if not self._admit(environ.get("gunicorn.socket")):
            return self._answer(path, 429, self.refusals[is_under(path, self.openai_prefix)], start_response)
        if client_gone(environ):
            self.gate.leave()
            return self._answer(path, 499, GONE, start_response)
        try:
            return ClosingIterator(self.app(environ, start_response), self.gate.leave)
        except BaseException:
            self.gate.leave()
            raise

    def _admit(self, connection) -> bool:
        """Whether a request on `connection` (None: not known) gets in: at once if there is room; else, if the
        connection was refused less than Retry-After ago and a place to hold it is free, if there is room once that
        Retry-After is over."""
        if self.gate.enter():
            return True
        if connection is None:
            return False
        with self._refused_lock:
            last = self.refused.get(connection)
        wait_s = None if last is None else last + RETRY_AFTER_S - time.monotonic()
        if wait_s is not None and wait_s > 0 and self.held.enter():
            try:
                time.sleep(wait_s)  # gives up the interpreter's lock: holding costs generation nothing
            finally:
                self.held.leave()
            if self.gate.enter():
                return True
        self._remember_refusal(connection)
        return False

    def _remember_refusal(self, connection):
        now = time.monotonic()
        with self._refused_lock:
            self.refused.pop(connection, None)  # re-inserted last: the dict stays ordered by time
            self.refused[connection] = now
            while (oldest := next(iter(self.refused.items())))[1] < now - RETRY_AFTER_S:
                del self.refused[oldest[0]]  # refused longer ago than Retry-After: nothing to hold it for

    @property
    def in_flight(self) -> int:
        return self.gate.inside

    def _answer(self, path: str, status: int, answer: tuple, start_response):
        self.count(path, status)
        status_line, headers, body = answer
        start_response(status_line, headers)
        return body
