"""Process settings: --daemon with --pid, -u/-g/--initgroups (as root),
--umask on a Unix socket."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys

import pytest
from helpers import children, free_port, pid_alive, read_all, run_ferrocorn, server_env, wait_for


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1:]
    raise KeyError(name)


def stop_daemon(pid):
    """TERM to a daemonized master (not the test's child), then KILL for
    any worker it left behind."""
    workers = children(pid)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout=30, what="the daemon to stop")
    for w in workers:
        if pid_alive(w):
            os.kill(w, signal.SIGKILL)


def test_daemon_with_pidfile(tmp_path):
    port = free_port()
    pidfile = tmp_path / "d.pid"
    log = tmp_path / "d.log"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferrocorn",
            "-D",
            "-p",
            str(pidfile),
            "--error-logfile",
            str(log),
            "-b",
            "127.0.0.1:%d" % port,
            "basic:hello",
        ],
        env=server_env(),
        cwd=str(tmp_path),
        capture_output=True,
        timeout=30,
    )
    # the command returns at once: the daemon is a grandchild
    assert r.returncode == 0, r.stderr
    pid = wait_for(
        lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()), what="the pid file"
    )
    try:
        assert pid_alive(pid)
        assert os.getsid(pid) != os.getsid(0)  # its own session, no terminal
        assert os.getsid(pid) != pid  # and not its leader (second fork)
        for fd in (0, 1, 2):
            assert os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null"
        wait_for(lambda: len(children(pid)) == 1, what="a worker")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.0 200 OK")
        assert "Starting ferrocorn" in log.read_text()
    finally:
        stop_daemon(pid)
    assert not pidfile.exists()


def test_daemon_keeps_redirected_output_with_stdio_inheritance(tmp_path):
    port = free_port()
    pidfile = tmp_path / "r.pid"
    out = tmp_path / "out.log"
    with open(out, "wb") as f:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ferrocorn",
                "-D",
                "-R",
                "-p",
                str(pidfile),
                "-b",
                "127.0.0.1:%d" % port,
                "basic:hello",
            ],
            env=server_env(),
            cwd=str(tmp_path),
            stdout=f,
            stderr=f,
            timeout=30,
            check=True,
        )
    pid = wait_for(
        lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()), what="the pid file"
    )
    try:
        assert os.readlink("/proc/%d/fd/0" % pid) == "/dev/null"
        assert os.readlink("/proc/%d/fd/2" % pid) == str(out)
        wait_for(lambda: "Booting worker" in out.read_text(), what="the error log in the redirected file")
    finally:
        stop_daemon(pid)


def test_daemon_with_capture_output(tmp_path):
    port = free_port()
    pidfile = tmp_path / "c.pid"
    log = tmp_path / "c.log"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ferrocorn",
            "-D",
            "--capture-output",
            "--error-logfile",
            str(log),
            "-p",
            str(pidfile),
            "-b",
            "127.0.0.1:%d" % port,
            "custom_logger:prints",
        ],
        env=server_env(),
        cwd=str(tmp_path),
        capture_output=True,
        timeout=30,
        check=True,
    )
    pid = wait_for(
        lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()), what="the pid file"
    )
    try:
        wait_for(lambda: len(children(pid)) == 1, what="a worker")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            c.recv(100)
        wait_for(
            lambda: "printed to stdout" in log.read_text() and "printed to stderr" in log.read_text(),
            what="the app's output in the error log",
        )
    finally:
        stop_daemon(pid)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")


def nobody():
    import grp
    import pwd

    try:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no nobody/nogroup on this machine")


@needs_root
def test_workers_switch_user_and_group(server, tmp_path):
    uid, gid = nobody()
    log = tmp_path / "error.log"
    sock_path = tmp_path / "s.sock"
    s = server(
        "-u",
        "nobody",
        "-g",
        "nogroup",
        "--initgroups",
        "-m",
        "007",
        "--preload",
        "--error-logfile",
        str(log),
        "-b",
        "unix:%s" % sock_path,
        "ids_app:app",
    )
    (worker,) = s.wait_workers(1)
    assert status_field(worker, "Uid")[:2] == [str(uid), str(uid)]
    assert status_field(worker, "Gid")[:2] == [str(gid), str(gid)]
    assert status_field(worker, "Groups") == [str(gid)]
    # the master stays as it was started
    assert status_field(s.pid, "Uid")[0] == "0"
    # the log file and the Unix socket belong to the workers' user
    assert (os.stat(log).st_uid, os.stat(log).st_gid) == (uid, gid)
    st = os.stat(sock_path)
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert stat.S_IMODE(st.st_mode) == 0o770  # 0777 under umask 007
    c = socket.socket(socket.AF_UNIX)
    c.connect(str(sock_path))
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = read_all(c)
    c.close()
    ids = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert ids["uid"] == ids["euid"] == uid and ids["gid"] == gid and ids["groups"] == [gid]


@pytest.mark.parametrize(
    "flag,value,reason",
    [
        ("-u", "no-such-user-here", "No such user: 'no-such-user-here'"),
        ("-g", "no-such-group-here", "No such group: 'no-such-group-here'"),
        ("-u", "-1", "No such user: '-1'"),
        ("-g", "-1", "No such group: '-1'"),
    ],
)
def test_unknown_user_or_group_is_refused_as_gunicorn_refuses(tmp_path, flag, value, reason):
    args = [flag, value, "-b", "127.0.0.1:0", "basic:hello"]
    ours = run_ferrocorn(args, tmp_path, timeout=20)
    theirs = run_ferrocorn(args, tmp_path, timeout=20, program="gunicorn")
    assert theirs.returncode == 1 and reason in theirs.stderr, theirs.stderr
    assert ours.returncode == 1 and reason in ours.stderr, ours.stderr


@pytest.mark.parametrize("source", ["command line", "config file"])
@pytest.mark.parametrize("flag,what", [("-u", "user"), ("-g", "group")])
def test_an_id_beyond_32_bits_is_refused_at_start(server, tmp_path, flag, what, source):
    """uid_t and gid_t are 32 bits: 4294967296 would wrap to 0 (root, which
    also means "leave it"), so the workers would keep the master's identity.
    ferrocorn refuses it before binding (Gunicorn fails later, with an
    OverflowError from os.chown)."""
    if source == "command line":
        args = (flag, "4294967296")
    else:
        (tmp_path / "ids.py").write_text("%s = 4294967296\n" % what)
        args = ("-c", str(tmp_path / "ids.py"))
    s = server(*args, "basic:hello", wait=False)
    assert s.wait_exit(timeout=20) == 1
    assert "Invalid %s id: 4294967296" % what in s.log()
    assert "Listening at" not in s.log()
