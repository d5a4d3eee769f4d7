#!/usr/bin/env python3
"""WebSocket echo load: C connections, each sending a 32-byte text message
and waiting for its echo, for D seconds; prints messages per second. The
same client (raw sockets, pre-masked frames, one process) is used against
every server, so the numbers compare servers, not clients.

    python3 bench/wsload.py --port 8000 --path / --connections 64 --duration 10
"""

import argparse
import base64
import os
import selectors
import socket
import time

PAYLOAD = b"x" * 32


def frame(payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def handshake(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("handshake refused")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise SystemExit("handshake refused: %r" % buf[:100])
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s, buf.split(b"\r\n\r\n", 1)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10)
    a = ap.parse_args()
    out = frame(PAYLOAD)
    reply = 2 + len(PAYLOAD)
    sel = selectors.DefaultSelector()
    pending = {}
    for _ in range(a.connections):
        s, rest = handshake(a.port, a.path)
        pending[s] = len(rest)
        sel.register(s, selectors.EVENT_READ)
        s.send(out)
    count = 0
    deadline = time.perf_counter() + a.duration
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit("server closed a connection")
            got = pending[s] + len(data)
            done, pending[s] = divmod(got, reply)
            count += done
            for _ in range(done):
                s.send(out)
    elapsed = time.perf_counter() - started
    print("messages/sec: %.0f" % (count / elapsed))


if __name__ == "__main__":
    main()
