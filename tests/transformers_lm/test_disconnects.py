"""client_gone(environ) on real sockets: a peer that closes or resets is gone, one that is idle or has sent
more data is not, and the check never consumes what it peeks at."""
import socket
import struct
import time

import pytest

from services.transformers_lm.api.disconnects import client_gone


@pytest.fixture
def tcp_pair():
    """(server side, client side) of a real TCP connection on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    yield server, client
    server.close()
    client.close()


def environ(sock):
    return {"gunicorn.socket": sock}


def test_an_idle_peer_is_there(tcp_pair):
    server, _ = tcp_pair
    assert client_gone(environ(server)) is False


def test_pending_data_means_there_and_stays_unread(tcp_pair):
    server, client = tcp_pair
    client.sendall(b"GET / HTTP/1.1\r\n")  # e.g. a pipelined next request
    server.settimeout(5)
    assert server.recv(1, socket.MSG_PEEK) == b"G"  # arrived
    assert client_gone(environ(server)) is False
    assert server.recv(100) == b"GET / HTTP/1.1\r\n"


def test_a_closed_peer_is_gone(tcp_pair):
    server, client = tcp_pair
    client.close()
    assert _eventually(lambda: client_gone(environ(server)))


def test_a_reset_peer_is_gone(tcp_pair):
    server, client = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    client.close()
    assert _eventually(lambda: client_gone(environ(server)))


def test_a_closed_unix_socket_pair_peer_is_gone():
    ours, theirs = socket.socketpair()
    with ours:
        assert client_gone(environ(ours)) is False
        theirs.close()
        assert client_gone(environ(ours)) is True


def test_cannot_tell_means_not_gone(tcp_pair):
    server, _ = tcp_pair
    assert client_gone({}) is False  # not under gunicorn
    server.close()
    assert client_gone(environ(server)) is False  # our own socket is closed: no peer to ask about


def _eventually(check, attempts=200):
    """The FIN or RST crosses the loopback asynchronously: a few polls at most."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(0.01)
    return False
