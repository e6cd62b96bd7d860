"""Has the client of a request gone away? Lets a handler stop waiting for generations nobody will read.

Under gunicorn the WSGI environ holds the request's socket. Once the body has been read, a socket that
polls readable and peeks no data (b"") means the peer closed its end; a reset means the same. The peek
consumes nothing, so a pipelined next request stays for gunicorn. A client that only half-closes (shuts
down writing, still reading) looks gone too; HTTP clients don't do that while awaiting an answer.
"""
import select
import socket

PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


def client_gone(environ) -> bool:
    """True when the peer of `environ`'s gunicorn socket has closed or reset the connection; False when it
    is still there or when this cannot be told (no socket, TLS, a socket already closed here)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return False
    try:
        poller = select.poll()  # poll, not select: no FD_SETSIZE limit on busy workers
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, PEEK_FLAGS) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (OSError, ValueError):  # closed here, would block, or an SSL socket refusing flags
        return False
