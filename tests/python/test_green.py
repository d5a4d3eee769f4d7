"""The green worker types (-k gevent, -k eventlet): patching before the app,
cooperation between requests that wait on patched I/O, keep-alive,
pipelining, bodies, slow readers, the stop, max-requests, the heartbeat,
access logs, and operations under load."""

import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import parse_response, read_response, response_end, run_ferrocorn, wait_for
from loadgen import LoadGen

pytest.importorskip("gevent")


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def get(sock, path="/", extra=b""):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra))
    return parse_response(read_response(sock))


class _Slow(BaseHTTPRequestHandler):
    """An upstream that takes `wait` seconds per request."""

    wait = 1.0

    def do_GET(self):
        time.sleep(self.wait)
        body = b"upstream"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True
    # 100 clients connect at once: the default backlog of 5 would make
    # some of them wait for a SYN retry, which is not what is measured.
    request_queue_size = 256


@pytest.fixture
def upstream():
    srv = _Upstream(("127.0.0.1", 0), _Slow)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def concurrent_gets(port, paths, timeout=60):
    """GETs every path at once, each on its own connection; returns the
    (status, body) pairs and the time the slowest took."""
    results = [None] * len(paths)

    def one(i, path):
        try:
            c = connect(port)
            c.settimeout(timeout)
            status, _, body = get(c, path)
            results[i] = (status, body)
            c.close()
        except OSError as e:
            results[i] = (None, repr(e).encode())

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - started


def test_the_standard_library_is_patched_before_the_app(server):
    s = server("-k", "gevent", "green_app:app")
    status, _, body = s.request(path="/patched")
    info = json.loads(body)
    assert status == 200
    assert info["gevent_socket"] and info["gevent_time"], info
    assert info["multithread"] is True
    assert "Using worker: gevent" in s.log()


def test_gunicorns_class_paths_name_the_gevent_worker(server):
    for name in ("gunicorn.workers.ggevent.GeventWorker", "gevent_pywsgi"):
        s = server("-k", name, "green_app:app")
        assert s.request()[2] == b"hello"
        assert "Using worker: gevent" in s.log()
        s.stop()


def test_requests_waiting_on_a_slow_upstream_run_together(server, upstream):
    """100 requests on one worker, each calling an upstream that takes a
    second: cooperating, they finish in about one wait, not a hundred."""
    s = server("-k", "gevent", "-w", "1", "green_app:app")
    results, elapsed = concurrent_gets(s.port, ["/fetch?port=%d" % upstream] * 100)
    assert all(r == (200, b"upstream") for r in results), [r for r in results if r != (200, b"upstream")][:3]
    assert elapsed < 6, elapsed


def test_sleeps_run_together_up_to_worker_connections(server):
    s = server("-k", "gevent", "-w", "1", "--worker-connections", "50", "green_app:app")
    results, elapsed = concurrent_gets(s.port, ["/sleep?s=0.5"] * 50)
    assert all(r == (200, b"slept") for r in results)
    assert elapsed < 3, elapsed


def test_keep_alive_and_its_timeout(server):
    s = server("-k", "gevent", "--keep-alive", "1", "basic:environ_app")
    c = connect(s.port)
    ports = set()
    for _ in range(3):
        status, headers, body = get(c)
        assert status == 200 and headers["connection"] == "keep-alive"
        ports.add(json.loads(body)["REMOTE_PORT"])
    assert len(ports) == 1
    started = time.time()
    assert c.recv(100) == b""  # closed once idle for the keep-alive time
    assert 0.5 < time.time() - started < 3
    c.close()


