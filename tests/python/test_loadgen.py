"""The load generator sees every kind of failure: a tiny misbehaving server
answers each connection in one bad way, and the generator must name it."""

import functools
import socket
import struct
import threading
import time

import pytest
from helpers import free_port
from loadgen import LoadGen

GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Worker-Pid: 7\r\n\r\nok\n"


def read_request(conn):
    """The request head (and whatever came with it), or None if the client
    hung up before its blank line."""
    buf = b""
    for chunk in iter(functools.partial(conn.recv, 4096), b""):
        buf += chunk
        if b"\r\n\r\n" in buf:
            return buf
    return None


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


BEHAVIOURS = {
    "reset": lambda c: reset(c),
    "closed": lambda c: c.close(),
    "truncated": lambda c: (c.sendall(GOOD[:30]), c.close()),
    "malformed": lambda c: (c.sendall(b"SPAM\r\n\r\n"), c.close()),
    "status": lambda c: (c.sendall(GOOD.replace(b"200 OK", b"503 Busy")), c.close()),
    "timeout": lambda c: None,  # never answers
    # answered in full, then reset once the client has had time to read it
    "reset_after_response": lambda c: (
        c.sendall(GOOD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")),
        time.sleep(0.1),
        reset(c),
    ),
}


class FakeServer:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if read_request(conn) is None:
                conn.close()
                continue
            self.held.append(conn)
            self.behaviour(conn)

    def close(self):
        self.sock.close()
        for c in self.held:
            try:
                c.close()
            except OSError:
                pass


@pytest.mark.parametrize("kind", sorted(BEHAVIOURS))
def test_each_failure_is_seen(kind):
    srv = FakeServer(BEHAVIOURS[kind])
    try:
        # fresh connections read to the close, so they see a late reset
        load = LoadGen(port=srv.port, keepalive=0, fresh=1, max_requests=2, timeout=0.5).start()
        res = load.wait()
    finally:
        srv.close()
    assert res.ok == 0
    assert [f.kind for f in res.failures] == [kind, kind], res.failures


def test_refused():
    res = LoadGen(port=free_port(), keepalive=1, fresh=1, max_requests=4).start().wait()
    assert res.ok == 0 and {f.kind for f in res.failures} == {"refused"} and len(res.failures) == 4


def test_keepalive_reuse_and_server_close():
    """A kept-alive connection carries many requests; a server that closes
    it after answering with `Connection: close` costs no failure."""
    accepted = []

    def behaviour(conn):
        accepted.append(conn)
        conn.sendall(GOOD)
        for i in range(3):
            if read_request(conn) is None:
                return
            last = i == 2
            conn.sendall(GOOD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") if last else GOOD)
        conn.close()

    srv = FakeServer(behaviour)
    try:
        res = LoadGen(port=srv.port, keepalive=1, fresh=0, max_requests=8).start().wait()
    finally:
        srv.close()
    assert res.ok == 8 and not res.failures
    assert len(accepted) == 2 and res.pids == {7: 8}
