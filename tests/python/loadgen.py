"""A bounded HTTP/1.1 load generator for the end-to-end tests.

A small pool of client threads runs requests in a loop while a test does
something to the server (HUP, TTIN, a worker killed...). Some clients
reuse one connection for as long as the server keeps it open (keep-alive);
others open a fresh connection per request and ask the server to close it;
"idle" clients are keep-alive clients that pause between requests (less
than the 2 s a stopping worker gives an idle connection), so operations
find kept-alive connections with no request on them. Every request that does not end with a complete,
well-formed `200` answer is recorded as a failure of one kind:

- ``refused``: connect() was refused (nobody listening);
- ``reset``: the connection was reset (ECONNRESET or EPIPE) before the
  answer was complete;
- ``reset_after_response``: the answer was complete but the close that
  followed was a reset instead of a clean FIN (the client saw it because it
  reads a closing connection to its end);
- ``closed``: the server closed the connection before sending one byte of
  the answer;
- ``truncated``: the server closed it in the middle of the answer;
- ``malformed``: the bytes are not an HTTP/1.1 response;
- ``status``: the answer was not 200;
- ``timeout``: no complete answer within the request timeout.

Each failure keeps the pid of the worker that last answered on the same
connection (from the app's ``X-Worker-Pid`` header), so a test that kills a
worker can tell failures on that worker's connections from anyone else's.

The run is bounded by a duration and, optionally, a request count; the
generator never retries, so what it reports is what a client saw.
"""

import dataclasses
import errno
import socket
import threading
import time
from collections import Counter

KINDS = ("refused", "reset", "reset_after_response", "closed", "truncated", "malformed", "status", "timeout")


class Failure:
    __slots__ = ("conn_pid", "detail", "ended", "fresh_conn", "keepalive", "kind", "started")

    def __init__(self, kind, detail, started, keepalive, conn_pid, fresh_conn):
        self.kind = kind
        self.detail = detail
        self.started = started
        self.ended = time.monotonic()
        self.keepalive = keepalive
        # pid of the worker that answered the previous request on this
        # connection; None on a connection that had no answer yet
        self.conn_pid = conn_pid
        self.fresh_conn = fresh_conn

    def __repr__(self):
        return "<%s %s pid=%s %s t=%.3f>" % (
            self.kind,
            "keepalive" if self.keepalive else "fresh",
            self.conn_pid,
            self.detail,
            self.started,
        )


@dataclasses.dataclass(eq=False)
class Result:
    """What a run saw: answers that were fine, the failures, how many
    answers each worker pid gave, and the seconds it took."""

    ok: int
    failures: list
    pids: Counter
    elapsed: float

    @property
    def counts(self):
        return Counter(f.kind for f in self.failures)

    @property
    def resets(self):
        return sum(1 for f in self.failures if f.kind in ("reset", "reset_after_response"))

    def summary(self):
        return "ok=%d failed=%d %s in %.1fs (%d worker pids answered)" % (
            self.ok,
            len(self.failures),
            dict(self.counts),
            self.elapsed,
            len(self.pids),
        )


class _Malformed(Exception):
    pass


class _Closed(Exception):
    """EOF; `partial` says whether any byte of the answer had arrived."""

    def __init__(self, partial):
        super().__init__("partial" if partial else "no bytes")
        self.partial = partial


def _parse_head(head):
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _Malformed("status line %r" % lines[0][:80])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Malformed("header line %r" % line[:80])
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[0], headers


class _Reader:
    """Reads framed responses from one socket, keeping bytes that belong to
    the next one."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _more(self, got_any):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed(got_any or bool(self.buf))
        self.buf += chunk

    def response(self):
        """(status, headers, body) of the next response."""
        got_any = bool(self.buf)
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise _Malformed("head too long")
            self._more(got_any)
            got_any = True
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, version, headers = _parse_head(head)
        if 100 <= status < 200:
            return self.response()
        if b"content-length" in headers:
            try:
                n = int(headers[b"content-length"])
            except ValueError:
                raise _Malformed("content-length %r" % headers[b"content-length"]) from None
            while len(self.buf) < n:
                self._more(True)
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = self._chunked()
        else:
            # close-delimited
            while True:
                try:
                    self._more(True)
                except _Closed:
                    break
            body, self.buf = self.buf, b""
            headers[b"connection"] = b"close"
        return status, version, headers, body

    def _chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._more(True)
            line, _, self.buf = self.buf.partition(b"\r\n")
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                raise _Malformed("chunk size %r" % line[:40]) from None
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + self.buf:
                    self._more(True)
                _, _, self.buf = (b"\r\n" + self.buf).partition(b"\r\n\r\n")
                return body
            while len(self.buf) < size + 2:
                self._more(True)
            body += self.buf[:size]
            self.buf = self.buf[size + 2 :]

    def until_close(self):
        """Reads to the end of a connection the server is closing."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return


