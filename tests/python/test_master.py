"""The master: signals, worker supervision, liveness, recycling, boot errors."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from helpers import (
    WORKER_KINDS,
    accepted_connections,
    cmdline,
    control,
    listening_inodes,
    metrics_args,
    pid_alive,
    read_pid,
    refusal,
    run_ferrocorn,
    socket_inodes,
    start_kind,
    wait_for,
    wait_metric,
)


def busy_in_request(s):
    """Whether a worker of `s` holds a client's connection: the request
    (sent whole at once) is in the app."""
    return any(accepted_connections(pid, s.port) for pid in s.workers())


def test_workers_are_forked_and_titled(server):
    s = server("-w", "3", "-n", "titled", "basic:hello")
    workers = s.wait_workers(3)
    assert cmdline(s.pid).startswith("ferrocorn: master [titled]")
    for pid in workers:
        assert cmdline(pid).startswith("ferrocorn: worker [titled]")
    log = s.log()
    assert "Starting ferrocorn" in log and "Using worker: sync" in log
    assert "Listening at: http://127.0.0.1:%d (%d)" % (s.port, s.pid) in log
    for pid in workers:
        assert "Booting worker with pid: %d" % pid in log


def test_default_title_uses_the_app_module(server):
    s = server("basic:hello")
    s.wait_workers(1)
    assert cmdline(s.pid).startswith("ferrocorn: master [basic:hello]")


def test_ttin_and_ttou(server):
    s = server("-w", "2", "basic:hello")
    s.wait_workers(2)
    s.signal(signal.SIGTTIN)
    s.wait_workers(3)
    s.signal(signal.SIGTTOU)
    s.wait_workers(2)
    s.signal(signal.SIGTTOU)
    last = s.wait_workers(1)
    s.signal(signal.SIGTTOU)  # never below one
    wait_for(lambda: s.log().count("Handling signal: ttou") == 3, what="the third TTOU")
    # the master's loop answers the control socket after the signal's turn
    assert control(s.default_control_socket, "show stats")["workers_target"] == 1
    assert s.workers() == last
    assert s.request()[0] == 200


def test_killed_worker_is_replaced(server):
    s = server("-w", "2", "basic:hello")
    first = s.wait_workers(2)
    os.kill(first[0], signal.SIGKILL)
    after = s.wait_workers(2, exclude=[first[0]])
    assert first[1] in after
    assert "Worker (pid:%d) was sent SIGKILL!" % first[0] in s.log()
    assert s.request()[0] == 200


def test_hup_starts_a_new_generation(server):
    s = server("-w", "2", "basic:hello")
    old = s.wait_workers(2)
    s.signal(signal.SIGHUP)
    new = wait_for(
        lambda: (lambda w: w if len(w) == 2 and not set(w) & set(old) else None)(s.workers()),
        timeout=15,
        what="a new generation",
    )
    assert "Hang up: Master" in s.log()
    assert not set(new) & set(old)
    assert s.request()[0] == 200


def test_hup_rereads_the_config_file(server, tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 1\n")
    s = server("basic:hello", cwd=str(tmp_path))
    s.wait_workers(1)
    conf.write_text("workers = 3\n")
    s.signal(signal.SIGHUP)
    s.wait_workers(3)


def test_term_is_graceful(server):
    s = server("--graceful-timeout", "10", "basic:sleepy")
    s.wait_workers(1)
    result = {}

    def slow():
        result["r"] = s.request(path="/?1.5", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: busy_in_request(s), what="the request in the worker")
    s.signal(signal.SIGTERM)
    t.join(20)
    assert result["r"][0] == 200 and result["r"][2] == b"slept 1.5\n"
    assert s.wait_exit() == 0
    assert "Shutting down: Master" in s.log()


def test_int_is_a_fast_stop(server):
    """INT stops at once: the request in flight is cut short, and answered
    500 as Gunicorn answers it (the worker's exit interrupts the app), where
    a graceful stop (TERM, --graceful-timeout 30 by default) would wait."""
    s = server("basic:sleepy")
    s.wait_workers(1)
    outcome = []

    def slow():
        try:
            outcome.append(s.request(path="/?60", timeout=60))
        except Exception as e:
            outcome.append(e)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: busy_in_request(s), what="the request in the worker")
    s.signal(signal.SIGINT)
    assert s.wait_exit(timeout=20) == 0
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], tuple), outcome
    status, headers, _ = outcome[0]
    assert status == 500 and headers["connection"] == "close"


def test_graceful_timeout_kills_stragglers(server):
    s = server("--graceful-timeout", "1", "basic:sleepy")
    w = s.wait_workers(1)
    t = threading.Thread(target=lambda: s.raw(b"GET /?120 HTTP/1.0\r\n\r\n", timeout=120, until_close=True))
    t.daemon = True
    t.start()
    wait_for(lambda: busy_in_request(s), what="the request in the worker")
    s.signal(signal.SIGTERM)
    # long before the request would end
    s.wait_exit(timeout=30)
    assert not pid_alive(w[0])


def test_hanging_request_is_killed_by_the_timeout(server):
    s = server("-t", "2", "basic:sleepy")
    first = s.wait_workers(1)
    t = threading.Thread(target=lambda: s.raw(b"GET /?60 HTTP/1.0\r\n\r\n", timeout=60))
    t.daemon = True
    t.start()
    wait_for(lambda: "WORKER TIMEOUT (pid:%d)" % first[0] in s.log(), timeout=15, what="the timeout")
    s.wait_workers(1, exclude=first)
    assert s.request()[0] == 200


def test_idle_workers_beat_and_survive_the_timeout(server):
    s = server("-t", "1", "basic:hello")
    first = s.wait_workers(1)
    time.sleep(3)
    assert s.workers() == first
    assert "WORKER TIMEOUT" not in s.log()


@pytest.mark.parametrize("kind", sorted(WORKER_KINDS))
def test_max_requests_recycles_the_worker(server, kind):
    """--max-requests 3: the worker serves three requests, then a new one
    takes its place; the master counts the restart as max_requests."""
    margs, port = metrics_args()
    s = start_kind(server, kind, "--max-requests", "3", *margs)
    first = s.wait_workers(1)
    pids = [int(s.request(path="/pid")[2]) for _ in range(3)]
    assert pids == first * 3
    (second,) = s.wait_workers(1, exclude=first)
    assert int(s.request(path="/pid")[2]) == second
    assert "Autorestarting worker after current request." in s.log()
    # the new worker's request shows once it reports it
    wait_metric(port, 'ferrocorn_requests_total{code="2xx"}', lambda v: v == 4)
    page = wait_metric(port, 'ferrocorn_worker_restarts_total{cause="max_requests"}', lambda v: v == 1)
    assert page['ferrocorn_worker_restarts_total{cause="crash"}'] == 0


def test_max_requests_jitter(server):
    """--max-requests 2 --max-requests-jitter 3: each worker's limit is
    2 plus its own random 0..3, so the workers, one after another, serve
    between 2 and 5 requests each, and not all the same number."""
    s = server("--max-requests", "2", "--max-requests-jitter", "3", "basic:pid_app")
    served = []  # (pid, requests) for each worker, in order
    for _ in range(45):
        pid = int(s.request()[2])
        if served and served[-1][0] == pid:
            served[-1][1] += 1
        else:
            assert pid not in [p for p, _ in served], "a retired worker served again"
            served.append([pid, 1])
    counts = [n for _, n in served[:-1]]  # the last worker may not be done
    assert len(counts) >= 8, served
    assert all(2 <= n <= 5 for n in counts), served
    # Eight draws of 0..3 all alike: 4 ** -7, about one run in 16,000.
    assert len(set(counts)) > 1, served


def test_boot_failure_exits_with_the_reason(server, tmp_path):
    r = run_ferrocorn(["-b", "127.0.0.1:0", "broken_import:app"], tmp_path)
    assert r.returncode == 3
    assert "cannot be imported on purpose" in r.stderr
    assert "Traceback" in r.stderr
    assert "Reason: Worker failed to boot." in r.stderr
    r = run_ferrocorn(["-b", "127.0.0.1:0", "basic:nope"], tmp_path)
    assert r.returncode == 4
    assert "Failed to find attribute 'nope' in 'basic'." in r.stderr
    assert "Reason: App failed to load." in r.stderr
    r = run_ferrocorn(["-b", "127.0.0.1:0", "basic:not_callable"], tmp_path)
    assert r.returncode == 4 and "Application object must be callable." in r.stderr


def test_preload_loads_once_in_the_master(server, tmp_path):
    marker = tmp_path / "imports.txt"
    s = server("--preload", "-w", "2", "counting:app", env={"IMPORT_MARKER": str(marker)})
    s.wait_workers(2)
    assert s.request()[0] == 200
    assert marker.read_text().split() == [str(s.pid)]
    r = run_ferrocorn(["--preload", "-b", "127.0.0.1:0", "broken_import:app"], tmp_path)
    assert r.returncode == 1 and "cannot be imported on purpose" in r.stderr


def test_without_preload_each_worker_imports(server, tmp_path):
    marker = tmp_path / "imports.txt"
    s = server("-w", "2", "counting:app", env={"IMPORT_MARKER": str(marker)})
    workers = s.wait_workers(2)
    wait_for(lambda: len(marker.read_text().split()) == 2 if marker.exists() else False, what="two imports")
    assert sorted(int(p) for p in marker.read_text().split()) == workers


def test_pidfile(server, tmp_path):
    pidfile = tmp_path / "app.pid"
    s = server("-p", str(pidfile), "basic:hello")
    assert int(pidfile.read_text()) == s.pid
    assert oct(os.stat(pidfile).st_mode & 0o777) == "0o644"
    s.stop()
    assert not pidfile.exists()


def refused_as_gunicorn_refuses(server, *args):
    """Starts ferrocorn and then Gunicorn 27 on the same arguments; both
    must refuse to start, with the same exit status and reason. Returns the
    reason. (A server that starts anyway is stopped by the fixture.)"""
    runs = {}
    for program in ("ferrocorn", "gunicorn"):
        s = server(*args, "basic:hello", wait=False, program=program)
        try:
            runs[program] = (s.wait_exit(timeout=20), refusal(s.log()))
        except subprocess.TimeoutExpired:
            raise AssertionError("%s started:\n%s" % (program, s.log())) from None
    assert runs["gunicorn"][0] == 1, runs
    assert runs["ferrocorn"] == runs["gunicorn"]
    return runs["ferrocorn"][1]


def test_pidfile_of_a_live_server_is_refused(server, tmp_path):
    pidfile = str(tmp_path / "app.pid")
    first = server("-p", pidfile, "basic:hello")
    reason = refused_as_gunicorn_refuses(server, "-p", pidfile)
    assert reason == "Already running on PID %d (or pid file '%s' is stale)" % (first.pid, pidfile)
    # the live server keeps its pid file and serves
    assert read_pid(pidfile) == first.pid
    assert first.request()[0] == 200


def test_pidfile_naming_another_live_process_is_refused(server, tmp_path):
    pidfile = tmp_path / "app.pid"
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text("%d\n" % other.pid)
        reason = refused_as_gunicorn_refuses(server, "-p", str(pidfile))
        assert reason == "Already running on PID %d (or pid file '%s' is stale)" % (other.pid, pidfile)
        assert pidfile.read_text() == "%d\n" % other.pid
    finally:
        other.kill()
        other.wait()


def test_pidfile_in_a_missing_directory_is_refused(server, tmp_path):
    pidfile = tmp_path / "missing" / "app.pid"
    reason = refused_as_gunicorn_refuses(server, "-p", str(pidfile))
    assert reason == "%s doesn't exist. Can't create pidfile." % pidfile.parent
    assert not pidfile.parent.exists()


@pytest.mark.parametrize("program", ["ferrocorn", "gunicorn"])
def test_stale_pidfile_is_replaced(server, tmp_path, program):
    """A pid file naming a process that is gone is taken over (Gunicorn's
    rule, checked on Gunicorn too)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile = tmp_path / "app.pid"
    pidfile.write_text("%d\n" % dead.pid)
    s = server("-p", str(pidfile), "basic:hello", program=program)
    assert read_pid(str(pidfile)) == s.pid
    assert s.request()[0] == 200


def test_fd_bind(server):
    """-b fd://N serves on a socket the caller bound and passed down."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    try:
        s = server("-b", "fd://%d" % sock.fileno(), "basic:hello", port=port, bind=False, pass_fds=(sock.fileno(),))
    finally:
        sock.close()  # the server's copy is the only one left
    assert s.request()[2] == b"Hello, world!\n"
    assert "Listening at: http://127.0.0.1:%d (%d)" % (port, s.pid) in s.log()


def test_error_logfile_and_usr1_reopen(server, tmp_path):
    log = tmp_path / "error.log"
    s = server("--error-logfile", str(log), "--access-logfile", str(tmp_path / "access.log"), "basic:hello")
    s.wait_workers(1)
    assert "Booting worker" in log.read_text()
    assert s.request()[0] == 200
    os.rename(log, tmp_path / "error.log.1")
    os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
    s.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists(), what="the error log to be reopened")
    wait_for(lambda: (tmp_path / "access.log").exists(), what="the access log to be reopened")
    assert s.request()[0] == 200
    wait_for(lambda: "GET / HTTP/1.1" in (tmp_path / "access.log").read_text(), what="an access line")


def test_access_log_format(server, tmp_path):
    s = server(
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" %({x-req}i)s %({content-type}o)s %(m)s %(U)s %(q)s',
        "basic:hello",
    )
    s.request(path="/p?q=1", headers={"User-Agent": "ua/1", "X-Req": "abc"})
    line = wait_for(lambda: s.out().strip(), what="an access line")
    assert line == '127.0.0.1 "GET /p?q=1 HTTP/1.1" 200 14 "ua/1" abc text/plain GET /p q=1'


def test_quit_is_a_fast_stop(server):
    s = server("-w", "2", "basic:hello")
    s.wait_workers(2)
    s.signal(signal.SIGQUIT)
    assert s.wait_exit(timeout=10) == 0
    assert "Handling signal: quit" in s.log()


def test_reuse_port_workers_bind_their_own_sockets(server):
    """--reuse-port: each worker listens on a socket of its own (the
    master holds none), and with SO_REUSEPORT, which lets another socket
    bind the same port (only when every socket there has it set)."""
    s = server("--reuse-port", "-w", "2", "basic:pid_app")
    workers = s.wait_workers(2)
    wait_for(lambda: len(listening_inodes(s.port)) == 2, what="two listening sockets")
    listening = listening_inodes(s.port)
    held = {pid: socket_inodes(pid) & listening for pid in workers}
    assert [len(inodes) for inodes in held.values()] == [1, 1], held
    assert held[workers[0]] != held[workers[1]]
    assert not socket_inodes(s.pid) & listening
    probe = socket.socket()
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind(("127.0.0.1", s.port))
    finally:
        probe.close()
    # the kernel spreads fresh connections over both
    assert {int(s.request()[2]) for _ in range(40)} == set(workers)


def test_chdir_and_pythonpath(server, tmp_path):
    appdir = tmp_path / "project"
    (appdir / "lib").mkdir(parents=True)
    (appdir / "here_app.py").write_text(
        "import os, helper\n"
        "def app(environ, start_response):\n"
        "    body = (os.getcwd() + ' ' + helper.NAME).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )
    (appdir / "lib" / "helper.py").write_text("NAME = 'from-pythonpath'\n")
    s = server("--chdir", str(appdir), "--pythonpath", str(appdir / "lib"), "here_app:app")
    assert s.request()[2].decode() == "%s from-pythonpath" % appdir


def test_log_level_debug(server):
    s = server("--log-level", "debug", "basic:hello")
    s.raw(b"", shut_write=True)  # a connection closed without a request
    wait_for(lambda: "Closing connection." in s.log(), what="a debug line")
    quiet = server("--log-level", "warning", "basic:hello")
    quiet.wait_workers(1)
    assert "Booting worker" not in quiet.log()


def test_hup_reloads_application_code(server, tmp_path):
    app = tmp_path / "versioned.py"
    app.write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'v1']\n"
    )
    s = server("-w", "2", "--pythonpath", str(tmp_path), "versioned:app")
    old = s.wait_workers(2)
    assert s.request()[2] == b"v1"
    app.write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '9')])\n"
        "    return [b'version 2']\n"
    )
    s.signal(signal.SIGHUP)
    wait_for(lambda: (lambda w: len(w) == 2 and not set(w) & set(old))(s.workers()), what="new workers")
    assert s.request()[2] == b"version 2"


def test_timeout_zero_disables_the_watchdog(server):
    s = server("-t", "0", "basic:sleepy")
    first = s.wait_workers(1)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", s.request(path="/?3", timeout=20)))
    t.start()
    t.join(20)
    assert result["r"][2] == b"slept 3.0\n"
    assert s.workers() == first and "WORKER TIMEOUT" not in s.log()


def test_a_started_server_has_a_booted_worker(server, tmp_path):
    """The `server` fixture returns once a worker has loaded the app, not
    as soon as the master listens: tests that signal or time a server right
    after starting it must not race its boot."""
    marker = tmp_path / "booted"
    (tmp_path / "slow_boot.py").write_text(
        "import os, time\n"
        "time.sleep(1.5)\n"
        "from basic import pid_app as app\n"
        "open(os.environ['BOOT_MARKER'], 'w').write(str(os.getpid()))\n"
    )
    s = server("--pythonpath", str(tmp_path), "slow_boot:app", env={"BOOT_MARKER": str(marker)})
    assert marker.exists()
    assert s.booted_workers() == s.workers() == [int(marker.read_text())]
