"""`--protocol uwsgi`: the packet corpus (tests/conformance/uwsgi-cases.json)
against what Gunicorn 27 answered on each worker type, the answers' framing,
refusals and their log lines, start-up checks, a real nginx in front with
`uwsgi_pass` and `include uwsgi_params`, and hostile clients."""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import CONFORMANCE, free_port, read_all, rss_kib, run_ferrocorn, wait_for

sys.path.insert(0, CONFORMANCE)
from uwsgi_cases import nginx as nginx_vars
from uwsgi_cases import packet

needs_nginx = pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed (make ci-deps installs it)")
UWSGI_PARAMS = "/etc/nginx/uwsgi_params"

WSGI = "uwsgi_app:wsgi"
ASGI = "uwsgi_app:asgi"


def app_for(kind):
    return ASGI if kind == "asgi" else WSGI


def start_uwsgi(server, kind, *args, **kw):
    extra = ("--threads", "4") if kind == "gthread" else ()
    return server("-k", kind, "--protocol", "uwsgi", *extra, *args, app_for(kind), **kw)


def exchange(port, raw, timeout=5):
    """Sends raw bytes and reads until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return read_all(s)


# -- the corpus, against Gunicorn 27's answers --------------------------------


@pytest.mark.parametrize(
    "worker,golden,app",
    [
        ("-k sync", "expected-uwsgi-sync.json", "echo_app:app"),
        ("-k gthread --threads 2", "expected-uwsgi-gthread.json", "echo_app:app"),
        ("-k asgi", "expected-uwsgi-asgi.json", "echo_asgi:app"),
        ("-k gevent", "expected-uwsgi-gevent.json", "echo_app:app"),
    ],
)
def test_packets_get_gunicorns_answers(worker, golden, app):
    """Every packet, valid or not, gets what Gunicorn 27 answered with the
    same worker type: the same statuses on the connection and the same
    request as the app saw it."""
    cmd = [
        sys.executable,
        os.path.join(CONFORMANCE, "conformance.py"),
        "compare",
        "--cases",
        os.path.join(CONFORMANCE, "uwsgi-cases.json"),
        "--golden",
        os.path.join(CONFORMANCE, golden),
        "--server",
        sys.executable + " -m ferrocorn " + worker + " -b 127.0.0.1:{port} {flags} " + app,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert summary.startswith("conformance:"), r.stdout + r.stderr
    total = len(json.load(open(os.path.join(CONFORMANCE, "uwsgi-cases.json")))["cases"])
    assert summary.split()[1] == "%d/%d" % (total, total), r.stdout


# -- what the answer looks like -----------------------------------------------

GET = packet(nginx_vars(uri="/stream"))


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi", "gevent"])
def test_answer_without_length_is_raw_until_close(server, kind):
    """An answer with no Content-Length is not chunked (nginx would pass
    the markers on as body): its bytes follow the head and the connection's
    end delimits them, as Gunicorn writes it."""
    s = start_uwsgi(server, kind)
    raw = exchange(s.port, GET)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), raw
    assert b"transfer-encoding" not in head.lower(), head
    assert b"\r\nConnection: close" in head, head
    assert body == b"hello uwsgi world"


@pytest.mark.parametrize("kind", ["gthread", "asgi", "gevent"])
def test_packets_on_one_connection(server, kind):
    """Answers with a length keep the connection for the next packet,
    including pipelined ones with bodies; sync answers one and closes."""
    s = start_uwsgi(server, kind)
    first = packet(nginx_vars("POST", "/a", b"12345"), b"12345")
    second = packet(nginx_vars("GET", "/b?x=1"))
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(first + second)
        answers = []
        buf = b""
        while len(answers) < 2:
            chunk = c.recv(65536)
            assert chunk, (answers, buf)
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                answers.append(json.loads(rest[:length]))
                buf = rest[length:]
    assert [(a["method"], a["path"], a["body_len"]) for a in answers] == [("POST", "/a", 5), ("GET", "/b", 0)]
    assert answers[1]["query"] == "x=1"


def test_sync_answers_one_packet_per_connection(server):
    s = start_uwsgi(server, "sync")
    raw = exchange(s.port, packet(nginx_vars(uri="/one")) + packet(nginx_vars(uri="/two")))
    assert raw.count(b"HTTP/1.1 200 OK") == 1, raw
    assert b'"/one"' in raw and b"Connection: close" in raw


def test_refused_packets_and_their_log_lines(server):
    """The WSGI workers answer a refused packet as Gunicorn's do, with its
    500 page and an error line naming its exception; the asgi worker closes
    without a word, as Gunicorn's asgi worker does, and logs at debug."""
    s = start_uwsgi(server, "gthread", "--uwsgi-allow-from", "192.0.2.1")
    raw = exchange(s.port, GET)
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), raw
    wait_for(lambda: "uWSGI request from '127.0.0.1' not allowed" in s.log(), what="the refusal in the log")
    assert "Error handling request (no URI read)" in s.log()
    assert "ForbiddenUWSGIRequest" in s.log()

    bad = exchange(s.port, packet([], modifier1=5))
    assert bad.startswith(b"HTTP/1.1 500"), bad

    a = start_uwsgi(server, "asgi", "--uwsgi-allow-from", "192.0.2.1", "--log-level", "debug")
    assert exchange(a.port, GET) == b""
    wait_for(lambda: "uWSGI parse error: uWSGI request from '127.0.0.1' not allowed" in a.log(), what="debug line")
    assert "[ERROR]" not in a.log().split("Booting worker")[-1]


