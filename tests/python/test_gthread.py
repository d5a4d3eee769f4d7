"""The gthread worker: keep-alive, pipelining, connection limits, slow
clients, graceful stops and many concurrent clients on one worker."""

import asyncio
import json
import resource
import signal
import socket
import threading
import time

import pytest
from helpers import parse_response, read_response, response_end, wait_for


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def get(sock, path="/", extra=b""):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra))
    return parse_response(read_response(sock))


def test_keep_alive_reuses_the_connection(server):
    s = server("-k", "gthread", "basic:environ_app")
    c = connect(s.port)
    ports = set()
    for _ in range(3):
        status, headers, body = get(c)
        assert status == 200 and headers["connection"] == "keep-alive"
        ports.add(json.loads(body)["REMOTE_PORT"])
    assert len(ports) == 1
    c.close()


def test_keep_alive_timeout_closes_idle_connections(server):
    s = server("-k", "gthread", "--keep-alive", "1", "basic:hello")
    c = connect(s.port)
    assert get(c)[0] == 200
    started = time.time()
    assert c.recv(100) == b""  # the server closed the idle connection
    assert 0.5 < time.time() - started < 3
    c.close()


def test_keep_alive_zero_closes_after_each_response(server):
    s = server("-k", "gthread", "--keep-alive", "0", "basic:hello")
    c = connect(s.port)
    _status, headers, _ = get(c)
    assert headers["connection"] == "close"
    assert c.recv(100) == b""


def test_sync_with_threads_means_gthread(server):
    s = server("-k", "sync", "--threads", "2", "basic:environ_app")
    assert json.loads(s.request()[2])["wsgi.multithread"] is True
    assert "Using worker: gthread" in s.log()


def test_pipelined_requests_are_answered_in_order(server):
    s = server("-k", "gthread", "--threads", "4", "basic:environ_app")
    c = connect(s.port)
    c.sendall(b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
    paths = []
    buf = b""
    while len(paths) < 5:
        buf += c.recv(65536)
        while True:
            end = response_end(buf)
            if end is None:
                break
            paths.append(json.loads(parse_response(buf[:end])[2])["PATH_INFO"])
            buf = buf[end:]
    assert paths == ["/r0", "/r1", "/r2", "/r3", "/r4"]
    c.close()


def test_worker_connections_limit_queues_the_next_client(server):
    s = server("-k", "gthread", "--threads", "1", "--worker-connections", "2", "--keep-alive", "30", "basic:hello")
    a, b = connect(s.port), connect(s.port)
    assert get(a)[0] == 200 and get(b)[0] == 200
    c = connect(s.port)  # accepted by the kernel's backlog, not by the worker
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.settimeout(1.0)
    with pytest.raises(socket.timeout):
        c.recv(100)
    a.close()  # a slot frees up: the waiting client is served
    c.settimeout(10)
    assert parse_response(read_response(c))[0] == 200
    b.close()
    c.close()


def test_slowloris_does_not_block_normal_clients(server):
    s = server("-k", "gthread", "--threads", "2", "basic:hello")
    slow = [connect(s.port) for _ in range(50)]
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20
    stop = threading.Event()

    def trickle():
        for i in range(len(request)):
            if stop.is_set():
                return
            for c in slow:
                try:
                    c.send(request[i : i + 1])
                except OSError:
                    pass
            time.sleep(0.1)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.5)
        for _ in range(20):
            started = time.time()
            assert s.request()[0] == 200
            assert time.time() - started < 0.5
    finally:
        stop.set()
        t.join()
        for c in slow:
            c.close()


def test_slow_upload_holds_no_thread(server):
    s = server("-k", "gthread", "--threads", "1", "basic:echo")
    up = connect(s.port)
    up.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"x" * 5000)
    time.sleep(0.3)
    # the only thread is free: another client is served meanwhile
    started = time.time()
    assert s.request()[0] == 200
    assert time.time() - started < 0.5
    up.sendall(b"y" * 15000)
    status, _, body = parse_response(read_response(up))
    assert status == 200 and body == b"x" * 5000 + b"y" * 15000
    up.close()


