"""What the end-to-end tests share: real `ferrocorn` processes on loopback
(:class:`Server`, :func:`run_ferrocorn`), reading HTTP responses off raw
sockets, waiting for conditions, and looking at processes through /proc.

Every server gets its own runtime directory and keeps its error log and
stdout in files the test can read.
"""

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
CONFORMANCE = os.path.join(os.path.dirname(HERE), "conformance")


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
    kept-alive connection to close."""
    out = b""
    while True:
        end = response_end(out, head_request)
        if end is not None:
            return out
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


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
            argv, stdout=self._out, stderr=self._err, env=full_env, cwd=cwd or str(tmp_path), pass_fds=pass_fds
        )
        self.pid = self.proc.pid
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited (%s) at start:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                # a worker must also have booted and be serving
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("server did not listen:\n" + self.log())

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


def run_ferrocorn(args, tmp_path, env=None, timeout=30, cwd=None):
    """Runs ferrocorn to completion (for commands that exit: --version, bad configs)."""
    return subprocess.run(
        [sys.executable, "-m", "ferrocorn"] + list(args),
        capture_output=True,
        env=server_env(env),
        timeout=timeout,
        cwd=cwd or str(tmp_path),
        text=True,
    )


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
