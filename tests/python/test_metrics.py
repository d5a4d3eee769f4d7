"""--metrics-bind: the master's Prometheus page, checked against the
requests each test makes, for every worker type; restarts by cause; and a
silent client that must not stop the master from supervising."""

import os
import signal
import socket
import threading
import time

import pytest
from helpers import metrics_args, scrape, scrape_text, wait_for, wait_metric, wait_metrics

APPS = {"sync": "ops_app:app", "gthread": "ops_app:app", "asgi": "ops_app:asgi"}
CODE = 'ferrocorn_requests_total{code="%s"}'
BUCKET = 'ferrocorn_request_duration_seconds_bucket{le="%s"}'
CAUSE = 'ferrocorn_worker_restarts_total{cause="%s"}'


def start(server, kind, *args):
    margs, port = metrics_args()
    s = server("-k", kind, *margs, *args, APPS[kind])
    wait_metrics(port)
    return s, port


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_requests_by_status_class_and_latency(server, kind):
    s, port = start(server, kind, "-w", "2")
    before = scrape(port)
    assert before[CODE % "2xx"] == 0 and before["ferrocorn_request_duration_seconds_count"] == 0
    started = time.monotonic()
    for path in ["/", "/", "/", "/status/404", "/status/404", "/status/302", "/boom", "/sleep?s=0.6"]:
        s.request(path=path)
    elapsed = time.monotonic() - started
    page = wait_metric(port, "ferrocorn_request_duration_seconds_count", lambda v: v == 8)
    assert page[CODE % "1xx"] == 0
    assert page[CODE % "2xx"] == 4
    assert page[CODE % "3xx"] == 1
    assert page[CODE % "4xx"] == 2
    assert page[CODE % "5xx"] == 1
    assert page[BUCKET % "+Inf"] == 8
    # cumulative buckets; the sleeping request is in none up to 0.5 s, and
    # every request (each took less than the whole loop) in the 10 s one
    bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]
    counts = [page[BUCKET % b] for b in bounds]
    assert counts == sorted(counts), counts
    assert page[BUCKET % "0.5"] <= 7
    if elapsed < 10:
        assert page[BUCKET % "10"] == 8
    # the durations add up to at least the sleep, and not much more than
    # the time the client spent on all eight (a server's clock may stop a
    # little after the client has its answer)
    total = page["ferrocorn_request_duration_seconds_sum"]
    assert 0.6 <= total < elapsed + 1, (total, elapsed)
    assert page["ferrocorn_requests_in_flight"] == 0
    assert page["ferrocorn_workers"] == 2 and page["ferrocorn_workers_target"] == 2


def test_page_format_and_other_paths(server):
    s, port = start(server, "sync")
    ctype, text = scrape_text(port)
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE ferrocorn_request_duration_seconds histogram" in text
    assert text.endswith("\n")
    # the listener's backlog, per listener, and each worker's RSS
    page = scrape(port)
    assert page['ferrocorn_listen_backlog{listener="http://127.0.0.1:%d"}' % s.port] >= 0
    workers = s.workers()
    for pid in workers:
        assert page['ferrocorn_worker_rss_bytes{pid="%d"}' % pid] > 1 << 20
        assert page['ferrocorn_worker_heartbeat_age_seconds{pid="%d"}' % pid] < 60
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.recv(100).startswith(b"HTTP/1.1 404 Not Found\r\n")
    conn.close()
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"DELETE /metrics HTTP/1.1\r\n\r\n")
    assert conn.recv(100).startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    conn.close()


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_in_flight_during_a_slow_request(server, kind):
    s, port = start(server, kind)
    t = threading.Thread(target=s.request, kwargs={"path": "/sleep?s=2"})
    t.start()
    try:
        wait_metric(port, "ferrocorn_requests_in_flight", lambda v: v == 1, timeout=5)
    finally:
        t.join()
    wait_metric(port, "ferrocorn_requests_in_flight", lambda v: v == 0, timeout=5)


