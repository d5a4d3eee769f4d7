"""HTTP/2 on the gthread, asgi, gevent and eventlet workers: ALPN over TLS
and cleartext h2c with prior knowledge from trusted peers, concurrent
streams, flow control
both ways, resets, GOAWAY at a graceful stop, max-requests counting
streams, and hostile clients (rapid reset, CONTINUATION and PING floods,
an HPACK bomb, streams that never open their window). Clients: curl,
h2load and nghttp (nghttp2), openssl s_client, and the `h2` package for
frame-level control."""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
from helpers import children, rss_kib, run_ferrocorn, wait_for

pytest.importorskip("h2")
import h2.config
import h2.connection
import h2.events
import h2.settings

KINDS = {
    "gthread": ("-k", "gthread", "--threads", "8"),
    "asgi": ("-k", "asgi"),
    "gevent": ("-k", "gevent"),
    "eventlet": ("-k", "eventlet"),
}
APP = {"gthread": "h2_app:app", "asgi": "h2_app:asgi", "gevent": "h2_app:app", "eventlet": "h2_app:app"}


def _installed(kind):
    """A worker type, skipped where its green library is not installed."""
    if kind in ("gevent", "eventlet") and importlib.util.find_spec(kind) is None:
        return pytest.param(kind, marks=pytest.mark.skip(reason="%s not installed" % kind))
    return kind


ALL_KINDS = [_installed(k) for k in sorted(KINDS)]
H2C = ("--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge")


def need(tool):
    if not shutil.which(tool):
        pytest.skip("%s is not installed (make ci-deps)" % tool)


def start(server, kind, *extra, **kw):
    return server(*KINDS[kind], *extra, APP[kind], **kw)


def tls_args(files):
    return ("--certfile", files["server"] + ".pem", "--keyfile", files["server"] + ".key")


class Client:
    """One HTTP/2 connection driven frame by frame with the `h2` package."""

    def __init__(self, port, tls_files=None, window=None, settings=None, timeout=10):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_files:
            ctx = ssl.create_default_context(cafile=tls_files["ca"] + ".pem")
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        local = dict(settings or {})
        if window is not None:
            local[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = window
        if local:
            self.conn.update_settings(local)
        self.auto_ack = window is None
        self.flush()
        self.responses = {}
        self.ended = set()
        self.resets = {}
        self.trailers = {}
        self.informational = {}
        self.goaway = None
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", body=None, headers=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost")]
        self.conn.send_headers(sid, hdrs + list(headers), end_stream=body is None and end)
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        self.responses[sid] = {"headers": None, "body": bytearray()}
        return sid

    def send_body(self, sid, body, end=True):
        """Sends as the server's window allows, reading its frames between."""
        view = memoryview(body)
        while view:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.flush()
                self.pump()
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self):
        """Reads once and handles the frames."""
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise ConnectionError("server closed the connection")
        for ev in self.conn.receive_data(data):
            self.on_event(ev)
        self.flush()

    def on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.responses[ev.stream_id]["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            self.informational.setdefault(ev.stream_id, []).append(dict(ev.headers)[b":status"])
        elif isinstance(ev, h2.events.DataReceived):
            self.responses[ev.stream_id]["body"] += ev.data
            if self.auto_ack and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.trailers[ev.stream_id] = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended.add(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev

    def wait(self, sids, timeout=20):
        deadline = time.monotonic() + timeout
        while not all(s in self.ended or s in self.resets for s in sids):
            assert time.monotonic() < deadline, "streams %s not over" % sids
            self.pump()
        return [self.responses[s] for s in sids]

    def get(self, path, **kw):
        (r,) = self.wait([self.request(path, **kw)])
        return r["headers"][b":status"], bytes(r["body"])

    def close(self):
        self.sock.close()


def curl(*args, timeout=30):
    need("curl")
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ---- negotiation


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_alpn_picks_h2_over_tls_and_http11_for_clients_without_it(server, tls_files, kind):
    s = start(server, kind, "--http-protocols", "h2,h1", *tls_args(tls_files))
    ca = tls_files["ca"] + ".pem"
    out = curl("--cacert", ca, "--http2", "-w", " %{http_version}", "https://localhost:%d/" % s.port)
    if kind != "asgi":
        assert out == b"HTTP/2.0 https 2"
    else:
        assert out == b"2 https ['http.response.trailers', 'tls'] 2"
    out = curl("--cacert", ca, "--http1.1", "-w", " %{http_version}", "https://localhost:%d/" % s.port)
    assert out.endswith(b" 1.1") and b"1.1 https" in out
    need("openssl")
    r = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port, "-CAfile", ca, "-alpn", "h2,http/1.1"],
        input=b"", capture_output=True, timeout=30,
    )  # fmt: skip
    assert b"ALPN protocol: h2" in r.stdout, r.stdout
    # Python's own TLS client over the same port.
    c = Client(s.port, tls_files)
    assert c.get("/")[0] == b"200"


