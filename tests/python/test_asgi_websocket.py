"""WebSockets through the asgi worker (RFC 6455), driven by the `websockets`
client library: echo, subprotocols, server and client close codes, refusals,
pings, fragmentation, the message size limit, the stop (1001) and a
thousand connections on one worker."""

import asyncio
import os
import signal
import socket
import time

import pytest
from helpers import wait_for

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

APP = "asgi_app:app"


def start(server, *args, **kw):
    return server("-k", "asgi", *args, APP, **kw)


def run(coro):
    return asyncio.run(coro)


def url(s, path="/ws/echo"):
    return "ws://127.0.0.1:%d%s" % (s.port, path)


def test_echo_text_and_binary(server, tmp_path):
    log = tmp_path / "state.log"
    s = start(server, env={"ASGI_STATE_LOG": str(log)})

    async def go():
        async with connect(url(s), subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-ws"] == "yes"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            big = os.urandom(300_000)
            await ws.send(big)
            assert await ws.recv() == big
            # Fragmented message, reassembled by the server.
            await ws.send(["frag", "ment", "ed"])
            assert await ws.recv() == "fragmented"
            # Pings are answered by the server itself.
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            await ws.close(code=4321, reason="client done")

    run(go())
    wait_for(lambda: log.exists() and "ws disconnect 4321" in log.read_text(), what="the client's close code")


def test_server_close_code(server):
    s = start(server)

    async def go():
        async with connect(url(s, "/ws/close")) as ws:
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd.code == 4001 and e.value.rcvd.reason == "bye"

    run(go())


def test_refusals(server):
    s = start(server)

    async def refused(path):
        with pytest.raises(InvalidStatus) as e:
            async with connect(url(s, path)):
                pass
        return e.value.response

    assert run(refused("/ws/deny")).status_code == 403
    resp = run(refused("/ws/deny-http"))
    assert resp.status_code == 401 and resp.body == b"denied"
    assert run(refused("/ws/raise")).status_code == 500
    wait_for(lambda: "ws boom" in s.log(), what="the traceback")
    assert "Error in WebSocket ASGI application" in s.log()


def test_bad_handshakes_get_http_errors(server):
    s = start(server)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    out = sock.recv(4096)
    sock.close()
    assert out.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in out
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n"
    )
    out = sock.recv(4096)
    sock.close()
    assert out.startswith(b"HTTP/1.1 400")


def test_message_too_big_closes_with_1009(server, tmp_path):
    log = tmp_path / "state.log"
    s = start(server, "--websocket-max-message-size", "1000", env={"ASGI_STATE_LOG": str(log)})

    async def go():
        async with connect(url(s)) as ws:
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd.code == 1009

    run(go())
    wait_for(lambda: log.exists() and "ws disconnect 1009" in log.read_text(), what="the app's disconnect")


def test_stop_closes_websockets_with_1001(server, tmp_path):
    log = tmp_path / "state.log"
    s = start(server, env={"ASGI_STATE_LOG": str(log)})

    async def go():
        async with connect(url(s, "/ws/hold")) as ws:
            s.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 10)
            return e.value.rcvd.code

    t = time.time()
    assert run(go()) == 1001
    assert s.wait_exit() == 0
    assert time.time() - t < 10
    assert "hold got websocket.disconnect 1001" in log.read_text()


def test_a_thousand_websockets_on_one_worker(server):
    s = start(server, "--worker-connections", "2000")
    n = 1000

    async def one(i, opened):
        async with connect(url(s), open_timeout=30, ping_interval=None) as ws:
            opened.append(ws)
            while len(opened) < n:  # noqa: ASYNC110 (the other clients connect)
                await asyncio.sleep(0.05)
            await ws.send("m%d" % i)
            return await asyncio.wait_for(ws.recv(), 30)

    async def go():
        opened = []
        return await asyncio.gather(*(one(i, opened) for i in range(n)))

    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * n), hard))
    answers = run(go())
    assert answers == ["m%d" % i for i in range(n)]
    assert len(s.workers()) == 1


def _client_frame(opcode, payload, fin=True):
    """A masked client frame (payload under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


def _open_raw_websocket(s):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
    sock.sendall(
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, head.split(b"\r\n\r\n", 1)[1]


def _read_frames(sock, pending, want):
    """Server frames (opcode, payload) until `want` of them came."""
    frames = []
    while len(frames) < want:
        if len(pending) >= 2 and len(pending) >= 2 + (pending[1] & 0x7F):
            n = pending[1] & 0x7F
            assert n < 126, "short frames only"
            frames.append((pending[0] & 0x0F, pending[2 : 2 + n]))
            pending = pending[2 + n :]
            continue
        chunk = sock.recv(65536)
        assert chunk, "the server closed after %d frames" % len(frames)
        pending += chunk
    return frames, pending


def test_bursts_larger_than_one_read_are_all_answered(server):
    # Regression: a buffer ending in part of a frame made the worker decode
    # the same bytes forever (100% CPU, nothing answered) instead of reading
    # on. 2,000 pings are ~28 KiB, more than one read; then one message in
    # 3,000 one-byte fragments.
    s = start(server)
    sock, pending = _open_raw_websocket(s)
    try:
        sock.sendall(b"".join(_client_frame(0x9, b"p%06d" % i) for i in range(2000)))
        frames, pending = _read_frames(sock, pending, 2000)
        assert [op for op, _ in frames] == [0xA] * 2000
        assert frames[0][1] == b"p000000" and frames[-1][1] == b"p001999"
        text = b"x" * 3000
        parts = [_client_frame(0x1, text[:1], fin=False)]
        parts += [_client_frame(0x0, text[i : i + 1], fin=False) for i in range(1, 2999)]
        parts.append(_client_frame(0x0, text[2999:], fin=True))
        sock.sendall(b"".join(parts))
        # The echo is 3,000 bytes: one frame with a 16-bit length.
        data = pending
        while len(data) < 4 + 3000:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data[:4] == b"\x81\x7e\x0b\xb8" and data[4:3004] == text
    finally:
        sock.close()
    # The worker is still serving.
    assert s.request("POST", "/echo", body=b"still here")[2] == b"still here"
