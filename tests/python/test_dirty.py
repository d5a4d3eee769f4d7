"""Dirty arbiters end to end (issue 14): real ferrocorn servers with
`--dirty-app`, called from request handlers of each worker type through
`ferrocorn.dirty` (and through Gunicorn 27's own `gunicorn.dirty`), with the
hostile cases: a call past `dirty_timeout`, a dirty worker that dies mid-call,
a dead dirty arbiter, a flood of calls larger than the pool, oversized
payloads and a client that speaks nonsense to the dirty socket.

The apps are tests/python/apps/dirty_apps.py (the dirty apps) and
dirty_web.py (the HTTP side: a POST body is a JSON call, the answer is the
result or the error's class and message)."""

import concurrent.futures
import json
import os
import signal
import socket
import struct
import threading
import time

import pytest
from helpers import (
    Server,
    children,
    control,
    ctl,
    free_port,
    pid_alive,
    read_pid,
    run_ferrocorn,
    scrape,
    stop_pid,
    wait_for,
)

APP = "dirty_apps:Counter"

KINDS = {
    "sync": ("-k", "sync"),
    "gthread": ("-k", "gthread", "--threads", "4"),
    "asgi": ("-k", "asgi"),
    "gevent": ("-k", "gevent"),
    "tornado": ("-k", "tornado"),
}
# The HTTP side each worker type runs (the tornado worker: a native
# RequestHandler using the async client).
WEB = {"asgi": "dirty_web:asgi", "tornado": "dirty_tornado:app"}


def start(server, kind="sync", *args, workers=1, dirty_apps=(APP,), web=None, cwd=None):
    dirty = []
    for a in dirty_apps:
        dirty += ["--dirty-app", a]
    app = web or WEB.get(kind, "dirty_web:app")
    if cwd:
        # A directory of its own, for its control socket.
        os.makedirs(cwd, exist_ok=True)
    s = server(*KINDS[kind], "-w", str(workers), "--control-socket", "ctl.sock", *dirty, *args, app, cwd=cwd)
    wait_dirty(s)
    return s


def dirty_state(s):
    return control(os.path.join(s.cwd, "ctl.sock"), "show dirty")


def wait_dirty(s, n=None, exclude=(), timeout=20.0):
    """The `show dirty` answer once the dirty workers (n of them, none of
    `exclude`) have all booted."""

    def ready():
        d = dirty_state(s)
        workers = d.get("workers", [])
        if not d.get("enabled") or not workers or not all(w["booted"] for w in workers):
            return None
        if n is not None and len(workers) != n:
            return None
        if {w["pid"] for w in workers} & set(exclude):
            return None
        return d

    return wait_for(ready, timeout=timeout, what="booted dirty workers")


def call(s, timeout=30, **c):
    status, _, body = s.request("POST", "/", body=json.dumps(c), timeout=timeout)
    assert status == 200, body
    return json.loads(body)


def execute(s, action, *args, app=APP, **kw):
    return call(s, app=app, action=action, args=list(args), **kw)


def dirty_pids(s):
    return sorted(w["pid"] for w in dirty_state(s)["workers"])


# -- calls, state, streams, errors on each worker type -------------------------


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi", "gevent", "tornado"])
def test_calls_keep_state_stream_and_raise_gunicorns_errors(server, kind):
    if kind in ("gevent", "tornado"):
        pytest.importorskip(kind)
    s = start(server, kind, "--dirty-workers", "1")
    first = execute(s, "incr")["result"]
    second = execute(s, "incr", 5)["result"]
    # One dirty worker: the instance (and its state) outlives the call.
    assert (first["n"], second["n"]) == (1, 6)
    assert first["pid"] == second["pid"]
    echoed = execute(s, "echo", 1, "two", [3.5, None], {"k": b"v".decode()}, kwargs={"flag": True})["result"]
    assert echoed == {"args": [1, "two", [3.5, None], {"k": "v"}], "kwargs": {"flag": True}}
    assert call(s, op="stream", app=APP, action="count", args=[4])["result"] == [0, 1, 2, 3]
    assert call(s, op="stream", app=APP, action="acount", args=[3])["result"] == ["a0", "a1", "a2"]
    assert call(s, op="stream", app=APP, action="count", args=[0])["result"] == []
    failed = execute(s, "fail", "no good")
    assert failed["error"] == "DirtyAppError"
    assert failed["message"].startswith("no good: {'app_path': 'dirty_apps:Counter', 'action': 'fail'")
    missing = execute(s, "incr", app="dirty_apps:Nowhere")
    assert missing == {
        "error": "DirtyNoWorkersAvailableError",
        "message": "No workers available for app: dirty_apps:Nowhere: {'app_path': 'dirty_apps:Nowhere'}",
        "worker": missing["worker"],
    }
    # The connection is kept across errors: the next call is answered.
    assert execute(s, "incr")["result"]["n"] == 7


