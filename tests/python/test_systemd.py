"""systemd integration: socket activation (sockets passed as fds 3.. with
LISTEN_FDS/LISTEN_PID) and sd_notify messages on $NOTIFY_SOCKET."""

import json
import os
import shutil
import signal
import socket
import sys
import time

import pytest
from helpers import HERE, Server, children, free_port, get_closing, pid_alive, read_all, read_pid, wait_for

LAUNCHER = os.path.join(HERE, "sd_launcher.py")


def tcp_listener(port=None):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port or 0))
    s.listen(64)
    return s


def unix_listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    return s


def activated(tmp_path, socks, *args, env=None, wait=True):
    """A server started the way systemd starts a socket-activated service."""
    fds = [s.fileno() for s in socks]
    port = next((s.getsockname()[1] for s in socks if s.family == socket.AF_INET), free_port())
    launcher = [sys.executable, LAUNCHER, ",".join(map(str, fds)), "--"]
    s = Server(args, tmp_path, env=env, port=port, bind=False, launcher=launcher, pass_fds=fds, wait=False)
    if wait:
        # A connect would succeed before the server runs (the test holds the
        # socket too): wait for a booted worker instead.
        s.wait_booted()
    return s


get = get_closing


@pytest.fixture
def started(request):
    servers = []
    yield servers
    for s in servers:
        s.stop()


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_activation_serves_on_the_passed_tcp_socket(tmp_path, started, kind):
    lsock = tcp_listener()
    app = "ops_app:asgi" if kind == "asgi" else "ops_app:app"
    s = activated(tmp_path, [lsock], "-k", kind, "-w", "2", app)
    started.append(s)
    assert get(("127.0.0.1", s.port)) == (200, b"ok\n")
    log = s.log()
    assert "Using 1 socket(s) from systemd socket activation" in log
    assert "Not binding 127.0.0.1:8000: the sockets come from systemd" in log
    assert "Listening at: http://127.0.0.1:%d (%d)" % (s.port, s.pid) in log


def test_workers_and_their_children_do_not_see_the_variables(tmp_path, started):
    lsock = tcp_listener()
    s = activated(tmp_path, [lsock], "-w", "1", "ops_app:activation_env")
    started.append(s)
    status, body = get(("127.0.0.1", s.port))
    assert status == 200
    seen = json.loads(body)
    assert seen == {"os_environ": {}, "child": []}, seen


def test_unix_and_tcp_sockets_together_and_the_path_is_left_to_systemd(tmp_path, started):
    path = str(tmp_path / "app.sock")
    usock, tsock = unix_listener(path), tcp_listener()
    s = activated(tmp_path, [usock, tsock], "-w", "2", "ops_app:app")
    started.append(s)
    assert get(path) == (200, b"ok\n")
    assert get(("127.0.0.1", s.port)) == (200, b"ok\n")
    assert "Listening at: unix:%s,http://127.0.0.1:%d" % (path, s.port) in s.log()
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    # systemd made the path and will remove it; the server must not
    assert os.path.exists(path)


def test_abstract_unix_socket(tmp_path, started):
    name = "ferrocorn-test-activation-%d-%d" % (os.getpid(), time.monotonic_ns())
    usock, tsock = unix_listener("\0" + name), tcp_listener()
    s = activated(tmp_path, [usock, tsock], "-w", "1", "ops_app:app")
    started.append(s)
    assert get("\0" + name) == (200, b"ok\n")
    assert "Listening at: unix:@%s,http://127.0.0.1:%d" % (name, s.port) in s.log()


def test_hup_with_a_new_bind_keeps_the_passed_sockets(tmp_path, started):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 1\n")
    lsock = tcp_listener()
    s = activated(tmp_path, [lsock], "-c", str(conf), "ops_app:app")
    started.append(s)
    other = free_port()
    conf.write_text("workers = 1\nbind = ['127.0.0.1:%d']\n" % other)
    old = s.workers()
    s.signal(signal.SIGHUP)
    wait_for(lambda: "--bind changed, but the listeners come from systemd" in s.log(), what="the warning")
    s.wait_workers(1, exclude=old)
    assert get(("127.0.0.1", s.port)) == (200, b"ok\n")
    with pytest.raises(ConnectionRefusedError):
        get(("127.0.0.1", other))


def test_fd_binds_are_served_besides_the_passed_sockets(tmp_path, started):
    """As in Gunicorn, fd:// binds add to the passed sockets; one naming a
    passed socket is not taken twice."""
    first, second = tcp_listener(), tcp_listener()
    s = activated(
        tmp_path,
        [first, second],
        "-b",
        "fd://3",
        "-b",
        "fd://4",
        "-w",
        "1",
        "ops_app:app",
        env={"LAUNCHER_LISTEN_FDS": "1"},
    )
    started.append(s)
    ports = [first.getsockname()[1], second.getsockname()[1]]
    for port in ports:
        assert get(("127.0.0.1", port)) == (200, b"ok\n")
    assert "Listening at: http://127.0.0.1:%d,http://127.0.0.1:%d (" % tuple(ports) in s.log()
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0


