"""The apps every server is measured with (the same code for all of them)."""

import time

HELLO = b"Hello, world!\n"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def sleep10(environ, start_response):
    """Long I/O: 10 ms of waiting (the GIL is released), then a small answer."""
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]
