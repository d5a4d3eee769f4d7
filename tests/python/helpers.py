"""What the end-to-end tests share (the one helpers module): real
`ferrocorn` processes on loopback (:class:`Server`, :func:`run_ferrocorn`),
reading HTTP responses off raw sockets, waiting for conditions, looking at
processes and sockets through /proc, the metrics page and the control
socket.

Every server gets its own runtime directory and keeps its error log and
stdout in files the test can read.
"""

import atexit
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
CONFORMANCE = os.path.join(os.path.dirname(HERE), "conformance")
# Where the interpreter's scripts are (ferrocorn, ferrocornc, gunicornc).
BIN = os.path.dirname(sys.executable)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    """Direct child pids of `pid` (the master's workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


# Each server gets a runtime directory of its own: the control socket is on
# by default at $XDG_RUNTIME_DIR/gunicorn.ctl, and servers must not replace
# each other's (or a real server's in ~/.gunicorn).
_RUNTIME = tempfile.mkdtemp(prefix="ferrocorn-tests-")
atexit.register(shutil.rmtree, _RUNTIME, True)
_RUNTIME_IDS = itertools.count()


def server_env(extra=None):
    """The environment a test server runs in: the test apps importable, no
    settings leaking in from the caller's GUNICORN_CMD_ARGS, its own
    XDG_RUNTIME_DIR."""
    env = dict(os.environ)
    env["PYTHONPATH"] = APPS + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GUNICORN_CMD_ARGS", None)
    env.pop("FERROCORN_CMD_ARGS", None)
    runtime = os.path.join(_RUNTIME, str(next(_RUNTIME_IDS)))
    os.mkdir(runtime, 0o700)
    env["XDG_RUNTIME_DIR"] = runtime
    env.update(extra or {})
    return env


def read_all(sock):
    """Everything the peer sends until it closes."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def response_end(buf, head_request=False):
    """Where the first complete HTTP response in `buf` ends, or None (also
    for a close-delimited body, which only the close ends)."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    if 100 <= status < 200:
        after = response_end(rest, head_request)
        return None if after is None else len(head) + 4 + after
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    start = len(head) + 4
    if head_request or status in (204, 304):
        return start
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        return start + n if len(rest) >= n else None
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        pos = 0
        while True:
            line_end = rest.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(rest[pos:line_end].split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = rest.find(b"\r\n\r\n", pos - 2)
                return None if trailer_end < 0 else start + trailer_end + 4
            pos += size + 2
            if pos > len(rest):
                return None
    return None


def read_response(sock, head_request=False):
    """One response: stops when it is complete, without waiting for a
    kept-alive connection to close (so it cannot see bytes sent after it;
    read_all does). A close before the end returns what came."""
    out = b""
    while True:
        end = response_end(out, head_request)
        if end is not None:
            return out
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def recv_some(sock):
    """The next bytes on a connection that must stay open: the server
    closing it is a failure, not an empty read to loop on."""
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def get(sock, path="/", extra=b""):
    """One HTTP/1.1 GET on an open (kept-alive) connection:
    (status, headers, body)."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra))
    return parse_response(read_response(sock))


def get_closing(addr, path="/", timeout=10):
    """A GET with Connection: close on a fresh connection to `addr` (a
    Unix socket path, or a (host, port)): (status, body), the body being
    everything after the head until the server closes."""
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    c = socket.socket(family, socket.SOCK_STREAM)
    c.settimeout(timeout)
    c.connect(addr)
    try:
        c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = read_all(c)
    finally:
        c.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def tcp_queues(sock):
    """(send queue, receive queue) in bytes of the server's end of the
    loopback connection `sock` (from /proc/net/tcp): a receive queue of 0
    means the server read what was sent; a send queue above 0 that it wrote
    more than the client has read. None while the kernel lists no such
    socket."""
    client = sock.getsockname()[1]
    server = sock.getpeername()[1]
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server and int(remote.split(":")[1], 16) == client:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def listening_inodes(port):
    """Socket inodes of the TCP sockets listening on `port` (any address)."""
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                out.add(int(fields[9]))
    return out


def accepted_connections(pid, port):
    """Inodes of the established connections to local `port` that process
    `pid` holds (a worker's accepted clients)."""
    established = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].split(":")[1], 16) == port:
                established.add(int(fields[9]))
    return socket_inodes(pid) & established


def socket_inodes(pid):
    """Inodes of the sockets process `pid` holds open."""
    out = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:  # the process is gone
        return out
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[len("socket:[") : -1]))
    return out


def refusal(stderr):
    """Why a master refused to start, from its stderr: Gunicorn prints
    "Error: WHY" (a RuntimeError at start) where ferrocorn logs "Reason:
    WHY" (its halt line); None when neither is there."""
    for line in stderr.splitlines():
        for mark in ("Error: ", "Reason: "):
            if mark in line:
                return line.split(mark, 1)[1].strip()
    return None