def test_dirty_threads_run_calls_of_one_worker_at_once(server):
    s = start(server, "gthread", "--dirty-workers", "1", "--dirty-threads", "3")
    results = []

    def one():
        results.append(execute(s, "sleep", 1.5)["result"])

    threads = [threading.Thread(target=one) for _ in range(3)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    took = time.monotonic() - began
    assert results == ["slept 1.5"] * 3
    # Serially they would take 4.5 s.
    assert took < 3.5, took


# -- allocation ----------------------------------------------------------------


def test_per_app_worker_counts_from_the_spec_and_the_class(server):
    s = start(
        server,
        "sync",
        "--dirty-workers",
        "3",
        dirty_apps=(APP, "dirty_apps:Limited", "dirty_apps:Other:2"),
    )
    d = wait_dirty(s, n=3)
    apps = {a["import_path"]: a for a in d["apps"]}
    assert apps[APP]["worker_count"] is None and apps[APP]["current_workers"] == 3
    assert apps["dirty_apps:Limited"]["worker_count"] == 1 and apps["dirty_apps:Limited"]["current_workers"] == 1
    assert apps["dirty_apps:Other"]["worker_count"] == 2 and apps["dirty_apps:Other"]["current_workers"] == 2
    # Every call of an app lands on one of the workers that load it.
    limited = {execute(s, "pid", app="dirty_apps:Limited")["result"] for _ in range(6)}
    assert limited == set(apps["dirty_apps:Limited"]["worker_pids"])
    other = {execute(s, "pid", app="dirty_apps:Other")["result"] for _ in range(8)}
    assert other <= set(apps["dirty_apps:Other"]["worker_pids"]) and len(other) == 2


def test_bad_dirty_app_spec_is_refused_at_start(tmp_path):
    r = run_ferrocorn(["--dirty-app", "no_colon_here", "--dirty-workers", "1", "dirty_web:app"], tmp_path)
    assert r.returncode != 0
    assert "Invalid import path format: no_colon_here" in r.stderr
    r = run_ferrocorn(["--dirty-app", "m:A:0", "--dirty-workers", "1", "dirty_web:app"], tmp_path)
    assert r.returncode != 0
    assert "Worker count must be >= 1, got 0" in r.stderr


# -- hostile cases -------------------------------------------------------------


def test_a_dirty_worker_dying_mid_call_is_an_error_then_replaced(server):
    s = start(server, "sync", "--dirty-workers", "1")
    before = dirty_pids(s)
    began = time.monotonic()
    died = execute(s, "crash")
    assert died["error"] == "DirtyWorkerError", died
    assert time.monotonic() - began < 5
    wait_dirty(s, n=1, exclude=before)
    assert execute(s, "incr")["result"]["n"] == 1
    assert "Dirty worker (pid:%d) killed by signal" in s.log() or "Dirty worker exited (pid:%d)" % before[0] in s.log()


def test_a_call_past_dirty_timeout_times_out_and_the_worker_is_replaced(server):
    port = free_port()
    s = start(server, "sync", "--dirty-workers", "1", "--dirty-timeout", "2", "--metrics-bind", "127.0.0.1:%d" % port)
    before = dirty_pids(s)
    began = time.monotonic()
    late = execute(s, "sleep", 60)
    took = time.monotonic() - began
    assert late["error"] == "DirtyTimeoutError", late
    assert late["message"] == "Execution of dirty_apps:Counter.sleep timed out: {'timeout': 2}"
    assert 1.5 < took < 6, took
    # The stuck thread cannot be interrupted: its worker goes, a new one comes.
    wait_dirty(s, n=1, exclude=before)
    assert execute(s, "incr")["result"]["n"] == 1
    assert "DIRTY WORKER TIMEOUT (pid:%d)" % before[0] in s.log()
    page = scrape(port)
    assert page['ferrocorn_dirty_call_timeouts_total{app="dirty_apps:Counter"}'] == 1
    assert page['ferrocorn_dirty_worker_restarts_total{cause="timeout"}'] == 1


def test_a_flood_larger_than_the_pool_queues_and_http_is_still_served(server):
    s = start(server, "asgi", "--dirty-workers", "1")
    answers = []
    lock = threading.Lock()

    def one():
        r = execute(s, "sleep", 0.05, timeout=60)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=one) for _ in range(80)]
    for t in threads:
        t.start()
    # While 80 calls wait for one dirty worker, other requests are served.
    queued = wait_for(lambda: dirty_state(s)["queued"] or None, timeout=10, what="queued calls")
    assert queued > 0
    began = time.monotonic()
    status, _, body = s.request("GET", "/ping", timeout=5)
    assert (status, body) == (200, b"pong")
    assert time.monotonic() - began < 2.0
    for t in threads:
        t.join(60)
    assert len(answers) == 80
    assert all(a.get("result") == "slept 0.05" for a in answers), [a for a in answers if "error" in a][:3]
    assert dirty_state(s)["queued"] == 0


