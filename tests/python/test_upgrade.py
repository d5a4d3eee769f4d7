"""USR2 re-exec upgrades (Gunicorn's procedure): a new master from the same
command line takes the listening sockets over, writes <pidfile>.2, and the
old master is retired with WINCH then TERM, or the upgrade is rolled back
with HUP on the old master and TERM on the new one. Requests keep being
answered throughout."""

import json
import os
import signal
import socket

import pytest
from helpers import children, pid_alive, read_all, read_pid, server_env, start_kind, stop_pid, wait_for
from loadgen import LoadGen


def start(server, kind, *extra):
    # a 1 ms pause in the app keeps requests in flight when a signal lands
    return start_kind(server, kind, "-w", "2", *extra, env={"OPS_SLEEP_MS": "1"})


def served_by(load, pids):
    return set(load.result().pids) & set(pids)


def start_upgrade(s, pidfile):
    """USR2 to the old master; returns the new master's pid once its
    workers are up."""
    s.signal(signal.SIGUSR2)
    new = wait_for(lambda: read_pid(pidfile + ".2"), what="the new master's pid file")
    assert new != s.pid
    wait_for(lambda: len(children(new)) == 2, what="the new master's workers")
    return new


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_usr2_winch_term_upgrade_under_load(server, tmp_path, kind):
    pidfile = str(tmp_path / "app.pid")
    hooks = tmp_path / "hooks.log"
    conf = tmp_path / "conf.py"
    conf.write_text("def pre_exec(server):\n    open(%r, 'a').write('pre_exec %%s\\n' %% server.pid)\n" % str(hooks))
    s = start(server, kind, "-c", str(conf), "--pid", pidfile)
    old_workers = s.wait_workers(2)
    new = 0
    try:
        with LoadGen(port=s.port, keepalive=3, fresh=3, idle=2, duration=60) as load:
            load.wait_ok(100)
            new = start_upgrade(s, pidfile)
            assert read_pid(pidfile) == s.pid
            new_workers = children(new)
            # Both generations serve side by side.
            wait_for(lambda: served_by(load, new_workers), what="the new workers to serve")
            # A second USR2 is refused while the upgrade is pending, on
            # either master.
            s.signal(signal.SIGUSR2)
            os.kill(new, signal.SIGUSR2)
            wait_for(
                lambda: (
                    "USR2 signal ignored. Child exists." in s.log() and "USR2 signal ignored. Parent exists." in s.log()
                ),
                what="both refusals",
            )
            # WINCH: the old master's workers stop gracefully.
            s.signal(signal.SIGWINCH)
            wait_for(lambda: not any(pid_alive(p) for p in old_workers), what="the old workers to stop")
            assert children(s.pid) == [new]
            # TERM: the old master goes, the new one is promoted.
            s.signal(signal.SIGTERM)
            assert s.wait_exit() == 0
            wait_for(
                lambda: read_pid(pidfile) == new and not os.path.exists(pidfile + ".2"),
                what="the pid file to be renamed",
            )
            load.wait_ok(100)
        res = load.result()
        assert not res.failures, "%s\n%s" % (res.summary(), res.failures[:10])
        assert "Master has been promoted." in s.log()
        assert hooks.read_text() == "pre_exec %d\n" % s.pid
        assert "ferrocorn: master" in open("/proc/%d/cmdline" % new, "rb").read().decode(errors="replace").replace(
            "\0", " "
        )
    finally:
        stop_pid(new)


def test_usr2_rollback_with_hup(server, tmp_path):
    pidfile = str(tmp_path / "app.pid")
    s = start(server, "sync", "--pid", pidfile)
    old_workers = s.wait_workers(2)
    new = 0
    try:
        with LoadGen(port=s.port, keepalive=2, fresh=2, duration=60) as load:
            load.wait_ok(50)
            new = start_upgrade(s, pidfile)
            s.signal(signal.SIGWINCH)
            wait_for(lambda: not any(pid_alive(p) for p in old_workers), what="the old workers to stop")
            # Roll back: the old master starts workers again...
            s.signal(signal.SIGHUP)
            wait_for(lambda: len([p for p in children(s.pid) if p != new]) == 2, what="the old master's workers")
            # ...and the new master is stopped.
            stop_pid(new)
            back = set(children(s.pid))
            load.wait_ok(50)
            wait_for(lambda: served_by(load, back), what="the old master's new workers to serve")
        res = load.result()
        assert not res.failures, "%s\n%s" % (res.summary(), res.failures[:10])
        assert read_pid(pidfile) == s.pid and not os.path.exists(pidfile + ".2")
        assert "The new master (pid:%d) exited" % new in s.log()
    finally:
        stop_pid(new)


