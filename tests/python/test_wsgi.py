"""PEP 3333 as Gunicorn's sync worker implements it, end to end."""

import json
import os
import socket

import pytest
from helpers import parse_response, read_all, wait_for

pytestmark = pytest.mark.usefixtures("worker_class")


def test_demo_app(server, worker_class):
    s = server("ferrocorn.demo:app")
    status, headers, body = s.request()
    assert status == 200 and body == b"Hello, world!\n"
    assert headers["server"] == "ferrocorn"
    # sync closes after every response, gthread keeps HTTP/1.1 alive
    assert headers["connection"] == ("close" if worker_class == "sync" else "keep-alive")
    assert "date" in headers


def test_environ(server):
    s = server("basic:environ_app")
    status, _, body = s.request(
        "POST",
        "/a%20b/c?x=1&y=%20",
        body=b"payload",
        headers={"Content-Type": "text/plain", "X-Custom": "v1", "User-Agent": "t"},
    )
    env = json.loads(body)
    assert status == 200
    # the request line, as PEP 3333 splits it
    request_line = {"REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": ""}
    target = {"PATH_INFO": "/a b/c", "RAW_URI": "/a%20b/c?x=1&y=%20", "QUERY_STRING": "x=1&y=%20"}
    for expected in (request_line, target):
        assert {key: env.get(key) for key in expected} == expected
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(s.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and int(env["REMOTE_PORT"]) > 0
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "7"
    assert env["HTTP_X_CUSTOM"] == "v1" and env["HTTP_USER_AGENT"] == "t"
    assert env["HTTP_HOST"] == "127.0.0.1:%d" % s.port
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is (s.proc.args.count("gthread") > 0)
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["SERVER_SOFTWARE"].startswith("ferrocorn/")
    assert env["body"] == "payload"


def test_repeated_headers_are_joined_and_underscores_dropped(server):
    s = server("basic:environ_app")
    raw = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nX_B: hidden\r\n\r\n")
    env = json.loads(parse_response(raw)[2])
    assert env["HTTP_X_A"] == "1,2"
    assert "HTTP_X_B" not in env


def test_script_name_from_env(server):
    s = server("-e", "SCRIPT_NAME=/prefix", "basic:environ_app")
    env = json.loads(s.request(path="/prefix/page")[2])
    assert env["SCRIPT_NAME"] == "/prefix" and env["PATH_INFO"] == "/page"
    status, _, _ = s.request(path="/elsewhere")
    assert status == 500


def test_forwarded_headers_from_trusted_proxy(server):
    s = server("basic:environ_app")
    env = json.loads(s.request(headers={"X-Forwarded-Proto": "https"})[2])
    assert env["wsgi.url_scheme"] == "https"
    s2 = server("--forwarded-allow-ips", "10.0.0.0/8", "basic:environ_app")
    env = json.loads(s2.request(headers={"X-Forwarded-Proto": "https"})[2])
    assert env["wsgi.url_scheme"] == "http"


def test_proxy_protocol_v1(server):
    s = server("--proxy-protocol", "v1", "basic:environ_app")
    raw = s.raw(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\r\nGET / HTTP/1.0\r\n\r\n")
    env = json.loads(parse_response(raw)[2])
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "4242"
    assert env["PROXY_PROTOCOL"] == "TCP4"


def test_chunked_response_for_http11_and_close_delimited_for_http10(server):
    s = server("basic:no_length_list")
    status, headers, body = parse_response(s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert body == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"
    status, headers, body = parse_response(s.raw(b"GET / HTTP/1.0\r\n\r\n"))
    assert "transfer-encoding" not in headers and body == b"one two three"


def test_content_length_is_honoured(server):
    """The app returns 10 bytes under Content-Length: 5; exactly 5 go out,
    nothing after them, up to the server's close."""
    s = server("basic:too_long")
    got = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", until_close=True)
    status, headers, body = parse_response(got)
    assert status == 200 and headers["content-length"] == "5"
    assert body == b"01234", got


def test_head_suppresses_body(server):
    """HEAD gets the GET's head and no body at all: everything the server
    sends until it closes ends with the head."""
    s = server("basic:head_body")
    got = s.raw(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", until_close=True)
    status, headers, body = parse_response(got)
    assert status == 200 and headers["content-length"] == "11" and headers["content-type"] == "text/plain"
    assert body == b"", got


def test_write_callable(server):
    s = server("basic:write_callable")
    assert s.request()[2] == b"written directly and returned"


def test_close_is_called_on_success_and_error(server, tmp_path):
    marker = tmp_path / "closed.txt"
    s = server("basic:close_called", env={"CLOSE_MARKER": str(marker)})
    assert s.request()[2] == b"ab"
    s2 = server("basic:close_called_on_error", env={"CLOSE_MARKER": str(marker)})
    # Headers were sent: the chunked body is cut after the chunk that made
    # it (no last chunk), not replaced by a 500.
    got = s2.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", until_close=True)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head, got
    assert body == b"1\r\na\r\n", got
    wait_for(lambda: marker.read_text().count("closed") == 2, what="close() called twice")
    assert "failed while iterating" in s2.log()


def test_app_exception_gives_500_and_worker_keeps_serving(server):
    s = server("basic:boom")
    pid_before = s.workers()
    status, _, body = s.request(path="/x?y=1")
    assert status == 500 and b"Internal Server Error" in body
    log = s.log()
    assert "Error handling request GET /x?y=1" in log
    assert "RuntimeError: boom from the app" in log
    assert s.request()[0] == 500
    assert s.workers() == pid_before


def test_exc_info_replaces_the_response(server):
    s = server("basic:exc_info_app")
    status, _, body = s.request()
    assert status == 503 and body == b"replaced response"


def test_start_response_twice_without_exc_info(server):
    s = server("basic:double_start")
    assert s.request()[2] == b"Response headers already set!"


def test_invalid_response_header_is_a_500(server):
    s = server("basic:bad_header")
    assert s.request()[0] == 500
    assert "InvalidResponseHeaderName" in s.log()


def test_file_wrapper_sendfile(server, tmp_path):
    data = os.urandom(300_000)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    s = server("basic:file_app", env={"FILE_TO_SEND": str(f)})
    status, headers, body = s.request()
    assert status == 200 and body == data
    s2 = server("basic:file_app_chunked", env={"FILE_TO_SEND": str(f)})
    status, headers, body = s2.request()
    assert headers["transfer-encoding"] == "chunked" and body == data
    s3 = server("--no-sendfile", "basic:file_app", env={"FILE_TO_SEND": str(f)})
    assert s3.request()[2] == data


def test_wsgi_errors_goes_to_the_error_log(server):
    s = server("basic:errors_app")
    assert s.request()[0] == 200
    wait_for(lambda: "message for wsgi.errors" in s.log(), what="the message in the error log")


def test_readline_and_iteration(server):
    s = server("basic:readline_app")
    parts = json.loads(s.request("POST", "/", body=b"line one\nabcdef\nx\ny\n")[2])
    assert parts == {"first": "line one\n", "limited": "abc", "rest": ["def\n", "x\n", "y\n"], "after": ""}
    s2 = server("basic:readlines_app")
    assert json.loads(s2.request("POST", "/", body=b"a\nb\nc")[2]) == ["a\n", "b\n", "c"]


def test_expect_100_continue(server):
    s = server("basic:echo")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"hello")
    data = read_all(sock)
    sock.close()
    assert data.endswith(b"hello")


def test_early_hints(server):
    s = server("basic:early_hints")
    raw = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK"
    )


def test_client_half_close_still_gets_its_answer(server):
    s = server("basic:hello")
    raw = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", shut_write=True)
    assert parse_response(raw)[2] == b"Hello, world!\n"


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("basic", b"Hello, world!\n"),
        ("basic:application", b"Hello, world!\n"),
        ("basic:factory()", b"hi!"),
        ("basic:factory('hey', punctuation='?')", b"hey?"),
    ],
)
def test_app_module_forms(server, spec, expected):
    assert server(spec).request()[2] == expected


