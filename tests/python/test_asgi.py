"""The asgi worker end to end: ASGI 3.0 (spec 2.4) scopes, streaming both
ways, failures, lifespan, stops and uvicorn's worker names, against a raw
ASGI app (apps/asgi_app.py)."""

import json
import os
import re
import signal
import socket
import time

import pytest
from helpers import accepted_connections, read_all, read_response, wait_for

APP = "asgi_app:app"


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request):
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return request.param


def start(server, *args, loop="asyncio", **kw):
    return server("-k", "asgi", "--asgi-loop", loop, *args, APP, **kw)


def body_of(response):
    return response.partition(b"\r\n\r\n")[2]


def test_http_scope(server, loop_kind):
    s = start(server, "--root-path", "/base", loop=loop_kind)
    status, headers, data = s.request("GET", "/scope?a=1&b=%20", headers={"X-Custom": "v1"})
    assert status == 200
    scope = json.loads(data)
    # the scope's plain keys as the request and --root-path set them
    request_keys = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http"}
    url_keys = {"path": "/scope", "raw_path": "/scope", "query_string": "a=1&b=%20", "root_path": "/base"}
    for expected in (request_keys, url_keys):
        assert {key: scope.get(key) for key in expected} == expected
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert ["x-custom", "v1"] in scope["headers"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["server"] == ["127.0.0.1", s.port]
    assert scope["state"] == {"greeting": "hello from lifespan"}
    assert "http.response.pathsend" in scope["extensions"]
    assert headers["server"] == "ferrocorn"
    assert "date" in headers
    # the loop asked for is the one running the app (uvloop's absence
    # would fall back to asyncio with a warning only)
    loop = s.request("GET", "/loop")[2].decode()
    assert loop.startswith("%s." % loop_kind), loop


def test_path_is_decoded_and_raw_path_is_not(server):
    s = start(server)
    out = s.raw(b"GET /scope/%C3%A9?q=%41 HTTP/1.1\r\nHost: x\r\n\r\n")
    scope = json.loads(body_of(out))
    assert scope["path"] == "/scope/\u00e9"
    assert scope["raw_path"] == "/scope/%C3%A9"
    assert scope["query_string"] == "q=%41"


def test_request_bodies_stream_through_receive(server, loop_kind):
    s = start(server, loop=loop_kind)
    payload = os.urandom(5 * 1024 * 1024)
    status, _, data = s.request("POST", "/echo", body=payload)
    assert status == 200 and data == payload
    # A big body comes in several bounded messages, never buffered whole.
    status, _, data = s.request("POST", "/chunks", body=payload)
    seen = json.loads(data)
    assert seen["total"] == len(payload)
    assert len(seen["sizes"]) > 1 and max(seen["sizes"]) <= 128 * 1024
    # Chunked upload
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (b"abc", b"defg")) + b"0\r\n\r\n"
    out = s.raw(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert body_of(out) == b"abcdefg"


def test_expect_100_continue(server):
    s = start(server)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        out = read_response(sock)
        assert out.startswith(b"HTTP/1.1 200") and body_of(out) == b"hello"
    finally:
        sock.close()


def test_keep_alive_and_pipelining(server):
    s = start(server)
    reqs = b"".join(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % i for i in range(5))
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(reqs)
        buf = b""
        bodies = []
        while len(bodies) < 5:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
            while True:
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep or len(rest) < 1:
                    break
                assert b"Connection: close" not in head
                bodies.append(rest[:1])
                buf = rest[1:]
        assert bodies == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        sock.close()


def test_keep_alive_timeout_closes_idle_connections(server):
    s = start(server, "--keep-alive", "1")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        t = time.time()
        sock.settimeout(30)
        assert sock.recv(10) == b""  # closed once idle for a while, not at once
        assert time.time() - t > 0.5
    finally:
        sock.close()


def test_streaming_response_is_chunked_and_arrives_in_parts(server, loop_kind):
    s = start(server, loop=loop_kind)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert b"transfer-encoding: chunked" in first.lower()
        whole = first
        while not whole.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, whole
            whole += chunk
        for i in range(5):
            assert b"part %d\n" % i in whole
        # the first part came before the last was produced
        assert b"part 4" not in first
    finally:
        sock.close()


def test_http10_response_without_length_closes(server):
    s = start(server)
    out = s.raw(b"GET /stream HTTP/1.0\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.0 200")
    assert b"chunked" not in out.lower()
    assert out.endswith(b"part 4\n")


def test_head_and_204_have_no_body(server):
    s = start(server)
    # until the server closes: a body sent after the head would show
    out = s.raw(b"HEAD /state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\n") and out.count(b"\r\n\r\n") == 1, out
    # the GET's length, of the body the app sent and the server dropped
    assert b"content-length: 19\r\n" in out.lower()
    out = s.raw(b"GET /no-body-204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 204") and out.endswith(b"\r\n\r\n")
    assert "no-body response" in s.log()


def test_app_failures(server):
    s = start(server)
    out = s.raw(b"GET /raise-before HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert body_of(out) == b"Internal Server Error"
    wait_for(lambda: "boom before start" in s.log(), what="traceback in the log")
    assert "Error in ASGI application" in s.log()
    # Failing after the response started: the connection is cut short.
    out = s.raw(b"GET /raise-after HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"partial")
    wait_for(lambda: "boom after start" in s.log(), what="traceback")
    out = s.raw(b"GET /no-response HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 500")
    out = s.raw(b"GET /incomplete HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 200") and b"partial" in out and not out.endswith(b"0\r\n\r\n")
    wait_for(lambda: "returned without completing the response" in s.log(), what="incomplete log")
    out = s.raw(b"GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True)
    assert out.startswith(b"HTTP/1.1 500")
    # The worker still serves.
    assert s.request("GET", "/state")[0] == 200
    assert len(s.workers()) == 1


def test_early_hints(server):
    s = start(server)
    out = s.raw(b"GET /early-hints HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK")
    assert out.endswith(b"after hints")


def test_pathsend(server):
    s = start(server)
    with open(os.path.join(os.path.dirname(__file__), "apps", "asgi_app.py"), "rb") as f:
        source = f.read()
    status, headers, data = s.request("GET", "/pathsend")
    assert status == 200 and data == source
    status, headers, data = s.request("GET", "/pathsend-chunked")
    assert status == 200 and data == source and headers["transfer-encoding"] == "chunked"


def test_large_response_to_a_slow_reader_is_bounded(server):
    s = start(server)
    worker = s.wait_workers(1)[0]

    def rss():
        with open("/proc/%d/status" % worker) as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1])

    before = rss()
    n = 64 * 1024 * 1024
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /big?%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        time.sleep(1.0)
        # The app waits in send() while the client does not read.
        assert rss() - before < 16 * 1024, (before, rss())
        got = 0
        while got < n + 50:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
            if got > n:
                break
        assert got >= n
    finally:
        sock.close()


def test_send_raises_once_the_client_is_gone(server, tmp_path, loop_kind):
    log = tmp_path / "state.log"
    s = start(server, loop=loop_kind, env={"ASGI_STATE_LOG": str(log)})
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(65536)
    sock.close()
    wait_for(
        lambda: log.exists() and "forever send raised ClientDisconnected" in log.read_text(),
        what="send() to raise ClientDisconnected",
    )
    assert "Error in ASGI application" not in s.log()


def test_receive_reports_the_disconnect(server, tmp_path):
    log = tmp_path / "state.log"
    s = start(server, env={"ASGI_STATE_LOG": str(log)})
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"waiting" in sock.recv(65536) or b"waiting" in sock.recv(65536)
    time.sleep(0.2)
    assert "wait-disconnect" not in (log.read_text() if log.exists() else "")
    sock.close()
    wait_for(lambda: log.exists() and "wait-disconnect got http.disconnect" in log.read_text(), what="http.disconnect")


def test_background_work_after_the_response(server, tmp_path):
    log = tmp_path / "state.log"
    s = start(server, env={"ASGI_STATE_LOG": str(log)})
    status, _, data = s.request("GET", "/background")
    assert (status, data) == (200, b"done")
    wait_for(lambda: log.exists() and "background finished" in log.read_text(), what="background task")


def test_lifespan_startup_and_shutdown(server, tmp_path):
    log = tmp_path / "state.log"
    s = start(server, env={"ASGI_STATE_LOG": str(log)})
    assert s.request("GET", "/state")[2] == b"hello from lifespan"
    assert log.read_text().splitlines() == ["startup"]
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    assert log.read_text().splitlines() == ["startup", "shutdown"]


def test_lifespan_off(server):
    s = start(server, "--asgi-lifespan", "off")
    assert s.request("GET", "/state")[2] == b"none"


def test_lifespan_startup_failure_stops_the_master(server):
    s = start(server, env={"ASGI_FAIL_STARTUP": "1"}, wait=False)
    assert s.wait_exit() != 0
    log = s.log()
    assert "ASGI lifespan startup failed" in log and "no database" in log
    assert "Worker failed to boot" in log


LIFESPAN_CASES = {
    "complete": ({}, ()),
    "startup failed": ({"ASGI_FAIL_STARTUP": "1"}, ()),
    "shutdown failed": ({"ASGI_FAIL_SHUTDOWN": "1"}, ()),
    "unsupported": ({"ASGI_LIFESPAN_RAISES": "1"}, ()),
    "required": ({"ASGI_LIFESPAN_RAISES": "1"}, ("--asgi-lifespan", "on")),
}


def lifespan_run(server, program, env, args):
    """The lifespan lines of a debug log (level and message) and the exit
    status of one server that starts, serves one request if it can, and is
    stopped."""
    s = server(
        "-k", "asgi", "--asgi-loop", "asyncio", "--log-level", "debug", *args, APP, env=env, wait=False, program=program
    )
    try:
        s.wait_ready()
        s.request("GET", "/state")
        s.signal(signal.SIGTERM)
    except (AssertionError, OSError):
        pass  # it did not boot: the exit status says why
    status = s.wait_exit()
    lines = re.findall(r"^\[[^]]+\] \[\d+\] \[(\w+)\] (.*[Ll]ifespan.*)$", s.log(), flags=re.M)
    return lines, status


@pytest.mark.parametrize("case", LIFESPAN_CASES)
def test_lifespan_log_lines_and_exit_status_match_gunicorn(server, case):
    pytest.importorskip("gunicorn.workers.gasgi")
    env, args = LIFESPAN_CASES[case]
    ours = lifespan_run(server, "ferrocorn", env, args)
    assert ours == lifespan_run(server, "gunicorn", env, args)
    assert ours[0]


UVICORN_LINES = (
    "Waiting for application startup.",
    "Application startup complete.",
    "ASGI 'lifespan' protocol appears unsupported.",
    "Application startup failed. Exiting.",
    "Waiting for application shutdown.",
    "Application shutdown complete.",
    "Application shutdown failed. Exiting.",
)


def uvicorn_lines(server, program, env):
    s = server("-k", "uvicorn.workers.UvicornWorker", APP, env=env, wait=False, program=program)
    try:
        s.wait_ready()
        s.request("GET", "/state")
        s.signal(signal.SIGTERM)
    except (AssertionError, OSError):
        pass  # it did not boot: the exit status says why
    status = s.wait_exit()
    lines = re.findall(r"^\[[^]]+\] \[\d+\] \[(\w+)\] (.*)$", s.log(), flags=re.M)
    return [line for line in lines if line[1] in UVICORN_LINES], status != 0


@pytest.mark.parametrize("case", ["complete", "startup failed", "shutdown failed", "unsupported"])
def test_uvicorn_worker_class_logs_uvicorns_lifespan_lines(server, case):
    """Under uvicorn's worker class name, the lifespan lines uvicorn users
    look for, as uvicorn's own worker under Gunicorn logs them."""
    pytest.importorskip("uvicorn.workers")
    env = LIFESPAN_CASES[case][0]
    ours = uvicorn_lines(server, "ferrocorn", env)
    assert ours == uvicorn_lines(server, "gunicorn", env)
    assert ours[0]
    # and none of them under -k asgi, as Gunicorn's own asgi worker
    s = start(server, env=env, wait=False)
    s.wait_exit() if case == "startup failed" else (s.wait_ready(), s.signal(signal.SIGTERM), s.wait_exit())
    assert not any(line in s.log() for line in UVICORN_LINES)


def test_graceful_stop_finishes_requests_in_flight(server):
    s = start(server, "--graceful-timeout", "10")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: accepted_connections(s.workers()[0], s.port), what="the request in the worker")
    s.signal(signal.SIGTERM)
    out = read_all(sock)
    sock.close()
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"slept")
    assert b"Connection: close" in out
    assert s.wait_exit() == 0