def test_restart_through_the_same_socket_loses_no_connection(tmp_path, started):
    """The manager keeps the socket between runs: a client that connects
    while no server runs is answered by the next one."""
    lsock = tcp_listener()
    first = activated(tmp_path, [lsock], "-w", "1", "ops_app:app")
    started.append(first)
    assert get(("127.0.0.1", first.port))[0] == 200
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    waiting = socket.create_connection(("127.0.0.1", first.port), timeout=10)
    waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    second = activated(tmp_path, [lsock], "-w", "1", "ops_app:app", wait=False)
    started.append(second)
    data = read_all(waiting)
    waiting.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"ok\n")


def test_usr2_hands_the_passed_sockets_on_the_systemd_way(tmp_path, started):
    """A socket-activated master re-executes with LISTEN_PID/LISTEN_FDS (as
    Gunicorn's reexec does), so the new master also leaves the sockets to
    systemd."""
    path = str(tmp_path / "app.sock")
    pidfile = str(tmp_path / "app.pid")
    usock, tsock = unix_listener(path), tcp_listener()
    s = activated(tmp_path, [usock, tsock], "-w", "1", "--pid", pidfile, "basic:pid_app")
    started.append(s)
    new = 0
    try:
        s.signal(signal.SIGUSR2)
        new = wait_for(lambda: read_pid(pidfile + ".2"), what="the new master's pid file")
        environ = open("/proc/%d/environ" % new, "rb").read().split(b"\0")
        assert b"LISTEN_PID=%d" % new in environ and b"LISTEN_FDS=2" in environ, environ
        assert not [v for v in environ if v.startswith(b"GUNICORN_FD=")]
        wait_for(lambda: len(children(new)) == 1, what="the new master's worker")
        s.signal(signal.SIGWINCH)
        s.signal(signal.SIGTERM)
        assert s.wait_exit() == 0
        wait_for(lambda: read_pid(pidfile) == new, what="the new master's promotion")
        worker = children(new)
        for addr in (path, ("127.0.0.1", s.port)):
            status, body = get(addr)
            assert status == 200 and int(body) in worker
        assert "Listening at: unix:%s,http://127.0.0.1:%d (%d)" % (path, s.port, new) in s.log()
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: not pid_alive(new), timeout=30, what="the new master to exit")
        # still systemd's socket
        assert os.path.exists(path)
    finally:
        if new and pid_alive(new):
            os.kill(new, signal.SIGKILL)


def test_another_process_variables_are_ignored(server):
    s = server("-w", "1", "ops_app:app", env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert s.request()[0] == 200
    assert "systemd" not in s.log()


@pytest.mark.parametrize(
    "listen_fds, message",
    [
        ("two", 'LISTEN_FDS="two" is not a number of sockets'),
        ("2", "fd 4 cannot be used as a listener"),
    ],
)
def test_bad_activation_stops_at_start(tmp_path, started, listen_fds, message):
    lsock = tcp_listener()
    s = activated(tmp_path, [lsock], "ops_app:app", env={"LAUNCHER_LISTEN_FDS": listen_fds}, wait=False)
    started.append(s)
    assert s.wait_exit() == 1
    assert message in s.log()


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"),
    reason="systemd-socket-activate not installed (make ci-deps installs it)",
)
def test_systemd_socket_activate(tmp_path, started):
    """systemd's own launcher: it binds, waits for the first connection,
    then execs the server with the socket as fd 3."""
    port = free_port()
    # it passes the program a bare environment: the test apps' path is
    # handed on explicitly
    launcher = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, "-E", "PYTHONPATH"]
    s = Server(("-w", "2", "ops_app:app"), tmp_path, port=port, bind=False, launcher=launcher, wait=False)
    started.append(s)
    # the first connection starts the server and is answered by it
    wait_for(lambda: "Listening on" in s.log(), what="systemd-socket-activate listening")
    assert get(("127.0.0.1", port), timeout=20) == (200, b"ok\n")
    assert "Using 1 socket(s) from systemd socket activation" in s.log()


# -- sd_notify ---------------------------------------------------------------