def test_hup_burst_while_an_upgrade_is_pending(server, tmp_path):
    """HUPs to the old master while the new one (USR2) runs beside it: the
    old master replaces its own workers and keeps serving, leaves the new
    master and the pid files alone, and the upgrade then completes (WINCH,
    TERM: the new master is promoted)."""
    pidfile = str(tmp_path / "app.pid")
    s = start(server, "sync", "--pid", pidfile)
    old_workers = s.wait_workers(2)
    new = 0
    try:
        with LoadGen(port=s.port, keepalive=2, fresh=2, duration=60) as load:
            load.wait_ok(50)
            new = start_upgrade(s, pidfile)
            new_workers = children(new)
            for _ in range(5):  # back to back: some may merge into one
                s.signal(signal.SIGHUP)
            wait_for(lambda: "Handling signal: hup" in s.log(), what="the HUPs")

            def own_generation():
                mine = [p for p in children(s.pid) if p != new]
                return mine if len(mine) == 2 and not set(mine) & set(old_workers) else None

            reloaded = wait_for(own_generation, timeout=20, what="the old master's new workers")
            wait_for(
                lambda: served_by(load, own_generation() or reloaded), what="the old master's new workers to serve"
            )
            assert children(new) == new_workers
            assert read_pid(pidfile) == s.pid and read_pid(pidfile + ".2") == new
            # the upgrade completes
            s.signal(signal.SIGWINCH)
            wait_for(lambda: children(s.pid) == [new], what="the old master's workers to stop")
            s.signal(signal.SIGTERM)
            assert s.wait_exit() == 0
            wait_for(
                lambda: read_pid(pidfile) == new and not os.path.exists(pidfile + ".2"),
                what="the new master's promotion",
            )
            load.wait_ok(100)
        res = load.result()
        assert not res.failures, "%s\n%s" % (res.summary(), res.failures[:10])
        assert "Master has been promoted." in s.log()
        assert pid_alive(new) and children(new) == new_workers
    finally:
        stop_pid(new)


LAUNCHER = r"""
import os, socket, subprocess, sys, time
# Plays a Gunicorn master doing its USR2 re-exec: it owns the listening
# socket and starts the new master with GUNICORN_FD and GUNICORN_PID.
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
os.set_inheritable(sock.fileno(), True)
env = dict(os.environ, GUNICORN_FD=str(sock.fileno()), GUNICORN_PID=str(os.getpid()))
child = subprocess.Popen([sys.executable, "-m", "ferrocorn", "--pid", sys.argv[1], "ops_app:activation_env"],
                         env=env, pass_fds=[sock.fileno()], stderr=open(sys.argv[2], "wb"))
print(sock.getsockname()[1], child.pid, flush=True)
time.sleep(600)
"""


def test_takes_over_the_sockets_of_a_gunicorn_master(tmp_path):
    import subprocess
    import sys

    pidfile = str(tmp_path / "app.pid")
    log = str(tmp_path / "new.log")
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, pidfile, log], stdout=subprocess.PIPE, env=server_env(), cwd=str(tmp_path)
    )
    new = 0
    try:
        port, new = map(int, launcher.stdout.readline().split())
        wait_for(lambda: read_pid(pidfile + ".2") == new, what="the new master's .2 pid file")
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = read_all(s).partition(b"\r\n\r\n")
        s.close()
        assert head.startswith(b"HTTP/1.1 200")
        # The fds were consumed from os.environ, as Gunicorn pops them: the
        # app and the processes it starts do not see them.
        assert json.loads(body) == {"os_environ": {}, "child": []}
        # The old master leaves: the new one is promoted.
        launcher.kill()
        launcher.wait()
        wait_for(lambda: read_pid(pidfile) == new and not os.path.exists(pidfile + ".2"), what="promotion")
        assert "Master has been promoted." in open(log).read()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        stop_pid(new)