def _is_reset(e):
    return isinstance(e, (ConnectionResetError, BrokenPipeError)) or getattr(e, "errno", None) in (
        errno.ECONNRESET,
        errno.EPIPE,
        errno.ECONNABORTED,
    )


class LoadGen:
    """Runs `keepalive` + `fresh` client threads against host:port (or the
    Unix socket `unix_path`) until `duration` seconds pass, `max_requests`
    requests were made, or `stop()` is called."""

    def __init__(
        self,
        port=None,
        host="127.0.0.1",
        unix_path=None,
        keepalive=2,
        fresh=2,
        idle=0,
        duration=10.0,
        max_requests=None,
        timeout=5.0,
        path="/",
        idle_pause=0.3,
    ):
        self.addr = unix_path if unix_path else (host, port)
        self.family = socket.AF_UNIX if unix_path else socket.AF_INET
        # how many clients of each kind
        self.keepalive, self.fresh, self.idle = keepalive, fresh, idle
        # when the run ends
        self.duration, self.max_requests = duration, max_requests
        self.timeout, self.idle_pause = timeout, idle_pause
        self.request = ("GET %s HTTP/1.1\r\nHost: loadgen\r\n\r\n" % path).encode()
        self.close_request = ("GET %s HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n" % path).encode()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ok = 0
        self._made = 0
        self._failures = []
        self._pids = Counter()
        self._threads = []
        self._started = None
        self._ended = None

    # -- running -----------------------------------------------------------

    def start(self):
        self._started = time.monotonic()
        modes = [(True, 0.0)] * self.keepalive + [(False, 0.0)] * self.fresh + [(True, self.idle_pause)] * self.idle
        for keepalive, pause in modes:
            t = threading.Thread(target=self._client, args=(keepalive, pause), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        self._ended = time.monotonic()
        return self.result()

    def wait(self):
        """Waits for the run to end by itself (duration or count)."""
        for t in self._threads:
            t.join()
        self._ended = time.monotonic()
        return self.result()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def ok(self):
        with self._lock:
            return self._ok

    def wait_ok(self, n, timeout=10.0):
        """Blocks until `n` more requests succeeded (the load is flowing)."""
        target = self.ok + n
        deadline = time.monotonic() + timeout
        while self.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError("load stalled: %s" % self.result().summary())
            time.sleep(0.01)

    def result(self):
        with self._lock:
            end = self._ended or time.monotonic()
            return Result(self._ok, list(self._failures), Counter(self._pids), end - (self._started or end))

    # -- one client ----------------------------------------------------------

    def _budget(self):
        """Claims one request of the run; False when the run is over."""
        if self._stop.is_set():
            return False
        if self.duration is not None and time.monotonic() - self._started >= self.duration:
            return False
        with self._lock:
            if self.max_requests is not None and self._made >= self.max_requests:
                return False
            self._made += 1
        return True

    def _connect(self):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.addr)
        except BaseException:
            s.close()
            raise
        if self.family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def _client(self, keepalive, pause):
        sock = reader = None
        conn_pid = None
        while self._budget():
            started = time.monotonic()
            fresh_conn = sock is None
            kind = detail = None
            try:
                if sock is None:
                    sock = self._connect()
                    reader = _Reader(sock)
                    conn_pid = None
                sock.sendall(self.request if keepalive else self.close_request)
                status, _version, headers, _body = reader.response()
                pid = headers.get(b"x-worker-pid")
                if pid is not None:
                    conn_pid = int(pid)
                closing = not keepalive or headers.get(b"connection", b"").lower() == b"close"
                if status != 200:
                    kind, detail = "status", str(status)
                elif closing:
                    try:
                        reader.until_close()
                    except OSError as e:
                        if _is_reset(e):
                            kind, detail = "reset_after_response", repr(e)
                        else:
                            raise
                if closing:
                    sock.close()
                    sock = reader = None
            except ConnectionRefusedError as e:
                kind, detail = "refused", repr(e)
            except socket.timeout as e:
                kind, detail = "timeout", repr(e)
            except _Closed as e:
                kind, detail = ("truncated" if e.partial else "closed"), str(e)
            except _Malformed as e:
                kind, detail = "malformed", str(e)
            except OSError as e:
                kind, detail = ("reset" if _is_reset(e) else "error:%s" % (e.errno,)), repr(e)
            if kind is not None and sock is not None and kind not in ("status", "reset_after_response"):
                sock.close()
                sock = reader = None
            with self._lock:
                if kind is None:
                    self._ok += 1
                    if conn_pid is not None:
                        self._pids[conn_pid] += 1
                else:
                    self._failures.append(Failure(kind, detail, started, keepalive, conn_pid, fresh_conn))
            if pause:
                self._stop.wait(pause)
        if sock is not None:
            sock.close()