def test_oversized_payloads_are_refused_and_the_server_goes_on(server):
    s = start(server, "sync", "--dirty-workers", "1")
    # An argument past the protocol's 64 MiB: refused before it is sent.
    too_big = call(s, app=APP, action="echo", big_arg=65 * 1024 * 1024, timeout=60)
    assert too_big["error"] == "DirtyProtocolError", too_big
    assert "too large" in too_big["message"]
    # A result past it: the dirty worker cannot send it and says so.
    big_result = execute(s, "big", 65 * 1024 * 1024, timeout=60)
    assert big_result["error"] == "DirtyAppError", big_result
    assert "too large" in big_result["message"]
    # Large but allowed, both ways.
    assert execute(s, "big", 8 * 1024 * 1024, timeout=60)["result"] == {"bytes": 8 * 1024 * 1024}
    assert call(s, app=APP, action="echo", big_arg=8 * 1024 * 1024, timeout=60)["result"]["args"] == [
        {"bytes": 8 * 1024 * 1024}
    ]
    assert execute(s, "incr")["result"]["n"] == 1


def dirty_socket(s):
    with open("/proc/%d/environ" % s.pid, "rb") as f:
        env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    if b"GUNICORN_DIRTY_SOCKET" in env:
        return env[b"GUNICORN_DIRTY_SOCKET"].decode()
    # Set after the master started: its dirty arbiter's log line says where.
    for line in s.log().splitlines():
        if "Dirty arbiter listening on " in line:
            return line.rsplit(" ", 1)[1]
    raise AssertionError("no dirty socket in the log")


def test_nonsense_on_the_dirty_socket_drops_that_client_only(server):
    s = start(server, "sync", "--dirty-workers", "1")
    arbiter = dirty_state(s)["pid"]
    path = dirty_socket(s)
    # A header claiming a 1 GiB payload, garbage, and a half-sent message.
    for data in (
        b"GD\x01\x01" + struct.pack(">IQ", 1 << 30, 1),
        b"GET / HTTP/1.1\r\n\r\n",
        b"GD\x01\x01" + struct.pack(">IQ", 100, 1) + b"\x05",
    ):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect(path)
        c.sendall(data)
        if len(data) != 16 + 1:
            # Closed (a reset when unread bytes were left): no answer.
            try:
                assert c.recv(100) == b"", data
            except ConnectionResetError:
                pass
        c.close()
    assert "Dirty client connection error: Message too large: 1073741824 bytes" in s.log()
    assert dirty_state(s)["pid"] == arbiter
    assert execute(s, "incr")["result"]["n"] == 1