def test_quit_stops_at_once(server):
    s = start(server)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(b"GET /sleep?120 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: accepted_connections(s.workers()[0], s.port), what="the request in the worker")
    s.signal(signal.SIGQUIT)
    # long before the request (or a graceful stop's 30 s) would end
    assert s.wait_exit(timeout=20) == 0
    sock.close()


def test_uvicorn_worker_names(server):
    for name in ("uvicorn.workers.UvicornWorker", "uvicorn_worker.UvicornWorker", "uvicorn.workers.UvicornH11Worker"):
        s = server("-k", name, APP)
        assert s.request("GET", "/state")[2] == b"hello from lifespan"
        assert "served by ferrocorn's native asgi worker" in s.log()
        s.stop()


def test_a_full_worker_admits_a_new_client_by_closing_the_longest_idle(server):
    s = start(server, "--worker-connections", "2", "--keep-alive", "30")
    held = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(2)]
    for h in held:
        h.sendall(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(h).startswith(b"HTTP/1.1 200")
    # Full: the new client is served at once, and the connection idle
    # longest makes room; the other one keeps working.
    third = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    third.sendall(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(third).startswith(b"HTTP/1.1 200")
    assert held[0].recv(100) == b""
    held[1].sendall(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(held[1]).startswith(b"HTTP/1.1 200")
    third.close()
    held[1].close()


def test_malformed_requests_get_gunicorns_status(server):
    s = start(server)
    assert s.raw(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", until_close=True).startswith(b"HTTP/1.1 400")
    assert s.raw(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", until_close=True).startswith(b"HTTP/1.1 414")
    bad_chunk = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    assert s.raw(bad_chunk, until_close=True).startswith(b"HTTP/1.1 400")


def test_demo_asgi_app(server):
    s = server("-k", "asgi", "ferrocorn.demo:asgi_app")
    assert s.request()[2] == b"Hello, world!\n"
    assert s.request("POST", "/echo", body=b"abc")[2] == b"abc"


def test_reload_serves_an_asgi_error_app_for_a_syntax_error(server, tmp_path):
    (tmp_path / "live_asgi.py").write_text("async def app(scope, receive, send):\n    x = (\n")
    s = server("-k", "asgi", "--reload", "live_asgi:app", cwd=str(tmp_path))
    status, _, body = s.request()
    assert status == 500 and body.startswith(b"Application error:"), body


def test_access_log_and_request_hooks(server, tmp_path):
    hooks = tmp_path / "hooks.log"
    conf = tmp_path / "conf.py"
    conf.write_text(
        "def pre_request(worker, req):\n"
        "    with open(%r, 'a') as f:\n"
        "        f.write('pre %%s %%s\\n' %% (req.method, req.path))\n"
        "def post_request(worker, req, environ, resp):\n"
        "    with open(%r, 'a') as f:\n"
        "        f.write('post %%s %%s %%s\\n' %% (req.path, resp.status, environ['REQUEST_METHOD']))\n"
        % (str(hooks), str(hooks))
    )
    access = tmp_path / "access.log"
    s = start(
        server,
        "-c",
        str(conf),
        "--access-logfile",
        str(access),
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s %(b)s "%({x-test}i)s" %({content-type}o)s %(U)s %(q)s',
    )
    assert s.request("GET", "/state?x=1", headers={"X-Test": "yes"})[0] == 200
    assert s.request("POST", "/echo", body=b"12345")[2] == b"12345"
    assert s.raw(b"GET /raise-before HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True).startswith(b"HTTP/1.1 500")
    lines = wait_for(
        lambda: (lambda t: t if len(t) == 3 else None)(access.read_text().splitlines()), what="three access lines"
    )
    assert lines[0] == '127.0.0.1 "GET /state?x=1 HTTP/1.1" 200 19 "yes" text/plain /state x=1'
    assert lines[1] == '127.0.0.1 "POST /echo HTTP/1.1" 200 5 "-" text/plain /echo '
    assert lines[2].startswith('127.0.0.1 "GET /raise-before HTTP/1.1" 500 ')
    assert hooks.read_text().splitlines()[:4] == [
        "pre GET /state",
        "post /state 200 GET",
        "pre POST /echo",
        "post /echo 200 POST",
    ]


def test_a_blocked_event_loop_is_killed_by_the_timeout(server):
    s = start(server, "--timeout", "2")
    first = s.wait_workers(1)[0]
    out = s.raw(b"GET /block?30 HTTP/1.1\r\nHost: x\r\n\r\n", timeout=20, until_close=True)
    assert out == b""
    wait_for(lambda: "WORKER TIMEOUT (pid:%d)" % first in s.log(), what="the timeout")
    # one look at the workers per try: between two looks the killed one may be reaped
    # before its replacement is forked, and the list is empty
    s.wait_workers(1, exclude=(first,))
    assert s.request("GET", "/state")[0] == 200
