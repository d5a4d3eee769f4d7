"""Small WSGI apps for the end-to-end tests; each exercises one PEP 3333 rule."""

import json
import os
import sys
import threading
import time


def hello(environ, start_response):
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = hello


def environ_app(environ, start_response):
    shown = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}
    shown["wsgi.version"] = list(environ["wsgi.version"])
    shown["body"] = environ["wsgi.input"].read().decode("latin-1")
    body = json.dumps(shown, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
    return [data]


def upload_size(environ, start_response):
    """Reads the body in 64 KiB pieces and reports its size and the peak buffer."""
    total = 0
    inp = environ["wsgi.input"]
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        total += len(chunk)
    with open("/proc/self/status") as f:
        rss = next(l for l in f if l.startswith("VmHWM")).split()[1]
    body = json.dumps({"size": total, "peak_rss_kb": int(rss)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def readline_app(environ, start_response):
    inp = environ["wsgi.input"]
    parts = {
        "first": inp.readline().decode(),
        "limited": inp.readline(3).decode(),
        "rest": [l.decode() for l in inp],
        "after": inp.read().decode(),
    }
    body = json.dumps(parts).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def readlines_app(environ, start_response):
    lines = environ["wsgi.input"].readlines()
    body = json.dumps([l.decode() for l in lines]).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(4):
            yield ("part %d %f\n" % (i, time.time())).encode()
            time.sleep(0.3)

    return gen()


def no_length_list(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"one ", b"two ", b"", b"three"]


def too_long(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"0123456789"]


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"directly ")
    return [b"and returned"]


class Closing:
    closed_marker = None

    def __init__(self, parts, fail=False):
        self.parts = parts
        self.fail = fail

    def __iter__(self):
        yield from self.parts
        if self.fail:
            raise RuntimeError("failed while iterating")

    def close(self):
        with open(os.environ["CLOSE_MARKER"], "a") as f:
            f.write("closed\n")


def close_called(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing([b"a", b"b"])


def close_called_on_error(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing([b"a"], fail=True)


def boom(environ, start_response):
    raise RuntimeError("boom from the app")


def exc_info_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("replaced")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced response"]


def double_start(environ, start_response):
    start_response("200 OK", [])
    try:
        start_response("200 OK", [])
    except AssertionError as e:
        body = str(e).encode()
    else:
        body = b"no error"
    return [body]


def bad_header(environ, start_response):
    start_response("200 OK", [("Bad Header", "x")])
    return [b"never"]


def head_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"hello world"]


def file_app(environ, start_response):
    path = os.environ["FILE_TO_SEND"]
    f = open(path, "rb")
    size = os.path.getsize(path)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](f, 8192)


def file_app_chunked(environ, start_response):
    f = open(os.environ["FILE_TO_SEND"], "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f)


def errors_app(environ, start_response):
    environ["wsgi.errors"].write("message for wsgi.errors\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def sleepy(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or "1")
    time.sleep(seconds)
    body = b"slept %s\n" % str(seconds).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


_in_flight = [0, 0]  # now, most at once
_in_flight_lock = threading.Lock()


def thread_probe(environ, start_response):
    """`?cpu=US` keeps the processor busy that long, `?sleep=US` waits that
    long; answers the thread that ran it and the most requests the worker
    has had in the app at once."""
    query = dict(part.split("=", 1) for part in environ.get("QUERY_STRING", "").split("&") if "=" in part)
    with _in_flight_lock:
        _in_flight[0] += 1
        _in_flight[1] = max(_in_flight)
    try:
        end = time.perf_counter() + int(query.get("cpu", "0")) / 1e6
        while time.perf_counter() < end:
            pass
        if "sleep" in query:
            time.sleep(int(query["sleep"]) / 1e6)
    finally:
        with _in_flight_lock:
            _in_flight[0] -= 1
    body = json.dumps({"thread": threading.get_ident(), "most": _in_flight[1]}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def pid_app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def early_hints(environ, start_response):
    environ["wsgi.early_hints"]([("Link", "</style.css>; rel=preload; as=style")])
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def factory(greeting="hi", punctuation="!"):
    body = (greeting + punctuation).encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


class Holder:
    def __init__(self):
        self.app = hello


holder = Holder()
not_callable = 42
nothing = None


def big_body(environ, start_response):
    """QUERY_STRING bytes (200,000 by default) in one piece; on /tail, all
    but the last 192 KiB in one piece, then those in 12 KiB pieces (which
    the server buffers and sends at the end, as a response's tail)."""
    n = int(environ.get("QUERY_STRING") or 200_000)
    start_response("200 OK", [("Content-Length", str(n))])
    if environ["PATH_INFO"] != "/tail":
        return [b"z" * n]
    tail = 192 * 1024
    return [b"z" * (n - tail)] + [b"z" * (12 * 1024)] * 16