def test_h1_first_in_http_protocols_is_still_the_servers_preference(server, tls_files):
    s = start(server, "gthread", "--http-protocols", "h1,h2", *tls_args(tls_files))
    ctx = ssl.create_default_context(cafile=tls_files["ca"] + ".pem")
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", s.port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as t:
        assert t.selected_alpn_protocol() == "http/1.1"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_h2c_with_prior_knowledge_from_a_trusted_peer(server, kind):
    s = start(server, kind, *H2C)
    out = curl("--http2-prior-knowledge", "-w", " %{http_version}", "http://127.0.0.1:%d/" % s.port)
    assert out.endswith(b" 2") and out.split()[1] == b"http"
    # A trusted peer is the TLS-terminating front end that speaks HTTP/2:
    # HTTP/1 from it is refused as Gunicorn refuses it.
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"Expected HTTP/2 connection preface, got b&#x27;GET / HTTP/1.1" in data or b"preface" in data


def test_untrusted_peers_get_http11_not_h2c(server):
    s = start(server, "gthread", *H2C, "--forwarded-allow-ips", "10.9.9.9")
    out = curl("--http1.1", "-w", " %{http_version}", "http://127.0.0.1:%d/" % s.port)
    assert out == b"HTTP/1.1 http 1.1"
    # The preface from an untrusted peer is not HTTP/2 to us: an HTTP/1
    # request line we refuse, never a stream for the app.
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        data = c.recv(65536)
    assert data.startswith(b"HTTP/1.1 400"), data


def test_settings_that_cannot_serve_http2_stop_the_start(tmp_path):
    r = run_ferrocorn(["-k", "sync", "--http-protocols", "h2,h1", "h2_app:app"], tmp_path)
    assert r.returncode != 0
    assert (
        "HTTP/2 (http_protocols = h2,h1) is served by the gthread, asgi, gevent and eventlet workers; -k sync serves "
        "HTTP/1 only"
    ) in r.stderr
    r = run_ferrocorn(
        ["-k", "gthread", "--http-protocols", "h2", "--http2-cleartext", "upgrade", "h2_app:app"], tmp_path
    )
    assert r.returncode != 0 and "use --http2-cleartext prior-knowledge" in r.stderr