def test_unix_socket_and_multiple_binds(server, tmp_path):
    path = str(tmp_path / "s.sock")
    s = server("-b", "unix:" + path, "basic:environ_app")
    assert s.request()[0] == 200
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    c.sendall(b"GET /u HTTP/1.0\r\nHost: example.org:81\r\n\r\n")
    data = read_all(c)
    env = json.loads(parse_response(data)[2])
    assert env["REMOTE_ADDR"] == "" and env["SERVER_NAME"] == "example.org" and env["SERVER_PORT"] == "81"
    s.stop()
    assert not os.path.exists(path)


def test_proxy_protocol_from_a_peer_not_allowed_is_forbidden(server):
    s = server("--proxy-protocol", "v1", "--proxy-allow-from", "10.1.2.3", "basic:environ_app")
    raw = s.raw(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\r\nGET / HTTP/1.0\r\n\r\n")
    assert parse_response(raw)[0] == 403


def test_forwarder_header_script_name(server):
    s = server("--forwarded-allow-ips", "127.0.0.1", "basic:environ_app")
    env = json.loads(parse_response(s.raw(b"GET /app/x HTTP/1.0\r\nSCRIPT_NAME: /app\r\n\r\n"))[2])
    assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == "/x"
    # from a peer that is not trusted, the underscore header is dropped
    s2 = server("--forwarded-allow-ips", "10.0.0.1", "basic:environ_app")
    env = json.loads(parse_response(s2.raw(b"GET /app/x HTTP/1.0\r\nSCRIPT_NAME: /app\r\n\r\n"))[2])
    assert env["SCRIPT_NAME"] == "" and env["PATH_INFO"] == "/app/x"
