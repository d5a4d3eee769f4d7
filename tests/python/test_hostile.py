"""Hostile clients, each as a bounded attack from the test while a probe
client checks that the server keeps answering and its memory stays
bounded: bodies that pause, slow readers of large responses, running out of
descriptors, a HUP storm, slowloris and idle floods."""

import contextlib
import os
import signal
import socket
import threading
import time

import pytest
from helpers import rss_kib, wait_for

WSGI = "hostile_app:wsgi"
ASGI = "hostile_app:asgi"


def app_for(kind):
    return ASGI if kind == "asgi" else WSGI


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_answer(sock):
    """Everything until the server closes (a test's own deadline bounds it)."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def probe(s, timeout=5):
    """A fresh client's request: (status, body)."""
    status, _, body = s.request("POST", "/echo", body=b"probe", timeout=timeout)
    return status, body


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_bodies_that_pause_are_served(server, kind):
    # Regression (asgi): a body arriving later than the first-request
    # deadline (5 s + keep-alive after accept) was cut with no answer, even
    # while the app waited in receive().
    s = server("-k", kind, "-w", "4" if kind == "sync" else "1", "--keep-alive", "1", app_for(kind))
    results = {}

    def client(name, chunks):
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
            for pause, data in chunks:
                time.sleep(pause)
                c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            results[name] = read_answer(c)

    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    clients = {
        "late body": [(0, head + b"Content-Length: 4\r\n\r\n"), (7, b"late")],
        "paused chunks": [
            (0, head + b"Transfer-Encoding: chunked\r\n\r\n"),
            (3, b"3\r\nabc\r\n"),
            (3, b"3\r\ndef\r\n"),
            (2, b"0\r\n\r\n"),
        ],
        "byte a second": [(0, head + b"Content-Length: 7\r\n\r\n")] + [(1, bytes([b])) for b in b"trickle"],
    }
    threads = [threading.Thread(target=client, args=item) for item in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    expected = {"late body": b"late", "paused chunks": b"abcdef", "byte a second": b"trickle"}
    for name, body in expected.items():
        answer = results.get(name, b"")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n" + body), (name, answer)


def test_slow_readers_do_not_pin_copies_of_a_response(server):
    # Regression (asgi): 200 clients that never read a 10 MB response cost
    # 7.3 MiB each, the unsent rest copied into each connection's buffer.
    # The app's bytes object is now lent to the output queue, and send()
    # waits: a shared response costs nothing per client.
    s = server("-k", "asgi", ASGI)
    (worker,) = s.wait_workers(1)
    assert probe(s) == (200, b"probe")
    before = rss_kib(worker)
    clients = []
    try:
        for _ in range(100):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(c)
        # Every request reached the app and its send() is waiting.
        time.sleep(2)
        grown_mib = (rss_kib(worker) - before) / 1024
        assert grown_mib < 100, "%.0f MiB for 100 slow readers" % grown_mib
        assert probe(s) == (200, b"probe")
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("kind", ["gthread", "asgi"])
def test_running_out_of_descriptors_pauses_accepting(server, kind):
    # Regression: with the descriptor limit reached, workers spun on
    # accept() and wrote about a million "accept failed" lines in 3 s.
    s = server("-k", kind, "--worker-connections", "1000", app_for(kind), launcher=("prlimit", "--nofile=64:64", "--"))
    (worker,) = s.wait_workers(1)
    assert probe(s) == (200, b"probe")
    flood = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(120)]
    try:
        time.sleep(0.5)
        start = cpu_seconds(worker)
        time.sleep(2)
        spent = cpu_seconds(worker) - start
        assert spent < 0.5, "%.2f s of CPU in 2 s while out of descriptors" % spent
        lines = s.log().count("accept failed")
        assert 1 <= lines <= 3, s.log()[-2000:]
        assert "Too many open files" in s.log()
    finally:
        for c in flood:
            c.close()
    # Descriptors free again: accepting resumes by itself.
    wait_for(lambda: probe(s) == (200, b"probe"), timeout=10, what="a request served after the flood")


def test_a_hup_storm_does_not_stack_worker_generations(server):
    # Regression: 200 HUPs in under a second grew a 2-worker pool to 135
    # workers; HUPs that come while a reload is in progress now make one.
    # Workers take 0.3 s to boot, and the HUPs are spread over a second
    # (HUPs sent back to back merge in the kernel).
    s = server("-w", "2", WSGI, env={"HOSTILE_BOOT_DELAY": "0.3"})
    s.wait_workers(2)
    most = 0
    for _ in range(200):
        s.signal(signal.SIGHUP)
        time.sleep(0.005)
        most = max(most, len(s.workers()))
    deadline = time.time() + 5
    while time.time() < deadline:
        most = max(most, len(s.workers()))
        time.sleep(0.02)
    assert most <= 8, most
    s.wait_workers(2, timeout=30)
    assert probe(s) == (200, b"probe")


@pytest.mark.parametrize(("resize", "size"), [(signal.SIGTTIN, 3), (signal.SIGTTOU, 1)])
def test_a_resize_after_a_deferred_hup_is_not_undone_by_it(server, resize, size):
    # Regression: a HUP deferred while a generation booted ran after a
    # TTIN, TTOU or WINCH that came later, and set the pool back to its
    # configured size (an upgrade's WINCH left the old master's workers
    # running). Gunicorn handles signals in order: the reload comes first.
    s = server("-w", "2", WSGI, env={"HOSTILE_BOOT_DELAY": "1"})
    first = s.wait_workers(2, timeout=30)
    wait_for(lambda: probe(s) == (200, b"probe"), timeout=30, what="the first generation")
    time.sleep(1.5)  # both of its workers booted: this HUP reloads at once
    s.signal(signal.SIGHUP)
    wait_for(lambda: len(s.workers()) > 2, what="the new generation")
    s.signal(signal.SIGHUP)
    wait_for(lambda: "Reload in progress" in s.log(), what="the HUP to be deferred")
    s.signal(resize)
    # Both generations booted, the old ones gone, and the pool stays so.
    s.wait_workers(size, timeout=30, exclude=first)
    time.sleep(3)
    assert len(s.workers()) == size, s.log()[-3000:]
    assert probe(s) == (200, b"probe")


@pytest.mark.parametrize("kind", ["gthread", "asgi"])
def test_slowloris_and_idle_floods_do_not_lock_out_new_clients(server, kind):
    # Connections that never complete a request head filled
    # --worker-connections and new clients timed out; now the one waiting
    # longest makes room, and a head has a total time limit.
    s = server("-k", kind, "--worker-connections", "50", "--request-head-timeout", "3", app_for(kind))
    idle = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(30)]
    trickling = []
    for _ in range(40):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(b"GET / HTTP/1.1\r\n")
        trickling.append(c)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for c in trickling:
                with contextlib.suppress(OSError):
                    c.sendall(b"X-A: b\r\n")
            stop.wait(0.5)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        for _ in range(5):
            assert probe(s, timeout=3) == (200, b"probe")
            time.sleep(0.2)
        # The head time limit closes trickling connections by itself.
        survivor = trickling[-1]
        survivor.settimeout(8)
        assert survivor.recv(1024) == b"", "a head that never ends is closed"
    finally:
        stop.set()
        t.join(5)
        for c in idle + trickling:
            c.close()
