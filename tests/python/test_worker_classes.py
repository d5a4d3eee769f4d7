"""`-k package.module.Class`: UvicornWorker subclasses served natively from
their CONFIG_KWARGS, Gunicorn worker classes (aiohttp's GunicornWebWorker,
a SyncWorker subclass) run in Python under ferrocorn's master, and the
errors for classes that cannot be served."""

import json
import os
import signal
import socket
import time

import pytest
from helpers import children, parse_response, pid_alive, read_response, run_ferrocorn, wait_for
from loadgen import LoadGen

pytest.importorskip("uvicorn")


def test_a_uvicorn_worker_subclass_runs_with_its_config_kwargs(server):
    s = server("-k", "uvicorn_workers.Tuned", "asgi_app:app", env={"ASGI_STATE_LOG": ""})
    status, _, body = s.request(path="/scope")
    assert status == 200
    assert json.loads(body)["root_path"] == "/api"
    log = s.log()
    assert "Worker class uvicorn_workers.Tuned is served by ferrocorn's native asgi worker with" in log, log
    for applied in ("asgi_loop=asyncio", "asgi_lifespan=on", "root_path=/api", "keepalive=1"):
        assert applied in log, (applied, log)
    # one warning names what has no counterpart
    warnings = [x for x in log.splitlines() if "no counterpart" in x]
    assert len(warnings) == 1 and "server_header=False" in warnings[0] and "limit_concurrency=100" in warnings[0]
    assert "http=" not in warnings[0]  # ferrocorn's engine is the HTTP implementation whatever it says
    # timeout_keep_alive became the keep-alive time
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parse_response(read_response(c))[0] == 200
    started = time.time()
    assert c.recv(100) == b""
    assert time.time() - started < 3
    c.close()


def test_config_kwargs_with_an_invalid_value_stop_the_master(tmp_path):
    r = run_ferrocorn(["-k", "uvicorn_workers.BadValue", "asgi_app:app"], tmp_path)
    assert r.returncode == 1
    assert "Invalid worker class 'uvicorn_workers.BadValue'" in r.stderr and "asgi_lifespan" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "cls,why",
    [
        ("uvicorn_workers.NotAWorker", "not a subclass of gunicorn.workers.base.Worker"),
        ("uvicorn_workers.Missing", "has no attribute Missing"),
        ("no_such_module.Worker", "cannot import no_such_module"),
    ],
)
def test_a_class_that_cannot_be_served_says_why_and_what_can(tmp_path, cls, why):
    r = run_ferrocorn(["-k", cls, "asgi_app:app"], tmp_path)
    assert r.returncode == 1
    assert "Invalid worker class '%s'" % cls in r.stderr, r.stderr
    assert why in r.stderr, r.stderr
    assert "Valid worker classes are sync, gthread, asgi, gevent" in r.stderr, r.stderr


def test_aiohttp_under_gunicorn_web_worker(server):
    pytest.importorskip("aiohttp")
    s = server("-k", "aiohttp.GunicornWebWorker", "-w", "2", "--timeout", "4", "aiohttp_app:app")
    status, _, body = s.request()
    assert (status, body) == (200, b"hello")
    assert "Worker class aiohttp.GunicornWebWorker (a Gunicorn worker class) runs in Python" in s.log()
    # requests run concurrently on the worker's own loop
    started = time.monotonic()
    for c in [_send(s.port, "/sleep?s=1") for _ in range(20)]:
        assert parse_response(read_response(c))[2] == b"slept"
        c.close()
    assert time.monotonic() - started < 4
    # notify() feeds ferrocorn's heartbeat: an idle worker outlives --timeout
    workers = s.wait_workers(2)
    time.sleep(6)
    assert s.workers() == workers and "WORKER TIMEOUT" not in s.log()


def test_a_uvicorn_worker_subclass_that_overrides_methods_runs_in_python(server):
    s = server("-k", "uvicorn_workers.Overrides", "asgi_app:app")
    # its run() is its own: it fails, and the master says so
    wait_for(lambda: "never called by ferrocorn" in s.log(), what="the class's own run()")


def test_a_sync_worker_subclass_runs_its_own_code(server):
    s = server("-k", "gunicorn_workers.Tagged", "basic:hello")
    assert s.request(path="/x")[0] == 200
    wait_for(lambda: "tagged request /x" in s.log(), what="the override's log line")
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0


def _send(port, path):
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return c


def test_operations_under_load_on_a_gunicorn_worker_class(server):
    """HUP, TTIN/TTOU and the graceful stop from ferrocorn's master, with
    aiohttp's worker serving: no request fails."""
    pytest.importorskip("aiohttp")
    s = server("-k", "aiohttp.GunicornWebWorker", "-w", "2", "--graceful-timeout", "10", "aiohttp_app:app")
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
    assert set(res.pids) & set(old)
    # aiohttp's worker, when it stops, closes its idle keep-alive
    # connections and drops connections it accepted but had not read yet,
    # so requests sent on them at that moment fail: the same happens under
    # Gunicorn's master (measured: 6 to 11 such failures per run of this
    # test there). Nothing else fails: no request on a worker that was not
    # being stopped, and at most one per client thread per stopped worker.
    live = set(s.workers())
    unexpected = [f for f in res.failures if f.conn_pid in live or f.kind not in ("closed", "reset", "timeout")]
    assert not unexpected, "%s\n%s\n%s" % (res.summary(), unexpected[:10], s.log()[-3000:])
    stopped_workers = 3  # two by HUP, one by TTOU
    assert len(res.failures) <= stopped_workers * (load.keepalive + load.fresh + load.idle), res.summary()


def test_the_control_socket_and_metrics_see_a_gunicorn_worker_class(server):
    pytest.importorskip("aiohttp")
    from helpers import ctl_json, metrics_args, scrape, wait_metrics

    margs, mport = metrics_args()
    s = server("-k", "aiohttp.GunicornWebWorker", "-w", "2", *margs, "aiohttp_app:app")
    wait_metrics(mport)
    wait_for(lambda: os.path.exists(s.default_control_socket), what="the control socket")
    workers = s.wait_workers(2)
    assert s.request()[2] == b"hello"
    data = ctl_json(s.default_control_socket, "show", "workers")
    assert sorted(w["pid"] for w in data["workers"]) == workers
    for w in data["workers"]:
        assert w["booted"] is True and 0 <= w["last_heartbeat"] < 30
    page = scrape(mport)
    assert page["ferrocorn_workers"] == 2
    # USR2: a new master re-executes, its workers run the same class
    s.signal(signal.SIGUSR2)
    new_master = wait_for(
        lambda: next((p for p in s.workers() if p not in workers), None), timeout=20, what="the new master"
    )
    wait_for(lambda: len(children(new_master)) == 2, timeout=20, what="the new master's workers")
    assert s.request()[2] == b"hello"
    os.kill(new_master, signal.SIGTERM)
    wait_for(lambda: not pid_alive(new_master), timeout=30, what="the new master to stop")
