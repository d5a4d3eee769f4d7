"""--request-timeout (docs/request-timeout.md): a request that runs past it
has its handler interrupted where it is, the client gets 504 (or a closed
connection once a response has started), the error log says where the
handler was, metrics count it, and the worker goes on serving. A handler
out of reach (blocked in C code) gets its worker replaced gracefully.

Each case names the handler function that must show in the logged stack
and what the worker type can do about it (see timeout_app.py)."""

import socket
import threading
import time

import pytest
from helpers import metrics_args, parse_response, read_all, refusal, run_ferrocorn, scrape, wait_for, wait_metric

KINDS = {
    "sync": (("-k", "sync"), "timeout_app:app"),
    "gthread": (("-k", "gthread", "--threads", "4"), "timeout_app:app"),
    "gevent": (("-k", "gevent", "--worker-connections", "50"), "timeout_app:app"),
    "eventlet": (("-k", "eventlet", "--worker-connections", "50"), "timeout_app:app"),
    "asgi": (("-k", "asgi"), "timeout_app:asgi"),
}

# The worker keeps its pid: the handler was interrupted.
INTERRUPTED = "interrupted"
# Out of reach: the worker is replaced. `None` status: the client sees the
# connection closed with no response (the handler never returned).
REPLACED = "replaced"

# (kind, path, the handler function in the logged stack, outcome, status)
CASES = [
    ("sync", "/sleep", "handler_sleeps", INTERRUPTED, 504),
    ("sync", "/spin", "handler_spins", INTERRUPTED, 504),
    ("sync", "/silent", "handler_reads_silence", INTERRUPTED, 504),
    # Signals masked (as a C library may): the sleep ends, then it raises.
    ("sync", "/masked?s=3", "handler_blocks_signals", REPLACED, 504),
    # wsgi.input.read() waiting for a client that stopped sending.
    ("sync", "/body", "handler_reads_body", INTERRUPTED, 504),
    # A thread blocked in C sees the exception only once the call returns.
    ("gthread", "/sleep?s=3", "handler_sleeps", REPLACED, 504),
    ("gthread", "/spin", "handler_spins", INTERRUPTED, 504),
    ("gthread", "/silent", "handler_reads_silence", REPLACED, None),
    ("gthread", "/body", "handler_reads_body", REPLACED, None),
    ("gevent", "/sleep", "handler_sleeps", INTERRUPTED, 504),
    ("gevent", "/spin", "handler_spins", INTERRUPTED, 504),
    ("gevent", "/silent", "handler_reads_silence", INTERRUPTED, 504),
    ("gevent", "/body", "handler_reads_body", INTERRUPTED, 504),
    ("eventlet", "/sleep", "handler_sleeps", INTERRUPTED, 504),
    ("eventlet", "/spin", "handler_spins", INTERRUPTED, 504),
    ("eventlet", "/silent", "handler_reads_silence", INTERRUPTED, 504),
    ("eventlet", "/body", "handler_reads_body", INTERRUPTED, 504),
    ("asgi", "/asleep", "handler_asyncio_sleeps", INTERRUPTED, 504),
    ("asgi", "/silent", "handler_asyncio_reads_silence", INTERRUPTED, 504),
    ("asgi", "/body", "handler_receives_body", INTERRUPTED, 504),
    # Blocking code in a coroutine holds the event loop: nothing in the
    # worker runs until it returns (a sleep that does return completes its
    # response, too late).
    ("asgi", "/spin", "handler_spins", REPLACED, None),
    ("asgi", "/sleep?s=3", "handler_sleeps", REPLACED, 200),
]


@pytest.fixture
def silent_server():
    """A local server that accepts and never sends a byte."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(lsock.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield lsock.getsockname()[1]
    stop.set()
    t.join()
    for c in accepted:
        c.close()
    lsock.close()


def start(server, kind, *extra):
    worker_args, app = KINDS[kind]
    margs, port = metrics_args()
    s = server(
        *worker_args,
        "-w",
        "1",
        "--request-timeout",
        "1",
        "--graceful-timeout",
        "3",
        "--access-logfile",
        "-",
        *margs,
        *extra,
        app,
    )
    return s, port


def method_of(path):
    return "POST" if path == "/body" else "GET"


def fetch(port, path, timeout=20):
    """(status or None when the connection closed with no response, raw bytes).
    `/body` is a POST whose client stops sending: more than the engines
    read ahead of the app, far less than announced."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (method_of(path).encode(), path.encode())
        if path == "/body":
            sock.sendall(head + b"Content-Length: 10000000\r\n\r\n" + b"a" * 300_000)
        else:
            sock.sendall(head + b"\r\n")
        raw = read_all(sock)
    except ConnectionResetError:
        raw = b""
    finally:
        sock.close()
    if not raw:
        return None, raw
    return parse_response(raw)[0], raw


def worker_pid(s):
    status, _, body = s.request(path="/pid", headers={"Connection": "close"})
    assert status == 200
    return int(body)