def test_pipelined_requests_are_answered_in_order(server):
    s = server("-k", "gevent", "basic:environ_app")
    c = connect(s.port)
    c.sendall(b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
    paths = []
    buf = b""
    while len(paths) < 5:
        buf += c.recv(65536)
        while True:
            end = response_end(buf)
            if end is None:
                break
            paths.append(json.loads(parse_response(buf[:end])[2])["PATH_INFO"])
            buf = buf[end:]
    assert paths == ["/r0", "/r1", "/r2", "/r3", "/r4"]
    c.close()


def test_bodies_arriving_slowly_park_only_their_greenlet(server):
    s = server("-k", "gevent", "-w", "1", "green_app:app")
    body = os.urandom(300_000)
    c = connect(s.port)
    c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    c.sendall(body[:100_000])
    # the worker answers others while this body is incomplete
    assert s.request()[2] == b"hello"
    c.sendall(body[100_000:])
    status, _, got = parse_response(read_response(c))
    assert status == 200 and got == body
    # chunked
    c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert parse_response(read_response(c))[2] == b"hello"
    c.close()


def test_a_slow_reader_does_not_hold_up_the_worker(server):
    s = server("-k", "gevent", "-w", "1", "green_app:app")
    c = connect(s.port)
    # 32 MiB, more than the socket buffers hold: the greenlet parks
    c.sendall(b"GET /stream?n=512 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    assert s.request()[2] == b"hello"
    got = b""
    while not got.endswith(b"\r\n0\r\n\r\n"):
        data = c.recv(1 << 20)
        assert data, "the response ended early"
        got += data
    assert len(got) > 512 * 65536
    c.close()


def test_file_wrapper_sends_with_sendfile_and_parks_on_a_full_socket(server):
    s = server("-k", "gevent", "-w", "1", "green_app:app")
    c = connect(s.port)
    c.sendall(b"GET /file?mb=32 HTTP/1.1\r\nHost: x\r\n\r\n")  # not read yet
    time.sleep(0.3)
    assert s.request()[2] == b"hello"  # the worker is not stuck in sendfile
    got = b""
    while b"\r\n\r\n" not in got:
        got += c.recv(65536)
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"200 OK" in head and b"Content-Length: 33554432" in head
    while len(body) < 32 << 20:
        data = c.recv(1 << 20)
        assert data
        body += data
    assert body == b"f" * (32 << 20)
    c.close()


def test_graceful_stop_lets_requests_in_progress_finish(server):
    s = server("-k", "gevent", "--graceful-timeout", "10", "green_app:app")
    c = connect(s.port)
    c.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.signal(signal.SIGTERM)
    status, _, body = parse_response(read_response(c))
    assert status == 200 and body == b"slept"
    # As under Gunicorn, the response decided keep-alive when it started;
    # the stopping worker then closes the idle connection.
    c.settimeout(5)
    assert c.recv(100) == b""
    assert s.wait_exit() == 0


def test_graceful_timeout_ends_requests_that_run_on(server):
    s = server("-k", "gevent", "--graceful-timeout", "1", "green_app:app")
    c = connect(s.port)
    c.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    started = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    # the worker ends its requests at the deadline, or the master kills it
    # then, whichever comes first (as with Gunicorn)
    assert time.monotonic() - started < 8


def test_quit_stops_at_once(server):
    s = server("-k", "gevent", "green_app:app")
    c = connect(s.port)
    c.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    started = time.monotonic()
    s.signal(signal.SIGQUIT)
    s.wait_exit()
    assert time.monotonic() - started < 5


def test_max_requests_restarts_the_worker(server):
    s = server("-k", "gevent", "-w", "1", "--max-requests", "5", "green_app:app")
    first = s.wait_workers(1)
    pids = set()
    for _ in range(12):
        pids.add(json.loads(s.request(path="/patched")[2])["pid"])
    assert len(pids) >= 2
    assert "Autorestarting worker after current request." in s.log()
    assert s.wait_workers(1) != first


def test_an_idle_worker_keeps_beating(server):
    s = server("-k", "gevent", "-w", "1", "--timeout", "2", "green_app:app")
    first = s.wait_workers(1)
    time.sleep(4.5)
    assert s.workers() == first
    assert "WORKER TIMEOUT" not in s.log()


def test_a_blocked_hub_misses_its_beats(server, tmp_path):
    (tmp_path / "blocking.py").write_text(
        "import time\n"
        "def app(environ, start_response):\n"
        "    t = time.monotonic()\n"
        "    while time.monotonic() - t < 30:\n"
        "        pass  # CPU-bound: never yields to the hub\n"
        "    start_response('200 OK', [])\n"
        "    return [b'']\n"
    )
    s = server("-k", "gevent", "-w", "1", "--timeout", "2", "blocking:app")
    first = s.wait_workers(1)
    c = connect(s.port)
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: "WORKER TIMEOUT" in s.log(), timeout=15, what="the timeout")
    s.wait_workers(1, exclude=first)


def test_access_log_lines(server):
    s = server("-k", "gevent", "--access-logfile", "-", "green_app:app")
    s.request(path="/sleep?s=0")
    line = wait_for(lambda: [x for x in s.out().splitlines() if "/sleep" in x], what="an access line")[0]
    assert '"GET /sleep?s=0 HTTP/1.1" 200 5' in line, line


# Operations under load: every request of every generation succeeds.


def start_loaded(server, *extra):
    s = server("-k", "gevent", "-w", "2", "--graceful-timeout", "10", *extra, "ops_app:app", env={"OPS_SLEEP_MS": "1"})
    old = s.wait_workers(2)
    load = LoadGen(port=s.port, keepalive=3, fresh=3, idle=2, duration=20.0).start()
    load.wait_ok(100)
    return s, old, load


def assert_clean(res, s):
    assert res.ok > 0
    assert not res.failures, "%s\n%s\n%s" % (res.summary(), res.failures[:10], s.log()[-3000:])


def test_hup_under_load(server):
    s, old, load = start_loaded(server)
    for _ in range(3):
        s.signal(signal.SIGHUP)
        old = wait_for(
            lambda: (lambda w: w if len(w) == 2 and not set(w) & set(old) else None)(s.workers()),  # noqa: B023
            timeout=15,
            what="a new generation",
        )
        load.wait_ok(300)
    res = load.stop()
    assert_clean(res, s)
    assert set(res.pids) & set(old)


def test_ttin_ttou_under_load(server):
    s, _, load = start_loaded(server)
    for _ in range(3):
        s.signal(signal.SIGTTIN)
        s.wait_workers(3)
        load.wait_ok(300)
        s.signal(signal.SIGTTOU)
        s.wait_workers(2)
        load.wait_ok(300)
    res = load.stop()
    assert_clean(res, s)


def test_graceful_stop_under_load(server):
    s, _, load = start_loaded(server)
    load.wait_ok(300)
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    res = load.stop()
    # No request on a connection a worker served fails: every one in
    # progress was answered. Connections made after the workers stopped
    # accepting are refused, or reset when the master closes the listeners
    # with them still in the kernel's backlog (as with Gunicorn): at most
    # one per client thread.
    served = [f for f in res.failures if f.conn_pid is not None and f.kind != "refused"]
    assert not served, "%s\n%s" % (res.summary(), served[:10])
    backlog = [f for f in res.failures if f.kind != "refused"]
    assert len(backlog) <= load.keepalive + load.fresh + load.idle, res.summary()


# eventlet: deprecated, served the same way.


def test_eventlet_hello_with_one_warning(server):
    pytest.importorskip("eventlet")
    s = server("-k", "eventlet", "-w", "2", "green_app:app")
    assert s.request()[2] == b"hello"
    info = json.loads(s.request(path="/patched")[2])
    assert info["eventlet_socket"] is True
    results, elapsed = concurrent_gets(s.port, ["/sleep?s=0.5"] * 20)
    assert all(r == (200, b"slept") for r in results)
    assert elapsed < 3, elapsed
    assert s.log().count("The eventlet worker is deprecated") == 1, s.log()
    assert "EventletDeprecationWarning" not in s.log()


def test_a_missing_package_stops_the_master_and_is_named(tmp_path):
    # The config file hides the package from its metadata, as an
    # environment without it would.
    (tmp_path / "hide.py").write_text(
        "import importlib.metadata as m\n"
        "_real = m.version\n"
        "def _version(name):\n"
        "    if name in ('gevent', 'eventlet'):\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return _real(name)\n"
        "m.version = _version\n"
    )
    for kind in ("gevent", "eventlet"):
        r = run_ferrocorn(["-c", "hide.py", "-k", kind, "basic:hello"], tmp_path)
        assert r.returncode == 1, r.stderr
        assert "requires the Python package '%s'" % kind in r.stderr, r.stderr
        assert "which is not installed: pip install '%s" % kind in r.stderr, r.stderr
    r = run_ferrocorn(["-c", "hide.py", "-k", "mypackage.MyWorker", "basic:hello"], tmp_path)
    assert "Invalid worker class" in r.stderr and "gevent" not in r.stderr, r.stderr