# ---- streams


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_streams_of_one_connection_run_concurrently(server, kind):
    s = start(server, kind, *H2C)
    c = Client(s.port)
    began = time.monotonic()
    sids = [c.request("/sleep?s=1") for _ in range(6)]
    responses = c.wait(sids)
    took = time.monotonic() - began
    assert [r["headers"][b":status"] for r in responses] == [b"200"] * 6
    # One after another would take six seconds.
    assert took < 3.5, took


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_large_upload_and_download_with_flow_control(server, kind):
    s = start(server, kind, *H2C)
    body = os.urandom(3 * 1024 * 1024 + 17)
    c = Client(s.port)
    status, out = c.get("/upload", method="POST", body=body)
    assert (status, out) == (b"200", b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode()))
    status, out = c.get("/big?n=160")
    assert status == b"200" and out == b"x" * (160 * 65536)
    # curl and nghttp2 agree.
    got = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/big?n=40" % s.port)
    assert len(got) == 40 * 65536


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_expect_100_continue_is_answered_when_the_app_waits_for_the_body(server, kind):
    """As on HTTP/1 (and as Gunicorn 27 does on HTTP/2): a client that sent
    `expect: 100-continue` and holds its body back gets an interim 100 once
    the app asks for the body, then the final response."""
    s = start(server, kind, *H2C)
    c = Client(s.port)
    sid = c.request("/upload", method="POST", headers=[("expect", "100-continue")], end=False)
    deadline = time.monotonic() + 10
    while sid not in c.informational:
        assert time.monotonic() < deadline, "no 100 Continue"
        c.pump()
    assert c.informational[sid] == [b"100"] and c.responses[sid]["headers"] is None
    body = os.urandom(100_000)
    c.send_body(sid, body)
    (r,) = c.wait([sid])
    assert r["headers"][b":status"] == b"200"
    assert bytes(r["body"]) == b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
    # Without the expectation, no interim response.
    status, _ = c.get("/upload", method="POST", body=b"abc")
    assert status == b"200" and list(c.informational) == [sid]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_streams_that_take_their_100_and_never_send_a_body_time_out_alone(server, kind):
    """Hostile: 50 streams ask for 100-continue, get it, and never send
    their body. Another connection is served meanwhile; after --timeout each
    stream's wait ends (a response or a reset) and the connection and the
    worker go on."""
    threads = ("--threads", "64") if kind == "gthread" else ()
    s = start(server, kind, *H2C, "--timeout", "2", *threads)
    c = Client(s.port)
    sids = [c.request("/upload", method="POST", headers=[("expect", "100-continue")], end=False) for _ in range(50)]
    deadline = time.monotonic() + 10
    while len(c.informational) < len(sids):
        assert time.monotonic() < deadline, "100 Continue on %d streams of 50" % len(c.informational)
        c.pump()
    other = Client(s.port)
    started = time.monotonic()
    assert other.get("/")[0] == b"200"
    assert time.monotonic() - started < 1.0
    other.close()
    deadline = time.monotonic() + 15
    while not all(sid in c.ended or sid in c.resets for sid in sids):
        assert time.monotonic() < deadline, "streams still open"
        c.pump()
    assert c.get("/")[0] == b"200"
    assert worker_count(s) == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_stream_the_client_does_not_read_stalls_alone_and_memory_stays_bounded(server, kind):
    s = start(server, kind, *H2C, "--http2-max-concurrent-streams", "200")
    worker = s.wait_workers(1)[0]
    before = rss_kib(worker)
    # The client never gives window back: each stream gets its first 64 KiB.
    c = Client(s.port, window=65535)
    # A gthread stream that waits for the client holds its thread (until
    # --timeout resets it): fewer of them than threads, so others are served.
    sids = [c.request("/big?n=160") for _ in range(6 if kind == "gthread" else 60)]
    time.sleep(2)
    # Another connection is served meanwhile (this one's window is spent).
    other = Client(s.port)
    assert other.get("/")[0] == b"200"
    grown = rss_kib(worker) - before
    # Without backpressure each stream's 10 MiB would be queued (600 MiB).
    assert grown < 120 * 1024, "worker grew by %d KiB" % grown
    assert not any(sid in c.ended for sid in sids)
    c.close()
    # The streams' calls end once the connection is gone.
    wait_for(lambda: other.get("/")[0] == b"200" and rss_kib(worker) - before < 150 * 1024, timeout=20)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_reset_stream_stops_the_response_and_the_app_learns_it(server, kind):
    s = start(server, kind, *H2C)
    c = Client(s.port)
    sid = c.request("/endless")
    while len(c.responses[sid]["body"]) < 200_000:
        c.pump()
    c.conn.reset_stream(sid, error_code=8)  # CANCEL
    c.flush()
    expected = b"['http.disconnect']" if kind == "asgi" else b"['endless']"
    wait_for(lambda: c.get("/seen") == (b"200", expected), timeout=15, what="the app to learn of the reset")
    # The connection goes on serving other streams.
    assert c.get("/")[0] == b"200"