# -- supervision ---------------------------------------------------------------


def test_a_killed_dirty_arbiter_is_replaced(server):
    s = start(server, "sync", "--dirty-workers", "1")
    assert execute(s, "incr")["result"]["n"] == 1
    old = dirty_state(s)
    os.kill(old["pid"], signal.SIGKILL)
    new = wait_for(
        lambda: (lambda d: d if d.get("enabled") and d["pid"] != old["pid"] and d["workers"] else None)(dirty_state(s)),
        timeout=20,
        what="a new dirty arbiter",
    )
    wait_dirty(s, n=1)
    # Its workers went with it (state is gone); the socket path is the
    # same, and the HTTP worker's kept connection to the dead one is
    # replaced without the call failing.
    wait_for(lambda: not os.path.exists("/proc/%d" % old["workers"][0]["pid"]), what="the old dirty worker gone")
    assert execute(s, "incr")["result"]["n"] == 1
    assert new["arbiter_restarts"] == 1


@pytest.mark.parametrize("freeze", [True, False], ids=["freeze", "no-preload-freeze"])
def test_dirty_workers_inherit_the_preloaded_heap_frozen(server, freeze):
    """The dirty arbiter is forked before the master's first worker (where
    the master freezes its heap), so it freezes what it inherited itself:
    a dirty worker's collections then leave the preloaded pages alone."""
    s = start(server, "sync", "--dirty-workers", "1", "--preload", *(() if freeze else ("--no-preload-freeze",)))
    frozen = execute(s, "frozen")["result"]
    if freeze:
        # The interpreter's and the preloaded app's objects: thousands.
        assert frozen > 1000, frozen
    else:
        assert frozen == 0


def test_hup_replaces_the_dirty_workers_and_calls_go_on(server):
    s = start(server, "gthread", "--dirty-workers", "2")
    before = dirty_pids(s)
    s.signal(signal.SIGHUP)
    wait_dirty(s, n=2, exclude=before)
    assert execute(s, "incr")["result"]["n"] == 1
    assert "Dirty arbiter handling signal: hup" in s.log()


def test_term_lets_a_running_call_finish(server):
    s = start(server, "gthread", "--dirty-workers", "1", "--graceful-timeout", "10")
    got = {}

    def slow():
        got["answer"] = execute(s, "sleep", 2)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: any(w["in_flight"] for w in dirty_state(s)["workers"]) or None, what="the call running")
    s.signal(signal.SIGTERM)
    t.join(20)
    assert got["answer"]["result"] == "slept 2"
    assert s.wait_exit(20) == 0


def test_dirty_graceful_timeout_bounds_the_stop(server):
    s = start(server, "gthread", "--dirty-workers", "1", "--dirty-graceful-timeout", "1", "--graceful-timeout", "1")
    worker = dirty_pids(s)[0]

    def stuck():
        try:
            execute(s, "sleep", 60, timeout=30)
        except OSError:
            pass  # the server went, as asked

    t = threading.Thread(target=stuck, daemon=True)
    t.start()
    wait_for(lambda: any(w["in_flight"] for w in dirty_state(s)["workers"]) or None, what="the call running")
    began = time.monotonic()
    s.signal(signal.SIGTERM)
    s.wait_exit(30)
    assert time.monotonic() - began < 10
    wait_for(lambda: not os.path.exists("/proc/%d" % worker), what="the dirty worker gone")


# -- the stash, hooks, control -------------------------------------------------