def test_slow_reader_holds_no_thread(server):
    s = server("-k", "gthread", "--threads", "1", "basic:big_body")
    reader = connect(s.port)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)  # the response is not read yet
    started = time.time()
    assert s.request()[0] == 200
    assert time.time() - started < 0.5
    status, _, body = parse_response(read_response(reader))
    assert status == 200 and len(body) == 200_000
    reader.close()


def test_heartbeat_continues_while_every_thread_is_busy(server):
    s = server("-k", "gthread", "--threads", "2", "-t", "2", "basic:sleepy")
    first = s.wait_workers(1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(s.request(path="/?4", timeout=20))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert [r[0] for r in results] == [200, 200]
    assert s.workers() == first and "WORKER TIMEOUT" not in s.log()


def test_graceful_term_loses_no_in_flight_request(server):
    s = server("-k", "gthread", "--threads", "8", "--graceful-timeout", "20", "basic:sleepy")
    s.wait_workers(1)
    results = []
    lock = threading.Lock()

    def one():
        r = s.request(path="/?1", timeout=20)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    s.signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert len(results) == 10 and all(r[0] == 200 for r in results)
    assert s.wait_exit() == 0


def test_requests_after_a_stop_get_connection_close(server):
    s = server("-k", "gthread", "--threads", "2", "--graceful-timeout", "10", "basic:sleepy")
    s.wait_workers(1)
    busy = threading.Thread(target=lambda: s.request(path="/?1.5", timeout=20))
    busy.start()
    c = connect(s.port)
    assert get(c, "/?0")[1]["connection"] == "keep-alive"
    time.sleep(0.2)
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    status, headers, _ = get(c, "/?0")  # already kept alive: answered, then closed
    assert status == 200 and headers["connection"] == "close"
    busy.join(20)
    c.close()


def test_app_exception_gives_500_and_threads_survive(server):
    s = server("-k", "gthread", "--threads", "2", "basic:boom")
    for _ in range(5):
        assert s.request()[0] == 500
    assert s.log().count("RuntimeError: boom from the app") == 5


def test_thousand_concurrent_keep_alive_clients_on_one_worker(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096 and hard != resource.RLIM_INFINITY:
        pytest.skip("needs at least 4096 file descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    s = server(
        "-k", "gthread", "--threads", "4", "--worker-connections", "1100", "--keep-alive", "30", "basic:environ_app"
    )

    async def client(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        seen = []
        for j in range(2):
            writer.write(b"GET /c%d/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i, j))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
            body = json.loads(await reader.readexactly(length))
            seen.append(body["PATH_INFO"])
        writer.close()
        return seen

    async def main():
        # connect all first, so all 1000 are open at once
        return await asyncio.gather(*(client(i) for i in range(1000)))

    results = asyncio.run(main())
    assert results == [["/c%d/0" % i, "/c%d/1" % i] for i in range(1000)]


def test_quit_and_int_stop_fast_even_with_busy_threads(server):
    for sig in (signal.SIGQUIT, signal.SIGINT):
        s = server("-k", "gthread", "--threads", "2", "basic:sleepy")
        s.wait_workers(1)
        t = threading.Thread(
            target=s.raw, args=(b"GET /?10 HTTP/1.0\r\n\r\n",), kwargs={"timeout": 20, "until_close": True}
        )
        t.daemon = True
        t.start()
        time.sleep(0.5)
        started = time.time()
        s.signal(sig)
        assert s.wait_exit(timeout=10) == 0
        assert time.time() - started < 5


def test_hup_and_ttin_with_gthread(server):
    s = server("-k", "gthread", "-w", "2", "basic:hello")
    old = s.wait_workers(2)
    s.signal(signal.SIGHUP)
    wait_for(lambda: (lambda w: len(w) == 2 and not set(w) & set(old))(s.workers()), what="a new generation")
    s.signal(signal.SIGTTIN)
    s.wait_workers(3)
    assert s.request()[0] == 200
