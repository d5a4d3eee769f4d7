"""/healthz and /readyz on --metrics-bind: what Kubernetes probes and load
balancers ask the master. Ready means a booted worker and a master that is
not stopping; the probes are answered from the master's loop, so a flood of
them must neither block supervision nor go unanswered."""

import os
import signal
import socket
import threading
import time

import pytest
from helpers import metrics_args, read_all, wait_for, wait_metrics


def probe(port, path, method="GET", timeout=5):
    """(status, content-type, body) of one probe; None when refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    with s:
        s.sendall(("%s %s HTTP/1.1\r\nHost: probe\r\n\r\n" % (method, path)).encode())
        data = read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type"), body.decode()


def start(server, *args, app="ops_app:app", env=None, wait=True):
    margs, port = metrics_args()
    s = server(*margs, *args, app, env=env, wait=wait)
    if wait:
        wait_metrics(port)
    return s, port


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_ready_and_healthy_once_workers_boot(server, kind):
    app = "ops_app:asgi" if kind == "asgi" else "ops_app:app"
    _s, port = start(server, "-k", kind, "-w", "2", app=app)
    wait_for(lambda: probe(port, "/readyz")[0] == 200, what="ready")
    status, ctype, body = probe(port, "/readyz")
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    assert body in ("ready: 1 of 2 workers booted\n", "ready: 2 of 2 workers booted\n")
    assert probe(port, "/healthz")[:3] == (200, "text/plain; charset=utf-8", "ok\n")
    # HEAD answers the status without a body; other methods are refused
    assert probe(port, "/readyz", "HEAD")[0] == 200 and probe(port, "/readyz", "HEAD")[2] == ""
    assert probe(port, "/readyz", "POST")[0] == 405
    assert probe(port, "/readyz/extra")[0] == 404
    assert probe(port, "/healthz?verbose=1")[0] == 200


def test_not_ready_while_workers_boot(server):
    s, port = start(server, "-w", "1", app="slow_boot:app", env={"SLOW_BOOT": "3"}, wait=False)
    wait_for(lambda: probe(port, "/healthz") is not None, what="the endpoint")
    # the worker is forked and importing the app: alive, not ready
    assert len(s.workers()) == 1
    status, _, body = probe(port, "/readyz")
    assert (status, body) == (503, "not ready: no worker booted (0 of 1)\n")
    assert probe(port, "/healthz")[0] == 200
    wait_for(lambda: probe(port, "/readyz")[0] == 200, timeout=20, what="ready after the boot")


def test_not_ready_while_stopping(server):
    s, port = start(server, "-w", "1", "--graceful-timeout", "20")
    wait_for(lambda: probe(port, "/readyz")[0] == 200, what="ready")
    answer = {}
    slow = threading.Thread(target=lambda: answer.setdefault("r", s.request(path="/sleep?s=3", timeout=20)))
    slow.start()
    wait_for(lambda: wait_metrics(port)["ferrocorn_requests_in_flight"] == 1, what="the request in flight")
    s.signal(signal.SIGTERM)
    # the worker finishes its request; meanwhile the master says it stops
    _status, _, body = wait_for(lambda: (lambda p: p if p and p[0] == 503 else None)(probe(port, "/readyz")))
    assert body == "not ready: shutting down\n"
    assert probe(port, "/healthz")[0] == 200
    slow.join(20)
    assert answer["r"][0] == 200
    assert s.wait_exit() == 0
    assert probe(port, "/readyz") is None


def test_not_ready_without_workers_after_winch(server, tmp_path):
    """WINCH (under --daemon, or on the old master of an upgrade) leaves a
    master without workers: not ready, still healthy."""
    pidfile = tmp_path / "app.pid"
    margs, port = metrics_args()
    s = server(*margs, "-w", "1", "--daemon", "--pid", str(pidfile), "ops_app:app", wait=False)
    s.wait_exit()
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    try:
        wait_for(lambda: (probe(port, "/readyz") or [0])[0] == 200, what="ready")
        os.kill(pid, signal.SIGWINCH)
        _status, _, body = wait_for(lambda: (lambda p: p if p and p[0] == 503 else None)(probe(port, "/readyz")))
        assert body == "not ready: no worker booted (0 of 0)\n"
        assert probe(port, "/healthz")[0] == 200
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), timeout=30)


def test_a_probe_flood_neither_blocks_the_master_nor_goes_unanswered(server):
    """Clients hammering /readyz (and clients that send nothing) while the
    master has to replace a killed worker: the worker is replaced, every
    probe gets its answer, and a probe's answer stays quick."""
    s, port = start(server, "-w", "2")
    wait_for(lambda: probe(port, "/readyz")[0] == 200, what="ready")
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    stop = threading.Event()
    results = []

    def flood():
        while not stop.is_set():
            results.append(probe(port, "/readyz", timeout=15))

    threads = [threading.Thread(target=flood) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        victim = s.wait_workers(2)[0]
        os.kill(victim, signal.SIGKILL)
        s.wait_workers(2, exclude=[victim], timeout=15)
        assert s.request()[0] == 200
        started = time.monotonic()
        assert probe(port, "/healthz", timeout=10)[0] == 200
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for c in silent:
            c.close()
    assert len(results) > 50, len(results)
    # every probe was answered, ready or (while the killed worker was
    # being replaced, with one left) still ready
    assert all(r is not None and r[0] == 200 for r in results), [r for r in results if not r or r[0] != 200][:3]


def test_a_huge_or_broken_probe_is_refused(server):
    _s, port = start(server)
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /readyz HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n")
    assert conn.recv(100).startswith(b"HTTP/1.1 431 ")
    conn.close()
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /readyz\r\n\r\n")
    assert conn.recv(100).startswith(b"HTTP/1.1 400 ")
    conn.close()
    assert probe(port, "/readyz")[0] == 200
