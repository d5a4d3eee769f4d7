"""Request and response bodies: streaming both ways, framing errors, limits."""

import json
import socket
import time

import pytest
from helpers import parse_response, read_all

pytestmark = pytest.mark.usefixtures("worker_class")


def test_50mb_upload_streams_without_buffering(server):
    s = server("basic:upload_size")
    size = 50 * 1024 * 1024
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"x" * (1024 * 1024)
    for _ in range(50):
        sock.sendall(block)
    data = read_all(sock)
    sock.close()
    status, _, body = parse_response(data)
    info = json.loads(body)
    assert status == 200 and info["size"] == size
    # The worker never held the body: its peak RSS stays far below 50 MB.
    assert info["peak_rss_kb"] < 45 * 1024, info


def test_chunked_upload(server):
    s = server("basic:echo")
    raw = s.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    assert parse_response(raw)[2] == b"hello world"


def test_bad_chunk_size_is_a_400_raised_inside_read(server):
    s = server("basic:echo")
    raw = s.raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
    assert parse_response(raw)[0] == 400
    assert "Invalid chunk size" in s.log()


def test_forbidden_trailer_is_a_400(server):
    s = server("basic:echo")
    raw = s.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"
    )
    assert parse_response(raw)[0] == 400


def test_truncated_body_gets_no_answer_and_app_never_sees_it_whole(server):
    s = server("basic:echo")
    raw = s.raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this", shut_write=True)
    assert raw == b""
    raw = s.raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", shut_write=True)
    assert raw == b""


def test_streaming_response_arrives_in_chunks(server):
    s = server("basic:stream")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    arrivals = []
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        arrivals.append(time.time())
        data += chunk
    sock.close()
    body = parse_response(data)[2]
    parts = [l for l in body.split(b"\r\n") if l.startswith(b"part")]
    assert len(parts) == 4
    # the parts were produced 0.3 s apart and left as they were produced
    assert arrivals[-1] - arrivals[0] > 0.6
    assert len(arrivals) >= 3


def test_limits(server):
    s = server("basic:hello")
    status = parse_response(s.raw(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n"))[0]
    assert status == 414
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    assert parse_response(s.raw(b"GET / HTTP/1.1\r\n" + headers + b"\r\n"))[0] == 431
    assert parse_response(s.raw(b"GET / HTTP/1.1\r\nX: " + b"v" * 9000 + b"\r\n\r\n"))[0] == 431
    assert parse_response(s.raw(b"GET / HTTP/1.1\r\nTransfer-Encoding: foo\r\n\r\n"))[0] == 501
    assert parse_response(s.raw(b"GET / HTTP/1.1\r\nExpect: teapot\r\n\r\n"))[0] == 417
    assert parse_response(s.raw(b"get / HTTP/1.1\r\n\r\n"))[0] == 400
    s2 = server("--limit-request-line", "20", "--limit-request-fields", "2", "basic:hello")
    assert parse_response(s2.raw(b"GET /0123456789012345678901 HTTP/1.1\r\n\r\n"))[0] == 414
    assert parse_response(s2.raw(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"))[0] == 431
    assert parse_response(s2.raw(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n"))[0] == 200
