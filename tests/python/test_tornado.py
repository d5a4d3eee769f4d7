"""The tornado worker (-k tornado): Tornado's RequestHandler, flushed
streaming, @stream_request_body and WebSocketHandler served by the Rust
engine through Tornado's delegate interface; WSGI apps through
WSGIContainer, as Gunicorn's tornado worker serves them; the conformance
corpus with Gunicorn 27's tornado answers; operations under load."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import CONFORMANCE, parse_response, read_response, wait_for
from loadgen import LoadGen

pytest.importorskip("tornado")


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def dechunk(body):
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2 :]


def test_request_handler_and_keep_alive(server):
    s = server("-k", "tornado", "tornado_app:app")
    c = connect(s.port)
    pids = set()
    for _ in range(3):
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parse_response(read_response(c))
        assert (status, body) == (200, b"hello")
        assert headers["server"].startswith("TornadoServer/")
        pids.add(headers["x-worker-pid"])
    assert len(pids) == 1
    c.close()
    assert "Using worker: tornado" in s.log()


def test_the_request_as_the_handler_sees_it(server):
    s = server("-k", "tornado", "tornado_app:app")
    status, _, body = s.request(path="/request?a=1&b=2", headers={"X-Custom": "yes", "Host": "example.com"})
    seen = json.loads(body)
    assert status == 200
    assert seen == {
        "remote_ip": "127.0.0.1",
        "protocol": "http",
        "uri": "/request?a=1&b=2",
        "path": "/request",
        "query": "a=1&b=2",
        "host": "example.com",
        "version": "HTTP/1.1",
        "x_custom": "yes",
    }
    assert s.request(method="POST", path="/echo", body=b"x" * 100_000)[2] == b"x" * 100_000


def test_flushed_chunks_arrive_as_they_are_written(server):
    s = server("-k", "tornado", "tornado_app:app")
    c = connect(s.port)
    c.sendall(b"GET /stream?n=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    first = c.recv(65536)
    # the first chunk leaves on its flush, long before the 30th is written
    assert b"chunk 0" in first and b"chunk 29" not in first
    rest = first
    while b"0\r\n\r\n" not in rest[-7:]:
        rest += c.recv(65536)
    status, headers, body = parse_response(rest)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert dechunk(body) == b"".join(b"chunk %d\n" % i for i in range(30))
    c.close()


def test_stream_request_body_gets_the_body_in_chunks(server):
    s = server("-k", "tornado", "tornado_app:app")
    size = 2 * 1024 * 1024
    c = connect(s.port)
    c.sendall(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // 65536):
        c.sendall(os.urandom(65536))
    status, _, body = parse_response(read_response(c))
    got = json.loads(body)
    assert status == 200 and got["size"] == size and got["chunks"] > 1, got
    c.close()


def test_status_and_errors(server):
    s = server("-k", "tornado", "tornado_app:app")
    assert s.request(path="/status")[0] == 418
    status, _, body = s.request(path="/missing")
    assert status == 404 and b"404" in body
    # Tornado's limits: a body over 100 MiB is refused from its length
    c = connect(s.port)
    c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (101 << 20))
    c.sendall(b"x" * 65536)  # the engine reads a body's first 64 KiB before the app sees the request
    assert parse_response(read_response(c))[0] == 400
    c.close()


def test_websocket_handler(server):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    s = server("-k", "tornado", "tornado_app:app")
    with ws_connect("ws://127.0.0.1:%d/ws" % s.port) as ws:
        assert ws.recv() == "welcome"
        ws.send("hi")
        assert ws.recv() == "hi"
        ws.send(b"\x00\x01")
        assert ws.recv() == b"\x00\x01"
        for i in range(200):
            ws.send("m%d" % i)
        assert [ws.recv() for _ in range(200)] == ["m%d" % i for i in range(200)]
        ws.send("close")
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert (ws.close_code, ws.close_reason) == (4000, "asked")
    # a plain GET to the WebSocket handler is refused as Tornado refuses it
    assert s.request(path="/ws")[0] == 400


def test_a_wsgi_app_runs_through_wsgi_container(server):
    s = server("-k", "tornado", "basic:environ_app")
    status, _, body = s.request(method="POST", path="/p?q=1", body=b"data")
    env = json.loads(body)
    assert status == 200
    assert (env["PATH_INFO"], env["QUERY_STRING"], env["body"]) == ("/p", "q=1", "data")


def _compare(golden):
    cmd = [
        sys.executable,
        os.path.join(CONFORMANCE, "conformance.py"),
        "compare",
        "--cases",
        os.path.join(CONFORMANCE, "cases.json"),
        "--golden",
        os.path.join(CONFORMANCE, golden),
        "--server",
        sys.executable + " -m ferrocorn -k tornado -b 127.0.0.1:{port} {flags} echo_app:app",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.stdout.strip().splitlines()[-1].startswith("conformance:"), r.stdout + r.stderr
    wrong = {}
    for line in r.stdout.splitlines():
        if line.startswith("WRONG"):
            _, outcome, name = line.split()
            wrong[name] = outcome
    return wrong, r.stdout


def test_conformance_corpus_gunicorns_rules_then_tornados():
    """The engine applies Gunicorn 27's rules to every request; Tornado's
    request object then refuses what Tornado refuses (an HTTP/1.1 request
    without Host), as under `gunicorn -k tornado`. So: nothing Gunicorn's
    rules reject is accepted, and every request refused beyond them is one
    `gunicorn -k tornado` (expected-tornado.json) refuses too. Gunicorn's
    tornado worker parses with Tornado's HTTP/1 code, which accepts some
    requests Gunicorn refuses (a Content-Length list, an absolute-form
    target on a non-CONNECT method): ferrocorn refuses them."""
    against_gunicorn, out = _compare("expected-gthread.json")
    assert "accepted" not in against_gunicorn.values(), out
    against_tornado, out2 = _compare("expected-tornado.json")
    refused_beyond_gunicorn = {n for n, o in against_gunicorn.items() if o == "rejected"}
    assert refused_beyond_gunicorn, "Tornado's Host check applies"
    assert not refused_beyond_gunicorn & set(against_tornado), out + out2


def test_graceful_stop_lets_a_request_finish(server):
    s = server("-k", "tornado", "--graceful-timeout", "10", "tornado_app:app")
    c = connect(s.port)
    c.sendall(b"GET /stream?n=100 HTTP/1.1\r\nHost: x\r\n\r\n")  # about a second
    time.sleep(0.2)
    s.signal(signal.SIGTERM)
    got = b""
    while not got.endswith(b"0\r\n\r\n"):
        data = c.recv(65536)
        assert data, got[-200:]
        got += data
    assert dechunk(parse_response(got)[2]).endswith(b"chunk 99\n")
    assert s.wait_exit() == 0


def test_hup_and_ttin_ttou_under_load(server):
    s = server("-k", "tornado", "-w", "2", "--graceful-timeout", "10", "tornado_app:app")
    old = s.wait_workers(2)
    load = LoadGen(port=s.port, keepalive=3, fresh=3, idle=2, duration=30.0).start()
    load.wait_ok(100)
    s.signal(signal.SIGHUP)
    old = wait_for(
        lambda: (lambda w: w if len(w) == 2 and not set(w) & set(old) else None)(s.workers()),
        timeout=15,
        what="a new generation",
    )
    load.wait_ok(300)
    s.signal(signal.SIGTTIN)
    s.wait_workers(3)
    load.wait_ok(300)
    s.signal(signal.SIGTTOU)
    s.wait_workers(2)
    load.wait_ok(300)
    res = load.stop()
    assert res.ok > 0
    assert not res.failures, "%s\n%s\n%s" % (res.summary(), res.failures[:10], s.log()[-3000:])
    assert set(res.pids) & set(old)