@pytest.mark.parametrize(("kind", "path", "handler", "outcome", "status"), CASES, ids=lambda v: str(v))
def test_a_request_past_the_timeout(server, silent_server, kind, path, handler, outcome, status):
    s, mport = start(server, kind)
    if path == "/silent":
        path = "/silent?port=%d" % silent_server
    before = worker_pid(s)
    result = {}

    def slow():
        t0 = time.monotonic()
        result["status"], result["raw"] = fetch(s.port, path)
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=slow)
    t.start()
    if kind != "sync" and outcome == INTERRUPTED:
        # The worker's other requests go on meanwhile.
        time.sleep(0.4)
        assert worker_pid(s) == before
    t.join(30)
    assert not t.is_alive()
    assert result["status"] == status, result
    if outcome == INTERRUPTED:
        # Interrupted at the deadline (1 s), not when the handler would end.
        assert result["elapsed"] < 3, result
        assert worker_pid(s) == before
    else:
        wait_for(lambda: worker_pid(s) != before, timeout=15, what="a new worker")
        wait_metric(mport, 'ferrocorn_worker_restarts_total{cause="request_timeout"}', lambda v: v == 1)
        assert "has a request it could not interrupt past --request-timeout: replacing it" in s.log()
    log = s.log()
    line = "Request timeout: %s %s ran past --request-timeout 1s" % (method_of(path), path)
    assert line in log, log
    assert "in %s" % handler in log.split(line, 1)[1], log
    assert log.count(line) == 1, log
    page = scrape(mport)
    assert page["ferrocorn_request_timeouts_total"] == 1
    if status is not None:
        assert '"%s %s HTTP/1.1" %d ' % (method_of(path), path, status) in s.out()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_app_may_catch_it_and_answer(server, kind):
    s, mport = start(server, kind)
    before = worker_pid(s)
    status, _, body = s.request(path="/catch", headers={"Connection": "close"})
    assert (status, body) == (200, b"cleaned up")
    assert worker_pid(s) == before
    assert "Request timeout: GET /catch ran past" in s.log()
    assert scrape(mport)["ferrocorn_request_timeouts_total"] == 1
    assert '"GET /catch HTTP/1.1" 200 ' in s.out()


@pytest.mark.parametrize("kind", ["sync", "asgi"])
def test_a_started_response_is_cut(server, kind):
    s, _ = start(server, kind)
    before = worker_pid(s)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    t0 = time.monotonic()
    sock.sendall(b"GET /started HTTP/1.1\r\nHost: t\r\n\r\n")
    raw = read_all(sock)
    sock.close()
    assert time.monotonic() - t0 < 3
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"partial " in raw
    # Chunked, and the last chunk never came: the client can tell.
    assert not raw.endswith(b"0\r\n\r\n"), raw
    assert worker_pid(s) == before
    assert "Request timeout: GET /started ran past" in s.log()


def test_off_by_default_and_timeout_unchanged(server):
    """Without it a slow handler just finishes (and --timeout is still the
    heartbeat: a sync worker past it is killed, as Gunicorn's)."""
    s = server("-k", "sync", "-w", "1", "timeout_app:app")
    status, _, body = s.request(path="/sleep?s=1.5", headers={"Connection": "close"})
    assert (status, body) == (200, b"done")
    assert "Request timeout" not in s.log()


def test_refused_where_not_implemented(tmp_path):
    r = run_ferrocorn(["-k", "tornado", "--request-timeout", "5", "timeout_app:app"], tmp_path)
    assert r.returncode != 0
    why = refusal(r.stderr) or r.stderr
    assert "--request-timeout is not supported with the tornado worker" in why, r.stderr


def test_config_file_and_environment(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("request_timeout = 7\n")
    r = run_ferrocorn(["--print-config", "-c", str(conf), "timeout_app:app"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert any(line.split() == ["request_timeout", "=", "7"] for line in r.stdout.splitlines()), r.stdout
    r = run_ferrocorn(
        ["--print-config", "timeout_app:app"], tmp_path, env={"FERROCORN_CMD_ARGS": "--request-timeout 9"}
    )
    assert any(line.split() == ["request_timeout", "=", "9"] for line in r.stdout.splitlines()), r.stdout
    r = run_ferrocorn(["--request-timeout", "-1", "timeout_app:app"], tmp_path)
    assert r.returncode != 0


def test_a_sync_heartbeat_no_longer_than_the_timeout_is_warned_of(tmp_path):
    args = ["--check-config", "--request-timeout", "30", "--timeout", "30", "timeout_app:app"]
    r = run_ferrocorn(args, tmp_path)
    assert "--request-timeout 30s is not below --timeout 30s" in r.stderr, r.stderr
    r = run_ferrocorn(["--check-config", "--request-timeout", "29", "--timeout", "30", "timeout_app:app"], tmp_path)
    assert "is not below --timeout" not in r.stderr, r.stderr


def test_statsd_counts_it(server):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    try:
        s, _ = start(server, "sync", "--statsd-host", "127.0.0.1:%d" % udp.getsockname()[1])
        assert fetch(s.port, "/sleep")[0] == 504
        packets = []
        deadline = time.monotonic() + 5
        wanted = {b"ferrocorn.request_timeout:1|c|@1.0", b"gunicorn.request.status.504:1|c|@1.0"}
        while time.monotonic() < deadline and not wanted <= set(packets):
            packets.append(udp.recv(4096))
        assert b"ferrocorn.request_timeout:1|c|@1.0" in packets, packets
        assert b"gunicorn.request.status.504:1|c|@1.0" in packets, packets
    finally:
        udp.close()
