"""TLS (--certfile/--keyfile, --ca-certs, --cert-reqs, --ciphers, the
ssl_context hook) on every worker type (gevent, eventlet and tornado too), against Python's ssl, curl and
openssl s_client: both TLS versions, large bodies each way, client
certificates, bad configurations refused at start, certificates replaced
by a HUP under load, plain HTTP and stalled handshakes on the TLS port."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
from helpers import APPS, read_all, run_ferrocorn, wait_for

KINDS = {
    "sync": (("-k", "sync"), "tls_app:app"),
    "gthread": (("-k", "gthread", "--threads", "4"), "tls_app:app"),
    "asgi": (("-k", "asgi"), "tls_app:asgi"),
    "gevent": (("-k", "gevent"), "tls_app:app"),
    "eventlet": (("-k", "eventlet"), "tls_app:app"),
    "tornado": (("-k", "tornado"), "tls_tornado_app:app"),
}
# eventlet runs gevent's engine with other hub waits: the test of HTTPS with
# large bodies each way covers what differs; the rest run on gevent.
EACH = sorted(set(KINDS) - {"eventlet"})


def tls_args(files, name="server"):
    return ("--certfile", files[name] + ".pem", "--keyfile", files[name] + ".key")


def start(server, files, kind, *extra, name="server", **kw):
    worker, app = KINDS[kind]
    return server(*worker, *tls_args(files, name), *extra, app, **kw)


def client_context(files, cert=None, version=None):
    ctx = ssl.create_default_context(cafile=files["ca"] + ".pem")
    if cert:
        ctx.load_cert_chain(files[cert] + ".pem", files[cert] + ".key")
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


class Session:
    """What the client saw of the TLS session, taken before the server's
    close can end it."""

    def __init__(self, sock):
        self.version = sock.version()
        self.cipher = sock.cipher()[0]
        self.alpn = sock.selected_alpn_protocol()
        self.organization = dict(x[0] for x in sock.getpeercert()["subject"]).get("organizationName")


def get(port, path, ctx, method="GET", body=None, conn=None):
    """(status, body, the connection, its Session) over HTTPS; `conn`
    reuses one."""
    conn = conn or http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
    conn.request(method, path, body=body)
    session = Session(conn.sock)
    resp = conn.getresponse()
    return resp.status, resp.read(), conn, session


def need(tool):
    if shutil.which(tool) is None:
        if os.environ.get("FERROCORN_CI"):
            pytest.fail("%s is missing: make ci-deps installs it" % tool)
        pytest.skip("%s is not installed (make ci-deps)" % tool)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_https_on_each_worker(server, tls_files, kind, version):
    s = start(server, tls_files, kind)
    ctx = client_context(tls_files, version=version)
    status, body, conn, session = get(s.port, "/info", ctx)
    assert status == 200
    assert json.loads(body)["scheme"] == "https"
    assert session.version == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert session.alpn is None  # the client offered none
    # Bodies larger than any TLS buffer, each way, on the same connection
    # where the worker keeps connections alive.
    reuse = None if kind == "sync" else conn
    status, body, conn, _ = get(s.port, "/big?5000001", ctx, conn=reuse)
    assert status == 200 and len(body) == 5000001 and body[:16] == b"0123456789abcdef"
    upload = os.urandom(3_000_000)
    reuse = None if kind == "sync" else conn
    status, body, conn, _ = get(s.port, "/echo", ctx, method="POST", body=upload, conn=reuse)
    assert (status, body) == (200, b"%d %s" % (len(upload), hashlib.sha256(upload).hexdigest().encode()))
    conn.close()


@pytest.mark.parametrize("kind", ["sync", "gthread", "gevent"])
def test_file_wrapper_is_sent_through_tls(server, tls_files, kind):
    # sendfile() would bypass the encryption: the file is read and sent.
    s = start(server, tls_files, kind)
    status, body, conn, _ = get(s.port, "/file", client_context(tls_files))
    conn.close()
    with open(os.path.join(APPS, "tls_app.py"), "rb") as f:
        assert (status, body) == (200, f.read())


def test_curl_and_openssl_clients(server, tls_files):
    need("curl")
    need("openssl")
    s = start(server, tls_files, "gthread")
    out = subprocess.run(
        ["curl", "-sS", "--cacert", tls_files["ca"] + ".pem", "--http1.1", "https://localhost:%d/info" % s.port],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scheme"] == "https"
    # ALPN: the server picks http/1.1 from what the client offers.
    out = subprocess.run(
        [
            "openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port, "-CAfile", tls_files["ca"] + ".pem",
            "-alpn", "h2,http/1.1", "-verify_return_error", "-ign_eof",
        ],
        input="GET /info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert "ALPN protocol: http/1.1" in out.stdout + out.stderr, out.stdout + out.stderr
    assert '"scheme": "https"' in out.stdout


@pytest.mark.parametrize("kind", EACH)
def test_client_certificates_required(server, tls_files, kind):
    s = start(server, tls_files, kind, "--ca-certs", tls_files["ca"] + ".pem", "--cert-reqs", "2")
    status, body, conn, _ = get(s.port, "/info", client_context(tls_files, cert="client"))
    conn.close()
    assert status == 200
    info = json.loads(body)
    with open(tls_files["client"] + ".pem") as f:
        client_pem = f.read()
    if kind == "asgi":
        tls = info["tls"]
        assert tls["client_cert_name"] == "O=ferrocorn tests,CN=client one"
        assert tls["client_cert_chain"][0].strip() == client_pem.strip()
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert tls["client_cert_error"] is None
    elif kind == "tornado":
        # Tornado's request has no certificate to show here (its
        # get_ssl_certificate() reads an ssl socket the engine does not
        # have): the handshake that required one is what is checked.
        assert info["scheme"] == "https"
    else:
        assert info["client_cert"].strip() == client_pem.strip()
    # No certificate, or one from a CA the server does not trust: the
    # handshake fails and the app never sees a request.
    for cert in (None, "rogue"):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            get(s.port, "/info", client_context(tls_files, cert=cert))
    wait_for(lambda: "Invalid request from ip=127.0.0.1: TLS:" in s.log(), what="the refused handshake logged")


def test_client_certificates_optional(server, tls_files):
    s = start(server, tls_files, "gthread", "--ca-certs", tls_files["ca"] + ".pem", "--cert-reqs", "1")
    status, body, conn, _ = get(s.port, "/info", client_context(tls_files))
    conn.close()
    assert (status, json.loads(body)["client_cert"]) == (200, None)
    status, body, conn, _ = get(s.port, "/info", client_context(tls_files, cert="client"))
    conn.close()
    assert status == 200 and "BEGIN CERTIFICATE" in json.loads(body)["client_cert"]
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        get(s.port, "/info", client_context(tls_files, cert="rogue"))


def test_ssl_context_hook_sets_the_minimum_version(server, tls_files, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text(
        "import ssl\n"
        "def ssl_context(conf, default_ssl_context_factory):\n"
        "    ctx = default_ssl_context_factory()\n"
        "    ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n"
        "    return ctx\n"
    )
    s = start(server, tls_files, "gthread", "-c", str(conf))
    status, _, conn, _ = get(s.port, "/info", client_context(tls_files, version=ssl.TLSVersion.TLSv1_3))
    conn.close()
    assert status == 200
    with pytest.raises(ssl.SSLError):
        get(s.port, "/info", client_context(tls_files, version=ssl.TLSVersion.TLSv1_2))


def test_ciphers_setting_limits_tls12_suites(server, tls_files):
    s = start(server, tls_files, "sync", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384")
    ctx = client_context(tls_files, version=ssl.TLSVersion.TLSv1_2)
    status, _, conn, session = get(s.port, "/info", ctx)
    assert status == 200 and session.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
    conn.close()
    ctx = client_context(tls_files, version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError):
        get(s.port, "/info", ctx)


def _refused(tmp_path, args, *reason):
    r = run_ferrocorn(list(args) + ["-b", "127.0.0.1:0", "tls_app:app"], tmp_path)
    assert r.returncode != 0, r.stderr
    for part in reason:
        assert part in r.stderr, r.stderr
    return r


def test_broken_tls_configuration_stops_the_start(tls_files, tmp_path):
    missing = str(tmp_path / "missing.pem")
    _refused(tmp_path, ["--certfile", missing, "--keyfile", tls_files["server"] + ".key"], missing)
    # The key of another certificate.
    _refused(tmp_path, ["--certfile", tls_files["server"] + ".pem", "--keyfile", tls_files["client"] + ".key"], "key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    _refused(tmp_path, ["--certfile", str(garbage), "--keyfile", tls_files["server"] + ".key"], str(garbage))
    _refused(tmp_path, [*tls_args(tls_files), "--ciphers", "NO-SUCH-CIPHER"], "NO-SUCH-CIPHER")
    _refused(tmp_path, [*tls_args(tls_files), "--cert-reqs", "3"], "cert_reqs")
    conf = tmp_path / "conf.py"
    conf.write_text(
        "def ssl_context(conf, default_ssl_context_factory):\n"
        "    ctx = default_ssl_context_factory()\n"
        "    ctx.set_servername_callback(lambda *a: None)\n"
        "    return ctx\n"
    )
    _refused(tmp_path, [*tls_args(tls_files), "-c", str(conf)], "set_servername_callback", "not supported")
    conf.write_text(
        "def ssl_context(conf, default_ssl_context_factory):\n"
        "    ctx = default_ssl_context_factory()\n"
        "    ctx.set_alpn_protocols(['h2', 'http/1.1'])\n"
        "    return ctx\n"
    )
    _refused(tmp_path, [*tls_args(tls_files), "-c", str(conf)], "ALPN protocol(s) h2")


def test_hup_replaces_the_certificate_without_failures(server, tls_files, tmp_path):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(tls_files["server"] + ".pem", cert)
    shutil.copy(tls_files["server"] + ".key", key)
    s = server(
        "-k", "gthread", "--threads", "4", "-w", "2", "--certfile", str(cert), "--keyfile", str(key), "tls_app:app"
    )
    ctx = client_context(tls_files)
    seen, failures, stop = [], [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                status, _, conn, session = get(s.port, "/info", ctx)
                conn.close()
                seen.append((status, session.organization))
            except Exception as e:  # every failure is one the test reports
                failures.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(seen) > 20, what="requests with the first certificate")
        # A broken certificate file: the reload is refused, the old one serves.
        cert.write_text("garbage\n")
        s.signal(signal.SIGHUP)
        wait_for(lambda: "Reload failed" in s.log(), what="the refused reload")
        before = len(seen)
        wait_for(lambda: len(seen) > before + 20, what="requests after the refused reload")
        shutil.copy(tls_files["server2"] + ".pem", cert)
        shutil.copy(tls_files["server2"] + ".key", key)
        s.signal(signal.SIGHUP)
        wait_for(lambda: "second" in {o for _, o in seen[-10:]}, timeout=30, what="the second certificate served")
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert {st for st, _ in seen} == {200}
    assert {o for _, o in seen} == {"first", "second"}
    # Once the new workers serve, only the new certificate is seen.
    assert {o for _, o in seen[-10:]} == {"second"}


def test_plain_http_on_the_tls_port(server, tls_files):
    s = start(server, tls_files, "gthread")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = read_all(c)
    c.close()
    # A TLS alert (content type 21), never an HTTP answer or the app.
    assert answer[:1] == b"\x15", answer
    wait_for(lambda: "Invalid request from ip=127.0.0.1: TLS:" in s.log(), what="the warning")
    status, _, conn, _ = get(s.port, "/info", client_context(tls_files))
    conn.close()
    assert status == 200


@pytest.mark.parametrize("kind", EACH)
def test_stalled_handshakes_are_dropped_and_others_served(server, tls_files, kind):
    s = start(server, tls_files, kind, "--request-head-timeout", "2")
    ctx = client_context(tls_files)
    # Clients that connect and say nothing, and clients that stop halfway
    # through a ClientHello. The sync worker serves one connection at a
    # time, each stalled one for up to the head timeout: fewer of them.
    stalled = []
    hello = _client_hello()
    for i in range(4 if kind == "sync" else 40):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        if i % 2:
            c.sendall(hello[: len(hello) // 2])
        stalled.append(c)
    started = time.time()
    status, _, conn, _ = get(s.port, "/info", ctx)
    conn.close()
    assert status == 200
    assert time.time() - started < (15 if kind == "sync" else 5)
    # Every stalled client is let go by the server (an alert at most, then
    # the close), none held beyond the head timeout and its slack.
    deadline = time.time() + 20
    for c in stalled:
        c.settimeout(max(0.1, deadline - time.time()))
        try:
            while c.recv(4096):
                pass
        except ConnectionResetError:
            pass
        c.close()
    assert time.time() < deadline


def _client_hello():
    """The first bytes a real TLS client sends."""
    a, b = socket.socketpair()
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    a.close()
    b.close()
    return out.read()


@pytest.mark.parametrize("kind", ["asgi", "tornado"])
def test_websocket_over_tls(server, tls_files, kind):
    connect = pytest.importorskip("websockets.sync.client").connect

    s = start(server, tls_files, kind)
    with connect("wss://127.0.0.1:%d/ws" % s.port, ssl=client_context(tls_files)) as ws:
        ws.send("over tls")
        assert ws.recv() == "over tls"
        big = os.urandom(500_000)
        ws.send(big)
        assert ws.recv() == big


@pytest.mark.parametrize("kind", ["gthread", "gevent"])
def test_slow_reader_of_a_large_tls_response_keeps_memory_bounded(server, tls_files, kind):
    s = start(server, tls_files, kind)
    worker = s.wait_workers(1)[0]

    def rss():
        with open("/proc/%d/status" % worker) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    base = rss()
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c = client_context(tls_files).wrap_socket(raw, server_hostname="localhost")
    c.sendall(b"GET /big?200000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = 0
    for _ in range(50):
        got += len(c.recv(16384))
        time.sleep(0.02)
    # Others are served meanwhile.
    status, _, conn, _ = get(s.port, "/info", client_context(tls_files))
    conn.close()
    assert status == 200
    # The worker holds what the socket cannot take, not the 200 MB.
    assert rss() - base < 40 * 1024 * 1024
    c.close()
    assert got > 0
