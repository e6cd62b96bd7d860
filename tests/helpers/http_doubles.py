"""Stand-ins for an LLM service at the receiving end of the skill: real sockets on 127.0.0.1."""
import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers.processes import free_port

# A valid Dream answer for one context: one inner list of hypotheses.
DREAM_ANSWER = [["Hello from the recorder."]]


class RecordingServer:
    """Records each POSTed JSON body and answers ``status`` with ``answer`` (JSON-encoded unless bytes)."""

    def __init__(self, answer=DREAM_ANSWER, status=200):
        self.bodies = []
        self.answer = answer
        self.status = status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                recorder.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                answer = recorder.answer
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(recorder.status)
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
