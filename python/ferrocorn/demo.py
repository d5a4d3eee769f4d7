"""The bundled demo app: ``ferrocorn ferrocorn.demo:app``.

``/`` says hello (the benchmark's hello world), ``/echo`` returns the request
body, ``/environ`` shows what the server put in the WSGI environ, and
``/stream`` sends a chunked response in parts.
"""

import json
import time

HELLO = b"Hello, world!\n"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/environ":
        shown = {k: v for k, v in environ.items() if isinstance(v, (str, int, bool, tuple))}
        body = json.dumps(shown, indent=1, sort_keys=True, default=str).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def stream():
    for i in range(5):
        yield b"part %d\n" % i
        time.sleep(0.05)