def test_asgi_response_trailers(server):
    s = start(server, "asgi", *H2C)
    c = Client(s.port)
    sid = c.request("/trailers", headers=[("te", "trailers")])
    (r,) = c.wait([sid])
    assert bytes(r["body"]) == b"body"
    assert c.trailers[sid] == {b"x-digest": b"abc"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_app_failure_is_a_500_on_its_stream_only(server, kind):
    s = start(server, kind, *H2C)
    c = Client(s.port)
    bad, good = c.request("/boom"), c.request("/")
    r_bad, r_good = c.wait([bad, good])
    assert r_bad["headers"][b":status"] == b"500"
    assert r_good["headers"][b":status"] == b"200"


def nghttp(url, streams, timeout=60):
    """`streams` requests for `url` on one connection with nghttp (the
    `h2` package treats a GOAWAY as the end of everything, so it cannot
    see streams finish after one): the statuses and the GOAWAY error codes
    it received."""
    need("nghttp")
    r = subprocess.run(
        ["nghttp", "-nv", "-m", str(streams), url], capture_output=True, text=True, timeout=timeout
    )  # fmt: skip
    statuses = re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", r.stdout)
    goaways = re.findall(r"recv GOAWAY frame.*\n.*error_code=(\w+)", r.stdout)
    return statuses, goaways, r.stdout


@pytest.mark.parametrize("kind", ["asgi", _installed("gevent"), _installed("eventlet")])
def test_request_timeout_answers_its_stream_504_and_the_others_go_on(server, kind):
    """--request-timeout ends a stream's request as it ends an HTTP/1 one;
    the other streams of the connection are served meanwhile and after.
    (gthread cannot interrupt the app's `time.sleep`: it replaces the
    worker, as on HTTP/1; see docs/request-timeout.md.)"""
    s = start(server, kind, *H2C, "--request-timeout", "1")
    c = Client(s.port)
    slow = c.request("/sleep?s=10")
    began = time.monotonic()
    assert c.get("/")[0] == b"200"
    (r,) = c.wait([slow])
    assert r["headers"][b":status"] == b"504"
    assert time.monotonic() - began < 8
    assert c.get("/")[0] == b"200"
    wait_for(lambda: "Request timeout: GET /sleep?s=10" in s.log(), what="the error line")
    # An app waiting for a body that never comes (parked on its stream).
    stuck = c.request("/upload", method="POST", end=False)
    (r,) = c.wait([stuck])
    assert r["headers"][b":status"] == b"504"
    assert c.get("/")[0] == b"200"
    assert worker_count(s) == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_access_log_and_max_requests_count_streams(server, kind, tmp_path):
    log = tmp_path / "access.log"
    s = start(server, kind, *H2C, "--access-logfile", str(log), "--max-requests", "10")
    first = s.wait_workers(1)[0]
    statuses, _, out = nghttp("http://127.0.0.1:%d/" % s.port, 10)
    assert statuses == ["200"] * 10, out
    # The tenth stream used the worker's budget up: a new one replaces it.
    wait_for(lambda: first not in s.workers() and len(s.workers()) == 1, timeout=20, what="the worker recycled")
    lines = log.read_text().splitlines()
    assert len([line for line in lines if '"GET / HTTP/2.0" 200' in line]) == 10, lines


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_graceful_stop_sends_goaway_and_finishes_streams_in_flight(server, kind):
    s = start(server, kind, *H2C, "--graceful-timeout", "10")
    result = []
    t = threading.Thread(target=lambda: result.append(nghttp("http://127.0.0.1:%d/sleep?s=2" % s.port, 5)))
    t.start()
    time.sleep(0.7)
    s.signal(signal.SIGTERM)
    t.join()
    statuses, goaways, out = result[0]
    assert statuses == ["200"] * 5, out
    assert goaways and set(goaways) == {"NO_ERROR"}, out
    assert s.wait_exit() == 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_h2load_many_streams_no_failures(server, kind, tls_files):
    need("h2load")
    s = start(server, kind, "--http-protocols", "h2,h1", *tls_args(tls_files))
    r = subprocess.run(
        ["h2load", "-n", "3000", "-c", "10", "-m", "20", "https://127.0.0.1:%d/sleep?s=0.01" % s.port],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "3000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout + r.stderr
    assert "3000 2xx" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("-k", "gthread", "flask_app:app"),
        ("-k", "gthread", "djsite.wsgi"),
        ("-k", "asgi", "djsite.asgi"),
        ("-k", "asgi", "fastapi_app:app"),
        ("-k", "gevent", "djsite.wsgi"),
    ],
    ids=["flask", "django-wsgi", "django-asgi", "fastapi", "django-gevent"],
)
def test_frameworks_over_h2(server, tls_files, args):
    """Real frameworks over TLS with ALPN h2: a page, and Django's echo of a
    POST body read through the stream."""
    app = args[-1]
    pytest.importorskip({"flask_app:app": "flask", "fastapi_app:app": "fastapi"}.get(app, "django"))
    if args[1] == "gevent":
        pytest.importorskip("gevent")
    ca = tls_files["ca"] + ".pem"
    s = server(*args[:-1], "--http-protocols", "h2", *tls_args(tls_files), app)
    url = "https://localhost:%d/" % s.port
    page = url + ("items/7?q=x" if app.startswith("fastapi") else "")
    out = curl("--cacert", ca, "--http2", "-w", "\n%{http_code} %{http_version}", page)
    assert out.endswith(b"\n200 2"), out
    if app.startswith("djsite"):
        out = curl(
            "--cacert", ca, "--http2", "-H", "content-type: text/plain", "--data-binary", "raw body", url + "echo/?x=1"
        )  # fmt: skip
        info = json.loads(out)
        assert (info["method"], info["body"], info["query"], info["secure"]) == ("POST", "raw body", {"x": "1"}, True)


# ---- hostile clients