def test_allow_list_takes_networks_and_wildcard(server):
    s = start_uwsgi(server, "gthread", "--uwsgi-allow-from", "10.0.0.0/8,127.0.0.0/8")
    assert exchange(s.port, GET).endswith(b"hello uwsgi world")
    w = start_uwsgi(server, "sync", "--uwsgi-allow-from", "*")
    assert exchange(w.port, GET).endswith(b"hello uwsgi world")


def test_unix_socket_peers_are_always_allowed(server, tmp_path):
    path = str(tmp_path / "uwsgi.sock")
    s = server(
        "-k", "gthread", "--protocol", "uwsgi", "--uwsgi-allow-from", "192.0.2.1", "-b", "unix:" + path, WSGI,
        bind=False, wait=False,
    )  # fmt: skip
    s.wait_booted()
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(5)
        c.connect(path)
        c.sendall(GET)
        assert read_all(c).endswith(b"hello uwsgi world")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--protocol", "fastcgi"], "Invalid protocol: fastcgi (valid: http, uwsgi)"),
        (["--protocol", "uwsgi", "--proxy-protocol", "v1"], "--proxy-protocol cannot be used with --protocol uwsgi"),
        (["--protocol", "uwsgi", "-k", "gthread", "--http-protocols", "h2,h1"], "cannot be used with --protocol uwsgi"),
        (["--protocol", "uwsgi", "-k", "gunicorn_workers.Tagged"], "gunicorn_workers.Tagged reads its own requests"),
        (["--uwsgi-allow-from", "not-an-address"], "not-an-address"),
    ],
)
def test_start_refuses_what_could_only_fail(tmp_path, args, message):
    r = run_ferrocorn(args + [WSGI], tmp_path)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