def test_a_killed_worker_counts_as_a_crash_and_its_requests_stay(server):
    s, port = start(server, "sync", "-w", "2")
    for _ in range(5):
        s.request()
    wait_metric(port, CODE % "2xx", lambda v: v == 5)
    first = s.wait_workers(2)
    os.kill(first[0], signal.SIGKILL)
    s.wait_workers(2, exclude=[first[0]])
    page = wait_metric(port, CAUSE % "crash", lambda v: v == 1)
    # what the dead worker served is still counted
    assert page[CODE % "2xx"] == 5
    assert page["ferrocorn_request_duration_seconds_count"] == 5
    for cause in ("timeout", "max_requests", "max_memory", "reload", "terminated"):
        assert page[CAUSE % cause] == 0, cause
    assert page["ferrocorn_worker_spawns_total"] == 3


def test_a_timed_out_worker_is_counted(server):
    s, port = start(server, "sync", "-w", "1", "--timeout", "1")
    first = s.wait_workers(1)
    try:
        s.request(path="/sleep?s=5", timeout=10)
    except OSError:
        pass  # the aborted worker closes the connection without an answer
    s.wait_workers(1, exclude=first)
    page = wait_metric(port, CAUSE % "timeout", lambda v: v == 1)
    assert page[CAUSE % "crash"] == 0
    assert "WORKER TIMEOUT (pid:%d)" % first[0] in s.log()


def test_reload_restarts_are_counted(server):
    s, port = start(server, "sync", "-w", "2")
    old = s.wait_workers(2)
    s.signal(signal.SIGHUP)
    wait_for(lambda: (lambda w: len(w) == 2 and not set(w) & set(old))(s.workers()), what="a new generation")
    page = wait_metric(port, CAUSE % "reload", lambda v: v == 2)
    assert page["ferrocorn_reloads_total"] == 1
    assert page[CAUSE % "crash"] == 0 and page[CAUSE % "terminated"] == 0


def test_shrinking_is_no_restart(server):
    s, port = start(server, "sync", "-w", "2")
    s.wait_workers(2)
    s.signal(signal.SIGTTOU)
    s.wait_workers(1)
    # the master has reaped the worker it stopped: its count is down
    page = wait_metric(port, "ferrocorn_workers", lambda v: v == 1)
    assert all(page[CAUSE % c] == 0 for c in ("crash", "terminated", "reload")), page
    assert page["ferrocorn_workers_target"] == 1


def test_silent_clients_do_not_stop_supervision(server):
    s, port = start(server, "sync", "-w", "2")
    # clients that connect and say nothing, or half a request
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /metr")
    control = socket.socket(socket.AF_UNIX)
    control.connect(s.default_control_socket)
    control.sendall(b'\x00\x00\x00\x40{"id": 1')
    try:
        first = s.wait_workers(2)
        os.kill(first[0], signal.SIGKILL)
        # the silent clients stay for the whole wait: a master they held up
        # would not replace the worker at all
        s.wait_workers(2, exclude=[first[0]], timeout=15)
        # and the endpoint still answers other scrapers meanwhile
        assert wait_metric(port, CAUSE % "crash", lambda v: v == 1, timeout=15)
        assert s.request()[0] == 200
    finally:
        for c in silent + [half, control]:
            c.close()


def test_a_busy_metrics_port_is_retried(server):
    margs, port = metrics_args()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        s = server(*margs, "ops_app:app")
        wait_for(lambda: "Cannot serve metrics at 127.0.0.1:%d" % port in s.log(), what="the bind error")
        assert s.request()[0] == 200  # the server itself runs
    finally:
        holder.close()
    wait_metrics(port, timeout=10)
    assert "Metrics at: http://127.0.0.1:%d/metrics" % port in s.log()


def test_off_by_default(server):
    s = server("ops_app:app")
    s.wait_workers(1)
    assert "Metrics at" not in s.log()
