"""Gunicorn's server hooks from a real-world style gunicorn.conf.py: every
hook fires at its moment, in Gunicorn's order, with the objects hook code
uses. The expected order was taken from Gunicorn 27.0.1 running the same
config and signals."""

import json
import os
import signal

from helpers import free_port, run_ferrocorn, wait_for

HOOKS_CONF = r"""
import json, os

OUT = os.environ["HOOK_OUT"]
bind = "127.0.0.1:%(port)d"
workers = 1
accesslog = "-"


def rec(*args):
    with open(OUT, "a") as f:
        f.write(json.dumps(args, default=repr) + "\n")


def on_starting(server):
    rec("on_starting", os.getpid(), server.pid, server.num_workers, sorted(server.WORKERS),
        server.cfg.workers, server.cfg.bind, server.cfg.proc_name, server.cfg.worker_class_str)
    server.log.info("hook says hello from on_starting")

def on_reload(server):
    rec("on_reload", os.getpid())

def when_ready(server):
    rec("when_ready", os.getpid(), server.pid)

def pre_fork(server, worker):
    rec("pre_fork", os.getpid(), worker.pid, worker.age, worker.ppid)

def post_fork(server, worker):
    rec("post_fork", os.getpid(), worker.pid, worker.age, worker.ppid, worker.alive, worker.nr,
        worker.cfg.timeout)
    server.log.info("Worker spawned (pid: %%s)", worker.pid)

def post_worker_init(worker):
    rec("post_worker_init", os.getpid(), worker.pid, worker.booted, callable(worker.wsgi))

def worker_int(worker):
    rec("worker_int", os.getpid(), worker.pid)

def worker_abort(worker):
    rec("worker_abort", os.getpid(), worker.pid)

def pre_exec(server):
    rec("pre_exec")

def pre_request(worker, req):
    rec("pre_request", os.getpid(), worker.nr, req.method, req.path, req.query, req.uri,
        list(req.version), [list(h) for h in req.headers])

def post_request(worker, req, environ, resp):
    rec("post_request", os.getpid(), worker.nr, req.path, environ["PATH_INFO"], resp.status,
        resp.status_code, [list(h) for h in resp.headers], resp.sent)

def child_exit(server, worker):
    rec("child_exit", os.getpid(), worker.pid, sorted(server.WORKERS))

def worker_exit(server, worker):
    rec("worker_exit", os.getpid(), worker.pid, worker.alive)

def nworkers_changed(server, new_value, old_value):
    rec("nworkers_changed", os.getpid(), new_value, old_value)

def on_exit(server):
    rec("on_exit", os.getpid())
"""


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def names(events):
    return [e[0] for e in events]