def parse_response(raw):
    """(status, {lower-case header: value}, body) of one raw response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, body


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def rss_kib(pid):
    """A process's resident memory (VmRSS), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def read_pid(path):
    """The pid a pid file names, 0 while it is missing or being written."""
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def stop_pid(pid):
    """TERM a process the test did not start itself (a re-exec'd master)
    and wait for it to go."""
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), timeout=30, what="pid %d to exit" % pid)


class Server:
    def __init__(
        self,
        args,
        tmp_path,
        env=None,
        cwd=None,
        port=None,
        wait=True,
        bind=True,
        launcher=(),
        pass_fds=(),
        program="ferrocorn",
    ):
        """`launcher` is a command that execs the server (argv prefix);
        `pass_fds` are handed down to it; `program` is the module run
        (``gunicorn`` to compare with Gunicorn itself)."""
        self.port = port or free_port()
        self.args = tuple(args)
        self.program = program
        self.cwd = cwd or str(tmp_path)
        self.log_path = str(tmp_path / ("server-%d.log" % self.port))
        self.out_path = str(tmp_path / ("server-%d.out" % self.port))
        argv = list(launcher) + [sys.executable, "-m", program]
        if bind:
            argv += ["-b", "127.0.0.1:%d" % self.port]
        argv += list(args)
        full_env = server_env(env)
        # Where the control socket is when the arguments do not move it.
        self.default_control_socket = os.path.join(full_env["XDG_RUNTIME_DIR"], "gunicorn.ctl")
        self._err = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._out, stderr=self._err, env=full_env, cwd=self.cwd, pass_fds=pass_fds
        )
        self.pid = self.proc.pid
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=20.0):
        """Returns once the master listens and a worker has booted (loaded
        the app and serves): a connect alone succeeds as soon as the master
        binds, before any worker could answer."""
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("server exited (%s) at start:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise AssertionError("server did not listen:\n" + self.log()) from None
                time.sleep(0.05)
        self.wait_booted(timeout=max(deadline - time.time(), 1.0))

    def _control_socket(self):
        """The control socket the arguments give (None when turned off)."""
        args = list(self.args)
        if "--no-control-socket" in args:
            return None
        if "--control-socket" in args:
            return os.path.join(self.cwd, args[args.index("--control-socket") + 1])
        return self.default_control_socket

    def booted_workers(self):
        """Pids of the workers that have booted. ferrocorn's control socket
        tells (`show workers`, `booted`); where there is none (turned off,
        or Gunicorn, whose master cannot tell), a worker process whose boot
        line is in the log, or any worker process when the log is
        elsewhere."""
        path = self._control_socket()
        if path is not None and self.program == "ferrocorn":
            try:
                data = control(path, "show workers")
            except OSError:
                return []
            return sorted(w["pid"] for w in data["workers"] if w["booted"])
        workers = self.workers()
        log = self.log()
        if "Booting worker" not in log:
            return workers
        return [pid for pid in workers if "Booting worker with pid: %d" % pid in log]

    def wait_booted(self, timeout=20.0):
        def booted():
            if self.proc.poll() is not None:
                raise AssertionError("server exited (%s) at start:\n%s" % (self.proc.returncode, self.log()))
            return self.booted_workers()

        return wait_for(booted, timeout=timeout, what="a booted worker")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def out(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def workers(self):
        return children(self.pid)

    def wait_workers(self, n, timeout=15.0, exclude=()):
        return wait_for(
            lambda: (lambda w: w if len(w) == n and not set(w) & set(exclude) else None)(self.workers()),
            timeout=timeout,
            what="%d workers" % n,
        )

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=30.0):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # workers orphaned by a killed master must not outlive the test
        for pid in children(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._err.close()
        self._out.close()

    def request(self, method="GET", path="/", body=None, headers=None, timeout=10):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
        finally:
            conn.close()

    def raw(self, data, timeout=5, shut_write=False, until_close=False):
        """Sends raw bytes; returns the first response (with `until_close`,
        everything the server sends until it closes)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            if shut_write:
                s.shutdown(socket.SHUT_WR)
            return read_all(s) if until_close else read_response(s, data.startswith(b"HEAD "))
        finally:
            s.close()


def run_ferrocorn(args, tmp_path, env=None, timeout=30, cwd=None, program="ferrocorn"):
    """Runs ferrocorn to completion (for commands that exit: --version, bad
    configs); `program` "gunicorn" runs Gunicorn on the same input."""
    return subprocess.run(
        [sys.executable, "-m", program] + list(args),
        capture_output=True,
        env=server_env(env),
        timeout=timeout,
        cwd=cwd or str(tmp_path),
        text=True,
    )


# -- the metrics page ---------------------------------------------------------


def metrics_args():
    """--metrics-bind on a free port: (args, port)."""
    port = free_port()
    return ["--metrics-bind", "127.0.0.1:%d" % port], port


def scrape_text(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def parse_metrics(text):
    """{series: value} of a Prometheus text page; series keep their labels
    as written, e.g. 'ferrocorn_requests_total{code="2xx"}'."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        out[series] = float(value)
    return out


def scrape(port):
    return parse_metrics(scrape_text(port)[1])


def wait_metrics(port, timeout=10.0):
    """The page, once the endpoint answers (it opens after the first fork)."""

    def ready():
        try:
            return scrape(port)
        except (OSError, urllib.error.URLError):
            return None

    return wait_for(ready, timeout=timeout, what="the metrics endpoint")


def wait_metric(port, series, predicate, timeout=10.0):
    """Scrapes until `predicate(value)` holds for `series`; returns the page."""

    def check():
        page = scrape(port)
        return page if predicate(page.get(series)) else None

    return wait_for(check, timeout=timeout, what="%s to match" % series)


# -- the control socket -------------------------------------------------------


def frame(message):
    """One control-socket message: a 4-byte big-endian length, then JSON."""
    payload = json.dumps(message).encode()
    return struct.pack(">I", len(payload)) + payload


def read_frame(sock):
    """One control-socket message, or None when the server closes first."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def control(path, command, timeout=5.0):
    """One command on the control socket at `path` over the raw protocol;
    its `data`. OSError when nothing answers there."""
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(timeout)
    try:
        c.connect(path)
        c.sendall(frame({"id": 1, "command": command}))
        answer = read_frame(c)
    finally:
        c.close()
    if answer is None:
        raise ConnectionResetError("the control socket closed without an answer")
    assert answer["status"] == "ok", answer
    return answer["data"]


def ctl(socket_path, *words, tool="ferrocornc", as_json=False, timeout=30):
    """Runs a control client with the command as words; CompletedProcess."""
    argv = [os.path.join(BIN, tool), "-s", socket_path]
    if as_json:
        argv.append("-j")
    if tool == "gunicornc":
        argv += ["-c", " ".join(words)]
    else:
        argv += list(words)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def ctl_json(socket_path, *words, tool="ferrocornc"):
    r = ctl(socket_path, *words, tool=tool, as_json=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def worker_pids(socket_path):
    return [w["pid"] for w in ctl_json(socket_path, "show", "workers")["workers"]]


# A --log-config file for the server's two loggers: gunicorn.error (at
# DEBUG) into %(error)s as "INI <level> <message>", gunicorn.access into
# %(access)s as "ACCESS <line>".
LOGGING_INI = """
[loggers]
keys=root, gunicorn.error, gunicorn.access

[handlers]
keys=error_file, access_file

[formatters]
keys=generic, access

[logger_root]
level=INFO
handlers=error_file

[logger_gunicorn.error]
level=DEBUG
handlers=error_file
propagate=0
qualname=gunicorn.error

[logger_gunicorn.access]
level=INFO
handlers=access_file
propagate=0
qualname=gunicorn.access

[handler_error_file]
class=logging.FileHandler
formatter=generic
args=(%(error)r,)

[handler_access_file]
class=logging.FileHandler
formatter=access
args=(%(access)r,)

[formatter_generic]
format=INI %%(levelname)s %%(message)s
class=logging.Formatter

[formatter_access]
format=ACCESS %%(message)s
class=logging.Formatter
"""


# The operations app (tests/python/apps/ops_app.py) under each worker type:
# (worker arguments, application).
WORKER_KINDS = {
    "sync": (("-k", "sync"), "ops_app:app"),
    "gthread": (("-k", "gthread", "--threads", "4"), "ops_app:app"),
    "asgi": (("-k", "asgi"), "ops_app:asgi"),
}


def start_kind(server, kind, *args, **kw):
    """A server of the operations app under worker type `kind` (a key of
    WORKER_KINDS), `args` given before the app."""
    worker_args, app = WORKER_KINDS[kind]
    return server(*worker_args, *args, app, **kw)


def make_tls_files(directory):
    """Certificates for TLS tests, made with the openssl command: a CA, a
    server certificate for localhost and 127.0.0.1 it signed (twice, as
    server and server2, with different subjects), a client certificate it
    signed, and a client certificate from another CA. Returns {name: path}
    with <name>.pem and <name>.key for each."""
    directory = str(directory)
    paths = {}

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=directory, check=True, capture_output=True)

    def key(name):
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name + ".key")

    def ca(name, subject):
        key(name)
        run(
            "req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem", "-days", "3", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def leaf(name, issuer, subject, usage, alt=None):
        key(name)
        run("req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", subject)
        ext = os.path.join(directory, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n" % usage)
            if alt:
                f.write("subjectAltName=%s\n" % alt)
        run(
            "x509", "-req", "-in", name + ".csr", "-CA", issuer + ".pem", "-CAkey", issuer + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext,
        )  # fmt: skip

    ca("ca", "/CN=ferrocorn test CA")
    ca("other_ca", "/CN=another CA")
    leaf("server", "ca", "/CN=localhost/O=first", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    leaf("server2", "ca", "/CN=localhost/O=second", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    leaf("client", "ca", "/CN=client one/O=ferrocorn tests", "clientAuth")
    leaf("rogue", "other_ca", "/CN=rogue client", "clientAuth")
    for name in ("ca", "other_ca", "server", "server2", "client", "rogue"):
        paths[name] = os.path.join(directory, name)
    return paths
