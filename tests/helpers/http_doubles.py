"""Stand-ins for an LLM service at the receiving end of the skill: real sockets on 127.0.0.1."""
import json
import socket
import threading
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers.processes import free_port

# A valid Dream answer for one context: one inner list of hypotheses.
DREAM_ANSWER = [["Hello from the recorder."]]


class RecordingServer:
    """Records each POSTed JSON body and answers ``status`` with ``answer`` (JSON-encoded unless bytes), or with
    what ``upstream`` (a URL) answers the same body: a recorder in front of a real LLM."""

    def __init__(self, answer=DREAM_ANSWER, status=200, upstream: str = None):
        self.bodies = []
        self.answer = answer
        self.status = status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.bodies.append(json.loads(body))
                status, answer = recorder.status, recorder.answer
                if upstream is not None:
                    with urllib.request.urlopen(urllib.request.Request(upstream, body), timeout=300) as response:
                        status, answer = response.status, response.read()
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/respond"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def silent_server():
    """URL of a port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/respond"


def closed_port_url() -> str:
    """URL of a port nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}/respond"