@pytest.mark.parametrize("kind", ["asgi", _installed("gevent")])
def test_rapid_reset_flood_loses_its_connection_and_others_are_served(server, kind):
    s = start(server, kind, *H2C, "--log-level", "debug")
    c = Client(s.port)
    # The server ends the connection (GOAWAY ENHANCE_YOUR_CALM, then the
    # close; the GOAWAY may be lost to the reset of unread bytes).
    try:
        for _ in range(400):
            sid = c.request("/sleep?s=5")
            c.conn.reset_stream(sid, error_code=8)
        c.flush()
        while c.goaway is None:
            c.pump()
    except (ConnectionError, OSError):
        pass
    assert c.goaway is None or c.goaway.error_code == 11, c.goaway
    # h2's own rapid-reset guard (or our count of resets) closed it.
    wait_for(
        lambda: "excessive load generating behavior" in s.log() or "RST_STREAM rate exceeded" in s.log(),
        timeout=10,
        what="the flood noticed",
    )
    other = Client(s.port)
    assert other.get("/")[0] == b"200"


def _frame(kind, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


def _preface_and_settings():
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b"")


def _raw_flood(port, frames, seconds=5):
    """Sends `frames` repeatedly for a while, or until the server closes;
    returns the bytes sent."""
    sent = 0
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(_preface_and_settings())
        try:
            while time.monotonic() < deadline:
                c.sendall(frames)
                sent += len(frames)
                c.setblocking(False)
                try:
                    if c.recv(1 << 20) == b"":
                        break
                except BlockingIOError:
                    pass
                c.setblocking(True)
        except OSError:
            pass
    return sent


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_header_floods_and_hpack_bombs_are_bounded(server, kind):
    s = start(server, kind, *H2C, "--http2-max-header-list-size", "16384")
    worker = s.wait_workers(1)[0]
    before = rss_kib(worker)
    # HEADERS without END_HEADERS, then CONTINUATION frames without end.
    hpack = b"\x40\x05x-pad" + bytes([0x7F, 0x81, 0x7F]) + b"a" * 16384  # literal, new name, 16 KiB value
    headers = _frame(1, 0, 1, b"\x82\x84\x86\x41\x09localhost")
    stop = threading.Event()
    sent = [0]

    def flood():
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
            c.sendall(_preface_and_settings() + headers)
            try:
                while not stop.is_set():
                    c.sendall(_frame(9, 0, 1, hpack))
                    sent[0] += len(hpack)
            except OSError:
                pass

    t = threading.Thread(target=flood)
    t.start()
    t.join(timeout=10)
    stop.set()
    t.join()
    # The connection was cut long before the flood ran its course.
    assert sent[0] < 64 * 1024 * 1024, sent[0]
    # An HPACK bomb: one large header added to the table, then referenced
    # (one byte each) thousands of times.
    c = Client(s.port)
    big = "b" * 4000
    sid = c.conn.get_next_available_stream_id()
    hdrs = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    hdrs += [("x-bomb", big)] * 2000
    try:
        c.conn.send_headers(sid, hdrs, end_stream=True)
        c.flush()
        c.wait([sid], timeout=10)
        status = c.responses[sid]["headers"]
        assert sid in c.resets or status is None or status[b":status"] in (b"431", b"400"), status
    except (ConnectionError, OSError):
        pass
    other = Client(s.port)
    assert other.get("/")[0] == b"200"
    assert rss_kib(worker) - before < 64 * 1024


@pytest.mark.parametrize("kind", ["gthread", _installed("gevent")])
def test_ping_and_settings_floods_do_not_stop_others(server, kind):
    s = start(server, kind, *H2C)
    worker = s.wait_workers(1)[0]
    before = rss_kib(worker)
    pings = b"".join(_frame(6, 0, 0, i.to_bytes(8, "big")) for i in range(1000))
    settings = _frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64") * 1000
    results = []

    def client():
        c = Client(s.port)
        for _ in range(20):
            results.append(c.get("/")[0])

    for frames in (pings, settings):
        t = threading.Thread(target=_raw_flood, args=(s.port, frames, 3))
        t.start()
        client()
        t.join()
    assert results == [b"200"] * 40
    assert rss_kib(worker) - before < 64 * 1024


@pytest.mark.parametrize("kind", ["gthread", _installed("gevent")])
def test_stalled_stream_is_reset_after_the_timeout(server, kind):
    """A response whose client never opens its window is reset after
    --timeout, freeing its thread (or greenlet); the connection stays."""
    s = start(server, kind, *H2C, "--timeout", "3")
    c = Client(s.port, window=65535)
    sid = c.request("/big?n=20")
    deadline = time.monotonic() + 15
    while sid not in c.resets:
        assert time.monotonic() < deadline, "no reset"
        c.pump()
    assert c.resets[sid] == 8  # CANCEL
    assert worker_count(s) == 1


def worker_count(s):
    return len(children(s.pid))