def test_the_stash_is_shared_by_http_workers_and_dirty_workers(server):
    s = start(server, "sync", "--dirty-workers", "1", workers=2)
    assert call(s, op="stash_put", table="shared", key="k", value={"v": [1, 2]})["result"] is True
    seen = set()

    def read_everywhere():
        # Several calls at once: one after another, an idle sync worker
        # first in the listener's queue may take every connection.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for r in pool.map(lambda _: call(s, op="stash_get", table="shared", key="k"), range(4)):
                assert r["result"] == {"v": [1, 2]}, r
                seen.add(r["worker"])
        return len(seen) == 2 or None

    wait_for(read_everywhere, timeout=20, what="both HTTP workers reading the stash")
    # A dirty app writes; the HTTP side reads it, and the other way round.
    assert execute(s, "remember", "from_dirty", 42)["result"] is True
    assert call(s, op="stash_get", table="dirty_test", key="from_dirty")["result"] == 42
    call(s, op="stash_put", table="dirty_test", key="from_http", value="hi")
    assert execute(s, "recall", "from_http")["result"] == "hi"


HOOKS = """
import os

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.log")


def note(*words):
    with open(LOG, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")


def on_dirty_starting(arbiter):
    note("on_dirty_starting", arbiter.pid)


def dirty_post_fork(arbiter, worker):
    note("dirty_post_fork", worker.pid, ",".join(worker.app_paths))


def dirty_worker_init(worker):
    note("dirty_worker_init", worker.pid, os.getpid(), sorted(worker.apps))


def dirty_worker_exit(arbiter, worker):
    note("dirty_worker_exit", worker.pid)
"""


def test_the_dirty_hooks_fire_in_order(server, tmp_path):
    (tmp_path / "hooks.py").write_text(HOOKS)
    s = start(server, "sync", "-c", "hooks.py", "--dirty-workers", "2")
    pids = dirty_pids(s)
    assert execute(s, "incr")["result"]["n"] == 1
    s.stop()
    lines = [line.split() for line in (tmp_path / "hooks.log").read_text().splitlines()]
    names = [line[0] for line in lines]
    assert names[0] == "on_dirty_starting"
    assert sorted(int(line[1]) for line in lines if line[0] == "dirty_post_fork") == pids
    assert sorted(int(line[1]) for line in lines if line[0] == "dirty_worker_exit") == pids
    inits = [line for line in lines if line[0] == "dirty_worker_init"]
    # Called in the dirty worker itself, once its apps are loaded.
    assert sorted(int(line[1]) for line in inits) == pids and all(line[1] == line[2] for line in inits)
    assert all("dirty_apps:Counter" in " ".join(line[3:]) for line in inits)
    for pid in pids:
        order = [line[0] for line in lines if len(line) > 1 and line[1] == str(pid)]
        assert order == ["dirty_post_fork", "dirty_worker_init", "dirty_worker_exit"], (pid, lines)


def test_control_socket_adds_and_removes_dirty_workers(server):
    s = start(server, "sync", "--dirty-workers", "1")
    ctl = os.path.join(s.cwd, "ctl.sock")
    added = control(ctl, "dirty add 2")
    assert added["success"] is True and added["spawned"] == 2 and added["target_workers"] == 3
    wait_dirty(s, n=3)
    removed = control(ctl, "dirty remove 1")
    assert removed["success"] is True and removed["removed"] == 1
    wait_dirty(s, n=2)
    everything = control(ctl, "show all")
    assert everything["dirty_arbiter"]["pid"] == dirty_state(s)["pid"]
    assert everything["dirty_worker_count"] == 2
    assert control(ctl, "show stats")["dirty_arbiter_pid"] == dirty_state(s)["pid"]


# -- Gunicorn's own client and apps, and Gunicorn side by side -----------------

GUNICORN_CALLS = [
    {"app": "gunicorn_dirty_apps:Model", "action": "predict", "args": [3], "kwargs": {"scale": 2}},
    {"app": "gunicorn_dirty_apps:Model", "action": "predict", "args": [4]},
    {"op": "stream", "app": "gunicorn_dirty_apps:Model", "action": "tokens", "args": ["a b c"]},
    {"app": "gunicorn_dirty_apps:Model", "action": "fail"},
    {"app": "gunicorn_dirty_apps:Model", "action": "nope"},
    {"app": "gunicorn_dirty_apps:Missing", "action": "predict"},
    {"op": "stash_put", "table": "t", "key": "k", "value": [1, "two"]},
    {"op": "stash_get", "table": "t", "key": "k"},
]