def test_every_hook_fires_in_order_with_its_arguments(server, tmp_path):
    out = str(tmp_path / "hooks.jsonl")

    port = free_port()
    (tmp_path / "gunicorn.conf.py").write_text(HOOKS_CONF % {"port": port})
    s = server("basic:hello", env={"HOOK_OUT": out}, port=port, bind=False)
    (w1,) = s.wait_workers(1)
    master = s.pid
    wait_for(lambda: "post_worker_init" in names(read_events(out)), what="post_worker_init")

    status, _, _body = s.request(path="/x?y=1", headers={"X-Foo": "bar"})
    assert status == 200
    wait_for(lambda: "post_request" in names(read_events(out)), what="post_request")

    s.signal(signal.SIGTTIN)
    w1, w2 = s.wait_workers(2)
    wait_for(lambda: names(read_events(out)).count("post_worker_init") == 2, what="second worker")
    s.signal(signal.SIGHUP)
    (w3,) = s.wait_workers(1, exclude=[w1, w2])
    wait_for(lambda: names(read_events(out)).count("child_exit") == 2, what="old generation reaped")
    wait_for(lambda: names(read_events(out)).count("post_worker_init") == 3, what="third worker")

    os.kill(w3, signal.SIGQUIT)  # worker_int, then it exits and is replaced
    (w4,) = s.wait_workers(1, exclude=[w3])
    wait_for(lambda: names(read_events(out)).count("post_worker_init") == 4, what="fourth worker")
    os.kill(w4, signal.SIGABRT)  # worker_abort
    (w5,) = s.wait_workers(1, exclude=[w4])
    wait_for(lambda: names(read_events(out)).count("post_worker_init") == 5, what="fifth worker")
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0

    events = read_events(out)
    first_worker = [
        "nworkers_changed",
        "on_starting",
        "when_ready",
        "pre_fork",
        "post_fork",
        "post_worker_init",
        "pre_request",
        "post_request",
        "nworkers_changed",
        "pre_fork",
        "post_fork",
        "post_worker_init",  # TTIN
        "nworkers_changed",
        "on_reload",
        "pre_fork",
        "post_fork",
        "post_worker_init",  # HUP
    ]
    # Across processes only the master's order is fixed; the worker events
    # are each checked against their own process.
    master_seq = [e[0] for e in events if e[1] == master]
    assert master_seq == [
        "nworkers_changed",
        "on_starting",
        "when_ready",
        "pre_fork",
        "nworkers_changed",
        "pre_fork",
        "nworkers_changed",
        "on_reload",
        "pre_fork",
        "child_exit",
        "child_exit",
        "child_exit",
        "pre_fork",
        "child_exit",
        "pre_fork",
        "child_exit",
        "on_exit",
    ], master_seq
    assert set(names(events)) >= set(first_worker) | {
        "worker_int",
        "worker_abort",
        "worker_exit",
        "child_exit",
        "on_exit",
    }
    by = {}
    for e in events:
        by.setdefault(e[0], []).append(e)

    assert by["nworkers_changed"][0] == ["nworkers_changed", master, 1, None]
    assert by["nworkers_changed"][1] == ["nworkers_changed", master, 2, 1]
    assert by["nworkers_changed"][2] == ["nworkers_changed", master, 1, 2]
    assert by["on_starting"][0] == [
        "on_starting",
        master,
        master,
        1,
        [],
        1,
        ["127.0.0.1:%d" % port],
        "basic:hello",
        "sync",
    ]
    assert by["when_ready"][0] == ["when_ready", master, master]
    assert by["pre_fork"][0] == ["pre_fork", master, "[booting]", 1, master]
    first = by["post_fork"][0]
    assert first[1] == first[2] and first[3:] == [1, master, True, 0, 30]
    assert by["post_worker_init"][0][1:] == [first[1], first[1], False, True]
    pre = by["pre_request"][0]
    assert pre[2:8] == [0, "GET", "/x", "y=1", "/x?y=1", [1, 1]]
    assert ["X-FOO", "bar"] in pre[8]
    post = by["post_request"][0]
    assert post[2:] == [1, "/x", "/x", "200 OK", 200, [["Content-Type", "text/plain"], ["Content-Length", "14"]], 14]
    assert ["worker_int", w3, w3] in events
    assert ["worker_abort", w4, w4] in events
    # Each worker says goodbye in its own process; the master sees each go.
    for pid in (w1, w2, w3, w4, w5):
        assert ["child_exit", master, pid] == next(e for e in by["child_exit"] if e[2] == pid)[:3]
    assert ["worker_exit", w5, w5, False] in events
    assert by["on_exit"] == [["on_exit", master]]
    # server.log writes to the error log in Gunicorn's format.
    log = s.log()
    assert "[%d] [INFO] hook says hello from on_starting" % master in log
    assert "[INFO] Worker spawned (pid: %d)" % w1 in log