class NotifyListener:
    """What a service manager receives on $NOTIFY_SOCKET."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address if not address.startswith("@") else "\0" + address[1:])
        self.address = address
        self.messages = []

    def expect(self, key, timeout=15.0):
        """Waits for a message containing the line `key` (e.g. READY=1);
        returns it as a dict."""
        deadline = time.time() + timeout
        while True:
            for i, m in enumerate(self.messages):
                if key in m.split("\n"):
                    del self.messages[: i + 1]
                    return dict(line.split("=", 1) for line in m.split("\n"))
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no %s in %r" % (key, self.messages))
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def expect_status(self, predicate, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.expect_any(deadline - time.time())
            if m and "STATUS" in m and predicate(m["STATUS"]):
                return m["STATUS"]
        raise AssertionError("no matching STATUS")

    def expect_any(self, timeout):
        if not self.messages:
            self.sock.settimeout(max(timeout, 0.01))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return None
        m = self.messages.pop(0)
        return dict(line.split("=", 1) for line in m.split("\n"))

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request, tmp_path):
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = "@ferrocorn-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
    listener = NotifyListener(address)
    yield listener
    listener.close()


def test_notify_ready_status_reload_and_stopping(server, notify):
    s = server("-w", "2", "ops_app:app", env={"NOTIFY_SOCKET": notify.address})
    ready = notify.expect("READY=1")
    assert ready["STATUS"] == "ferrocorn arbiter booted"
    # READY is sent once the workers are forked
    assert len(children(s.pid)) == 2
    for _ in range(5):
        assert s.request()[0] == 200
    status = notify.expect_status(lambda st: st.startswith("2 workers, ") and int(st.split()[2]) >= 5)
    assert status.endswith("requests served")

    old = s.workers()
    s.signal(signal.SIGHUP)
    reloading = notify.expect("RELOADING=1")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    again = notify.expect("READY=1")
    assert again["STATUS"].startswith("2 workers, "), again
    wait_for(lambda: not set(s.workers()) & set(old), what="the old generation gone")
    # requests of the workers that left are still counted
    assert s.request()[0] == 200
    notify.expect_status(lambda st: int(st.split()[2]) >= 6)

    s.signal(signal.SIGTERM)
    stopping = notify.expect("STOPPING=1")
    assert stopping["STATUS"] == "Stopping"
    assert s.wait_exit() == 0


def test_notify_status_is_rate_limited(server, tmp_path):
    listener = NotifyListener(str(tmp_path / "n.sock"))
    try:
        s = server("-w", "1", "ops_app:app", env={"NOTIFY_SOCKET": listener.address})
        listener.expect("READY=1")
        start = time.monotonic()
        end = start + 3.5
        while time.monotonic() < end:
            s.request()
            # TTIN/TTOU wake the loop many times a second, and each
            # changes the status line
            s.signal(signal.SIGTTIN if int(time.monotonic() * 10) % 2 else signal.SIGTTOU)
            time.sleep(0.05)
        statuses = []
        while True:
            m = listener.expect_any(1.5)
            if m is None:
                break
            statuses.append(m)
        # at most one a second (STATUS_INTERVAL in src/arbiter/systemd.rs)
        # while they were sent, against about 70 changes
        seconds = time.monotonic() - start
        assert 1 <= len(statuses) <= int(seconds) + 1, (statuses, seconds)
    finally:
        listener.close()


def test_a_missing_notify_socket_is_logged_once_and_ignored(server, tmp_path):
    s = server(
        "-w", "1", "--log-level", "debug", "ops_app:app", env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    )
    for _ in range(3):
        assert s.request()[0] == 200
    old = s.wait_workers(1)
    s.signal(signal.SIGHUP)  # RELOADING=1, then READY=1: two more sends that fail
    s.wait_workers(1, exclude=old)
    wait_for(lambda: "Handling signal: hup" in s.log(), what="the HUP")
    assert s.request()[0] == 200
    s.signal(signal.SIGTERM)  # and STOPPING=1
    assert s.wait_exit() == 0
    assert s.log().count("Exception while invoking sd_notify()") == 1


@pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="systemd-analyze not installed (make ci-deps installs it)"
)
def test_example_units_are_valid(tmp_path):
    """docs/systemd's units pass systemd's own checks (with an ExecStart
    that exists here) and say what docs/operations.md promises."""
    import subprocess

    docs = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "systemd")
    service = open(os.path.join(docs, "ferrocorn.service")).read()
    socket_unit = open(os.path.join(docs, "ferrocorn.socket")).read()
    for line in (
        "Type=notify",
        "KillMode=mixed",
        "ExecReload=/bin/kill -s HUP $MAINPID",
        "Requires=ferrocorn.socket",
        "NotifyAccess=main",
    ):
        assert "\n" + line + "\n" in service, line
    assert "\nListenStream=" in socket_unit
    (tmp_path / "ferrocorn.service").write_text(service.replace("/srv/app/venv/bin/ferrocorn", "/bin/true"))
    (tmp_path / "ferrocorn.socket").write_text(socket_unit)
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "ferrocorn.socket", "ferrocorn.service"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