def answers_of(s):
    out = []
    for c in GUNICORN_CALLS:
        a = call(s, **c)
        a.pop("worker")
        if "message" in a:
            # Tracebacks name files, which differ.
            a["message"] = a["message"].split(", 'traceback'")[0]
        out.append(a)
    return out


@pytest.mark.parametrize("kind", ["sync", "asgi"])
@pytest.mark.parametrize("client", ["gunicorn", "ferrocorn"])
def test_an_app_written_for_gunicorn_dirty_runs_unchanged_and_answers_as_gunicorn(server, tmp_path, client, kind):
    env = {"DIRTY_API": client}
    args = (
        "-k",
        kind,
        "--dirty-app",
        "gunicorn_dirty_apps:Model",
        "--dirty-workers",
        "1",
        WEB.get(kind, "dirty_web:app"),
    )
    # Names of their own: a Gunicorn finding ferrocorn's dirty arbiter in
    # the pid file of its name would stop it as orphaned.
    ours = server("-n", "ours", "--control-socket", "ctl.sock", *args, env=env)
    wait_dirty(ours)
    theirs = Server(("-n", "theirs", "--no-control-socket", *args), tmp_path, env=env, program="gunicorn")
    try:
        wait_for(lambda: "Initialized dirty app" in theirs.log() or None, what="Gunicorn's dirty worker")
        assert answers_of(ours) == answers_of(theirs)
    finally:
        theirs.stop()


def test_usr2_upgrade_brings_its_own_dirty_arbiter(server, tmp_path):
    s = start(server, "sync", "-p", "app.pid", "--dirty-workers", "1", workers=1)
    assert execute(s, "incr")["result"]["n"] == 1
    old_arbiter = dirty_state(s)["pid"]
    pidfile = str(tmp_path / "app.pid")
    s.signal(signal.SIGUSR2)
    new = wait_for(lambda: read_pid(pidfile + ".2"), what="the new master's pid file")
    try:
        # The new master's children: its HTTP worker and its dirty arbiter.
        wait_for(lambda: len(children(new)) == 2, what="the new master's worker and dirty arbiter")
        s.signal(signal.SIGWINCH)
        wait_for(lambda: children(s.pid) == [old_arbiter, new] or children(s.pid) == [new], what="old workers gone")
        s.signal(signal.SIGTERM)
        assert s.wait_exit() == 0
        # Only the new master's HTTP worker is left: its calls reach its
        # own dirty arbiter (a fresh one: the count starts again).
        assert execute(s, "incr")["result"]["n"] == 1
        wait_for(lambda: not pid_alive(old_arbiter), what="the old dirty arbiter gone")
    finally:
        stop_pid(new)


def test_two_servers_of_one_name_keep_their_dirty_arbiters(server, tmp_path):
    a = start(server, "sync", "-n", "same", "--dirty-workers", "1")
    b = start(server, "sync", "-n", "same", "--dirty-workers", "1", cwd=str(tmp_path / "b"))
    # b's dirty arbiter found a's in the pid file: a live master's, left alone.
    assert execute(a, "incr") == {"result": {"n": 1, "pid": dirty_pids(a)[0]}, "worker": a.booted_workers()[0]}
    assert execute(b, "incr")["result"]["n"] == 1
    assert dirty_state(a)["arbiter_restarts"] == 0
    assert "names another server's dirty arbiter (pid: %d)" % dirty_state(a)["pid"] in b.log()


@pytest.mark.parametrize("kind", ["gevent", "asgi", "tornado"])
def test_a_waiting_call_does_not_block_a_single_event_loop_worker(server, kind):
    if kind != "asgi":
        pytest.importorskip(kind)
    s = start(server, kind, "--dirty-workers", "2")
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(execute(s, "sleep", 1.5))) for _ in range(2)]
    began = time.monotonic()
    for t in threads:
        t.start()
    wait_for(lambda: sum(w["in_flight"] for w in dirty_state(s)["workers"]) == 2 or None, what="both calls running")
    # One HTTP worker, two calls in flight: it still answers.
    status, _, body = s.request("GET", "/ping", timeout=5)
    assert (status, body) == (200, b"pong")
    for t in threads:
        t.join(20)
    assert [a["result"] for a in answers] == ["slept 1.5"] * 2
    assert time.monotonic() - began < 2.9