def test_hook_exceptions_are_logged_and_the_server_goes_on(server, tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(
        "def on_starting(server):\n    raise RuntimeError('bad on_starting')\n"
        "def post_request(worker, req):\n    raise ValueError('bad post_request')\n"
        "def pre_request(worker, req):\n"
        "    if req.path == '/refuse':\n        raise KeyError('bad pre_request')\n"
    )
    s = server("basic:hello")
    assert s.request()[0] == 200
    status, _, _ = s.request(path="/refuse")
    assert status == 500
    assert s.request()[0] == 200
    log = s.log()
    assert "Exception in on_starting hook" in log and "RuntimeError: bad on_starting" in log
    assert "Exception in post_request hook" in log and "ValueError: bad post_request" in log
    # an exception in pre_request fails the request like an app error, as in Gunicorn
    assert "Error handling request GET /refuse" in log and "KeyError: 'bad pre_request'" in log


def test_sys_exit_in_a_master_hook_stops_the_master(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("import sys\ndef on_starting(server):\n    sys.exit(3)\n")
    r = run_ferrocorn(["-b", "127.0.0.1:0", "basic:hello"], tmp_path)
    assert r.returncode == 3
    assert "on_starting hook called sys.exit(3)" in r.stderr


def test_hook_arity_is_checked_at_start(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("def post_fork(server):\n    pass\n")
    r = run_ferrocorn(["basic:hello"], tmp_path)
    assert r.returncode == 1
    assert "Invalid value for post_fork" in r.stderr and "Value must have an arity of: 2" in r.stderr
    (tmp_path / "gunicorn.conf.py").write_text("def post_request(a, b, c, d, e):\n    pass\n")
    r = run_ferrocorn(["basic:hello"], tmp_path)
    assert r.returncode == 1 and "Value must have an arity of: 4" in r.stderr


def test_post_request_with_three_arguments_and_worker_alive(server, tmp_path):
    out = tmp_path / "seen"
    (tmp_path / "gunicorn.conf.py").write_text(
        "def post_request(worker, req, environ):\n"
        "    open(%r, 'a').write(environ['PATH_INFO'] + '\\n')\n"
        "    if req.path == '/last':\n        worker.alive = False\n" % str(out)
    )
    s = server("basic:hello")
    (w1,) = s.wait_workers(1)
    assert s.request(path="/one")[0] == 200
    assert s.request(path="/last")[0] == 200
    # the worker stops after that request and the master replaces it
    s.wait_workers(1, exclude=[w1])
    assert out.read_text() == "/one\n/last\n"


def test_default_pre_request_logs_at_debug(server):
    s = server("--log-level", "debug", "basic:hello")
    assert s.request(path="/dbg?q=1")[0] == 200
    wait_for(lambda: "[DEBUG] GET /dbg" in s.log(), what="the debug line")


def test_request_and_worker_hooks_in_the_gthread_worker(server, tmp_path):
    out = str(tmp_path / "gthread.jsonl")
    (tmp_path / "gunicorn.conf.py").write_text(
        "import json\n"
        "def rec(*a):\n"
        "    with open(%r, 'a') as f:\n"
        "        f.write(json.dumps(a) + '\\n')\n"
        "def post_fork(server, worker):\n    rec('post_fork', worker.pid)\n"
        "def post_worker_init(worker):\n    rec('post_worker_init', worker.pid)\n"
        "def pre_request(worker, req):\n    rec('pre_request', req.method, req.path)\n"
        "def post_request(worker, req, environ, resp):\n    rec('post_request', req.path, resp.status_code)\n"
        "def worker_exit(server, worker):\n    rec('worker_exit', worker.pid)\n" % out
    )
    s = server("-k", "gthread", "--threads", "4", "basic:hello")
    (worker,) = s.wait_workers(1)
    for i in range(5):
        assert s.request(path="/g%d" % i)[0] == 200
    wait_for(lambda: len([e for e in read_events(out) if e[0] == "post_request"]) == 5, what="5 post_request")
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    events = read_events(out)
    assert events[:2] == [["post_fork", worker], ["post_worker_init", worker]]
    assert sorted(e[2] for e in events if e[0] == "pre_request") == ["/g%d" % i for i in range(5)]
    assert sorted(e[1:3] for e in events if e[0] == "post_request") == [["/g%d" % i, 200] for i in range(5)]
    assert events[-1] == ["worker_exit", worker]


def test_listeners_and_worker_sockets(server, tmp_path):
    out = tmp_path / "listeners.log"
    conf = tmp_path / "conf.py"
    conf.write_text(
        "def when_ready(server):\n"
        "    open(%r, 'a').write('ready %%s %%s\\n' %% ([str(l) for l in server.LISTENERS], server.LISTENERS[0].getsockname()))\n"
        "def post_fork(server, worker):\n"
        "    s = worker.sockets[0]\n"
        "    open(%r, 'a').write('fork %%s %%s\\n' %% (str(s), s.fileno() == server.LISTENERS[0].fileno()))\n"
        % (str(out), str(out))
    )
    s = server("-c", str(conf), "basic:hello")
    s.wait_workers(1)
    lines = wait_for(lambda: (lambda t: t if len(t) == 2 else None)(out.read_text().splitlines()), what="two lines")
    assert lines[0] == "ready ['http://127.0.0.1:%d'] ('127.0.0.1', %d)" % (s.port, s.port)
    assert lines[1] == "fork http://127.0.0.1:%d True" % s.port
    assert s.request()[0] == 200
