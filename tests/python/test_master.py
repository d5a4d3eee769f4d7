"""The master: signals, worker supervision, liveness, recycling, boot errors."""

import os
import signal
import threading
import time

from helpers import cmdline, pid_alive, run_ferrocorn, wait_for


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
    s.wait_workers(1)
    s.signal(signal.SIGTTOU)  # never below one
    time.sleep(1.5)
    assert len(s.workers()) == 1
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
    time.sleep(0.5)
    s.signal(signal.SIGTERM)
    t.join(20)
    assert result["r"][0] == 200 and result["r"][2] == b"slept 1.5\n"
    assert s.wait_exit() == 0
    assert "Shutting down: Master" in s.log()


def test_int_is_a_fast_stop(server):
    s = server("basic:sleepy")
    s.wait_workers(1)
    errors = []

    def slow():
        try:
            s.request(path="/?5", timeout=20)
        except Exception as e:  # the request is cut short
            errors.append(e)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    started = time.time()
    s.signal(signal.SIGINT)
    assert s.wait_exit(timeout=10) == 0
    assert time.time() - started < 4
    t.join(10)


def test_graceful_timeout_kills_stragglers(server):
    s = server("--graceful-timeout", "1", "basic:sleepy")
    w = s.wait_workers(1)
    t = threading.Thread(target=lambda: s.raw(b"GET /?30 HTTP/1.0\r\n\r\n", timeout=30))
    t.daemon = True
    t.start()
    time.sleep(0.5)
    started = time.time()
    s.signal(signal.SIGTERM)
    s.wait_exit(timeout=15)
    assert time.time() - started < 6
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


def test_max_requests_recycles(server):
    s = server("--max-requests", "3", "basic:pid_app")
    pids = [int(s.request()[2]) for _ in range(3)]
    assert len(set(pids)) == 1
    assert "Autorestarting worker after current request." in s.log()
    s.wait_workers(1, exclude=[pids[0]])
    assert int(s.request()[2]) != pids[0]


def test_max_requests_jitter(server):
    s = server("--max-requests", "2", "--max-requests-jitter", "3", "basic:pid_app")
    counts = {}
    for _ in range(20):
        pid = int(s.request()[2])
        counts[pid] = counts.get(pid, 0) + 1
    assert all(2 <= c <= 5 for c in list(counts.values())[:-1])


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
    s.stop()
    assert not pidfile.exists()


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
    s = server("--reuse-port", "-w", "2", "basic:pid_app")
    s.wait_workers(2)
    pids = {int(s.request()[2]) for _ in range(40)}
    assert pids <= set(s.workers())


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