# -- nginx in front -----------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi; scgi_temp_path scgi;
    client_max_body_size 64m;
    upstream app { server %(upstream)s; }
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            include %(params)s;
            uwsgi_pass app;
            uwsgi_read_timeout 30s;
        }
        location /ws {
            include %(params)s;
            uwsgi_pass app;
            uwsgi_param HTTP_UPGRADE $http_upgrade;
            uwsgi_param HTTP_CONNECTION $connection_upgrade;
        }
    }
}
"""


@contextlib.contextmanager
def nginx_in_front(tmp_path, upstream):
    """Debian's nginx on a loopback port with its own prefix and
    configuration, passing to `upstream` with uwsgi_pass; stopped by pid."""
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF % {"upstream": upstream, "port": port, "params": UWSGI_PARAMS})
    err = prefix / "error.log"
    settings = "daemon off; user root; pid %s; error_log %s info;" % (prefix / "nginx.pid", err)
    proc = subprocess.Popen(
        ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(err), "-g", settings],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening():
            assert proc.poll() is None, err.read_text()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            return False

        wait_for(listening, what="nginx")
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(port, method, path, body=None, headers=None, chunked=False, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@needs_nginx
@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi", "gevent"])
def test_behind_nginx(server, tmp_path, kind):
    """GET, POST, a chunked upload (nginx buffers it and sends its length),
    a 20 MB download streamed without a length, 50 concurrent clients, and
    the access log: each as Gunicorn's uwsgi users see it."""
    log = tmp_path / "access.log"
    s = start_uwsgi(server, kind, "--access-logfile", str(log))
    with nginx_in_front(tmp_path, "127.0.0.1:%d" % s.port) as port:
        status, _, body = request(port, "GET", "/some/path?a=1&b=%20c", headers={"X-Custom": "yes"})
        assert status == 200, body
        seen = json.loads(body)
        assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/some/path", "a=1&b=%20c")
        assert seen["custom"] == "yes" and seen["host"].startswith("127.0.0.1")
        # The peer is nginx; the client's address is nginx's business.
        assert seen["remote_addr"] == "127.0.0.1" and seen["scheme"] == "http"

        payload = bytes(range(256)) * 4096  # 1 MiB
        status, _, body = request(port, "POST", "/upload", body=payload)
        seen = json.loads(body)
        assert (status, seen["body_len"], seen["body_sum"]) == (200, len(payload), sum(payload) % 65536)

        status, _, body = request(port, "PUT", "/chunked", body=iter([payload[:1000], payload[1000:]]), chunked=True)
        seen = json.loads(body)
        assert (status, seen["body_len"], seen["content_length"]) == (200, len(payload), str(len(payload)))

        size = 20 * 1024 * 1024 + 7
        status, _, body = request(port, "GET", "/download?size=%d" % size)
        assert status == 200 and len(body) == size and body[:16] == b"0123456789abcdef"

        results = []

        def client(i):
            st, _, b = request(port, "GET", "/c%d" % i)
            results.append((st, json.loads(b)["path"]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == sorted((200, "/c%d" % i) for i in range(50))

    wait_for(lambda: '"GET /some/path?a=1&b=%20c HTTP/1.1" 200' in log.read_text(), what="the access line")
    assert '"POST /upload HTTP/1.1" 200' in log.read_text()


@needs_nginx
def test_websocket_through_nginx(server, tmp_path):
    """nginx passes an upgraded connection over uwsgi as well: the asgi
    worker serves the WebSocket (as Gunicorn's asgi worker does)."""
    import base64

    s = start_uwsgi(server, "asgi")
    with nginx_in_front(tmp_path, "127.0.0.1:%d" % s.port) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            key = base64.b64encode(os.urandom(16)).decode()
            c.sendall(
                (
                    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head
            for text in (b"one", b"two"):
                mask = os.urandom(4)
                c.sendall(
                    b"\x81" + bytes([0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))
                )
                want = b"\x81" + bytes([5 + len(text)]) + b"echo:" + text
                got = b""
                while len(got) < len(want):
                    got += c.recv(4096)
                assert got == want


@needs_nginx
def test_tornado_behind_nginx(server, tmp_path):
    """The tornado worker runs on the asgi engine, so it takes uwsgi too
    (Gunicorn's tornado worker leaves parsing to Tornado, which speaks only
    HTTP)."""
    pytest.importorskip("tornado")
    s = server("-k", "tornado", "--protocol", "uwsgi", "uwsgi_app:tornado_app")
    with nginx_in_front(tmp_path, "127.0.0.1:%d" % s.port) as port:
        status, _, body = request(port, "GET", "/t?q=1")
        assert status == 200 and json.loads(body) == {"method": "GET", "path": "/t", "query": "q=1"}
        status, _, body = request(port, "POST", "/t", body=b"x" * 100000)
        assert json.loads(body)["body_len"] == 100000


@needs_nginx
def test_unix_socket_behind_nginx(server, tmp_path):
    sock = tmp_path / "app.sock"
    s = server("-k", "gthread", "--protocol", "uwsgi", "-b", "unix:%s" % sock, WSGI, bind=False, wait=False)
    s.wait_booted()
    with nginx_in_front(tmp_path, "unix:%s" % sock) as port:
        status, _, body = request(port, "GET", "/via-unix")
        assert status == 200 and json.loads(body)["path"] == "/via-unix"


# -- hostile clients ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_half_a_packet_meets_the_head_timeout(server, kind):
    """A packet whose vars never finish is a request head that never
    finishes: --request-head-timeout closes it as over HTTP."""
    s = start_uwsgi(server, kind, "--request-head-timeout", "1")
    full = packet(nginx_vars(uri="/slow"))
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(full[: len(full) // 2])
        t0 = time.monotonic()
        assert c.recv(65536) == b""
        assert 0.5 < time.monotonic() - t0 < 5


@pytest.mark.parametrize("kind", ["gthread", "asgi"])
def test_hostile_packets_do_not_stop_the_others(server, kind):
    """Slow clients holding half a header or half a vars block, a flood of
    malformed packets, packets of 1,000 vars, and a body that declares a
    gigabyte and stalls: meanwhile a well-formed packet is answered
    promptly every time, and the worker's memory stays bounded."""
    s = start_uwsgi(server, kind, "--worker-connections", "2000")
    worker = s.wait_workers(1)[0]
    exchange(s.port, GET)
    before = rss_kib(worker)
    held = []
    try:
        full = packet(nginx_vars(uri="/slow"))
        for i in range(300):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(full[:2] if i % 2 else full[: len(full) // 2])
            held.append(c)
        big = packet(nginx_vars("POST", "/big", extra=[("CONTENT_LENGTH", str(10**9))]))
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(big + b"x" * 256 * 1024)
            held.append(c)
        many = packet(
            [("REQUEST_METHOD", "GET"), ("HTTP_CONNECTION", "close")] + [("V%d" % i, "v" * 40) for i in range(998)]
        )
        for _ in range(5):
            t0 = time.monotonic()
            assert exchange(s.port, GET).endswith(b"hello uwsgi world")
            assert time.monotonic() - t0 < 2.0, "a good packet waited behind the slow ones"
            for garbage in (b"\x05\x00\x00\x00", b"GET / HTTP/1.1\r\n\r\n", packet([], size=3) + b"\x09\x00ab"):
                answer = exchange(s.port, garbage)
                assert answer == b"" or answer.startswith(b"HTTP/1.1 500"), answer
            for _ in range(50):
                assert b"200 OK" in exchange(s.port, many)
        grown = (rss_kib(worker) - before) / 1024
        assert grown < 64, "worker grew %.1f MiB" % grown
    finally:
        for c in held:
            c.close()
    assert exchange(s.port, GET).endswith(b"hello uwsgi world")