def test_hup_turns_the_dirty_arbiter_on_and_off(server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("")
    s = server("-k", "sync", "-c", "conf.py", "--control-socket", "ctl.sock", "dirty_web:app")
    assert dirty_state(s)["enabled"] is False
    assert execute(s, "incr")["error"] == "DirtyError"
    conf.write_text("dirty_apps = [%r]\ndirty_workers = 1\n" % APP)
    s.signal(signal.SIGHUP)
    wait_dirty(s, n=1)
    # The new HTTP workers were forked knowing where the dirty socket is.
    assert wait_for(lambda: execute(s, "incr").get("result"), what="a dirty call")["n"] == 1
    arbiter = dirty_state(s)["pid"]
    conf.write_text("")
    s.signal(signal.SIGHUP)
    wait_for(lambda: not pid_alive(arbiter), what="the dirty arbiter stopped")
    wait_for(lambda: dirty_state(s)["enabled"] is False or None, what="no dirty arbiter")
    assert wait_for(lambda: execute(s, "incr").get("error") == "DirtyError" or None, what="calls refused")


def test_a_caller_leaving_mid_stream_frees_the_dirty_worker(server):
    from ferrocorn.dirty import DirtyClient

    s = start(server, "sync", "--dirty-workers", "1")
    client = DirtyClient(dirty_socket(s), timeout=10)
    stream = client.stream(APP, "slow_stream", 100, 0.1)
    assert next(stream) == 0
    stream.close()
    client.close()
    # The one dirty thread was told: the 10-second stream stops at its next
    # chunk and the next call does not wait for it.
    began = time.monotonic()
    assert execute(s, "incr")["result"]["n"] == 1
    assert time.monotonic() - began < 2


def test_an_app_that_cannot_start_leaves_http_serving(server):
    s = server(
        "-k",
        "sync",
        "--control-socket",
        "ctl.sock",
        "--dirty-app",
        "dirty_apps:Broken",
        "--dirty-workers",
        "1",
        "dirty_web:app",
    )
    wait_for(lambda: s.log().count("Dirty worker failed to boot") >= 2 or None, what="boot retried")
    assert "RuntimeError: no model file" in s.log()
    status, _, body = s.request("GET", "/ping")
    assert (status, body) == (200, b"pong")
    answer = execute(s, "pid", app="dirty_apps:Broken")
    assert answer["error"] in ("DirtyError", "DirtyNoWorkersAvailableError"), answer


def test_gunicornc_and_ferrocornc_show_the_dirty_side(server):
    s = start(server, "sync", "--dirty-workers", "2", dirty_apps=(APP, "dirty_apps:Limited"))
    d = wait_dirty(s, n=2)
    ctl_path = os.path.join(s.cwd, "ctl.sock")
    theirs = ctl(ctl_path, "show", "dirty", tool="gunicornc").stdout
    assert "Dirty arbiter PID: %d" % d["pid"] in theirs
    for w in d["workers"]:
        assert str(w["pid"]) in theirs
    everything = ctl(ctl_path, "show", "all", tool="gunicornc").stdout
    assert "DIRTY WORKERS (2)" in everything
    ours = ctl(ctl_path, "show", "dirty").stdout
    assert "dirty_apps:Limited  workers 1/1" in ours and "%s  workers 2/all" % APP in ours
    top = ctl(ctl_path, "top", "--once").stdout
    assert "dirty arbiter %d" % d["pid"] in top


def hook_order(directory):
    """Per dirty worker, the hooks that named it, in order; and the first
    hook of all. dirty_post_fork (in the arbiter) and dirty_worker_init (in
    the new worker) run in two processes at once, in both servers: which
    reaches the log first is a race (Gunicorn's worker wins it under load),
    so those two are compared as a pair."""
    lines = [line.split() for line in (directory / "hooks.log").read_text().splitlines()]
    per_worker = {}
    for line in lines[1:]:
        per_worker.setdefault(line[1], []).append(line[0])
    return lines[0][0], sorted(sorted(hooks[:2]) + hooks[2:] for hooks in per_worker.values())


def inits(log):
    return log.read_text().count("dirty_worker_init") if log.exists() else 0


def test_the_dirty_hooks_fire_as_under_gunicorn(tmp_path):
    orders = []
    for program in ("ferrocorn", "gunicorn"):
        d = tmp_path / program
        d.mkdir()
        (d / "hooks.py").write_text(HOOKS)
        args = ["-c", "hooks.py", "-n", "hooks-%s" % program, "--dirty-workers", "2"]
        args += ["--dirty-app", "gunicorn_dirty_apps:Model", "--no-control-socket", "dirty_web:app"]
        s = Server(args, d, env={"DIRTY_API": "gunicorn"}, program=program)
        try:
            wait_for(lambda log=d / "hooks.log": inits(log) == 2 or None, what="both dirty_worker_init calls")
        finally:
            s.stop()
        orders.append(hook_order(d))
    assert (
        orders[0]
        == orders[1]
        == (
            "on_dirty_starting",
            [["dirty_post_fork", "dirty_worker_init", "dirty_worker_exit"]] * 2,
        )
    )


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def test_a_flood_of_large_requests_holds_bounded_memory_in_the_arbiter(server):
    from ferrocorn.dirty import DirtyClient

    s = start(server, "sync", "--dirty-workers", "1")
    path, arbiter = dirty_socket(s), dirty_state(s)["pid"]
    # The only dirty thread is busy while 64 callers send 8 MiB each: 512
    # MiB of requests for an arbiter that holds 256 MiB of them at most.
    # Longer than the 30 s a caller may pause inside a message: those the
    # arbiter stopped reading are not taken for stalled clients.
    busy = threading.Thread(target=lambda: DirtyClient(path, timeout=60).execute(APP, "sleep", 33))
    busy.start()
    wait_for(lambda: any(w["in_flight"] for w in dirty_state(s)["workers"]) or None, what="the thread busy")
    sizes, peak = [], [0]
    payload = b"x" * (8 << 20)

    def one():
        sizes.append(DirtyClient(path, timeout=120).execute(APP, "size", payload))

    callers = [threading.Thread(target=one) for _ in range(64)]
    for t in callers:
        t.start()
    while any(t.is_alive() for t in callers):
        peak[0] = max(peak[0], rss_mib(arbiter))
        time.sleep(0.05)
    busy.join(30)
    assert sizes == [8 << 20] * 64
    assert peak[0] < 256 + 96, peak
    assert "stopped: dropped" not in s.log()


def test_a_hung_call_whose_caller_left_still_times_out(server):
    from ferrocorn.dirty import DirtyClient, DirtyTimeoutError

    s = start(server, "sync", "--dirty-workers", "1", "--dirty-timeout", "3")
    before = dirty_pids(s)
    # The caller gives up first (its own 1 s timeout) and goes away.
    with pytest.raises(DirtyTimeoutError):
        DirtyClient(dirty_socket(s), timeout=1).execute(APP, "sleep", 600)
    # The stuck thread would hold the only dirty thread for ten minutes:
    # dirty_timeout still applies, and the worker is replaced.
    wait_dirty(s, n=1, exclude=before, timeout=15)
    assert execute(s, "incr")["result"]["n"] == 1
    assert "whose caller left, after 3s" in s.log()


def test_a_caller_that_stops_reading_is_dropped_not_the_worker(server):
    from ferrocorn.dirty import protocol

    s = start(server, "sync", "--dirty-workers", "1", "--dirty-timeout", "2")
    before = dirty_pids(s)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(dirty_socket(s))
    # 32 MiB asked for, none of it read.
    c.sendall(protocol.call_frame(1, APP, "big", (32 << 20,), {}))
    wait_for(lambda: "Dirty client stopped reading its answer for 2s: dropped" in s.log() or None, timeout=15)
    c.close()
    assert execute(s, "incr")["result"]["n"] == 1
    assert dirty_pids(s) == before
