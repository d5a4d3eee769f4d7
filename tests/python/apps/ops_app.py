"""The app the operations tests (metrics, memory guard, control socket)
drive: every path answers something a test can count from outside. `app`
is WSGI, `asgi` the same paths for the asgi worker.

- /status/NNN      answers with that status
- /boom            raises (a 500 from the server)
- /sleep?s=SECONDS answers after sleeping
- /grow?mb=N       allocates N MiB, touches every page and keeps it (RSS
                   grows); answers with the worker's pid
- /pid             the worker's pid
- anything else    200 "ok"
"""

import asyncio
import os
import time
from urllib.parse import parse_qs

_KEPT = []


def _arg(query, name, default):
    return parse_qs(query).get(name, [default])[0]


def _grow(mb):
    # bytes multiplication writes every byte, so the pages are resident
    # (a zero-filled bytearray may stay unbacked).
    _KEPT.append(b"\x01" * (int(mb) << 20))


def _route(path, query):
    """(status, body) for a path, or raises; sleeping is left to the caller."""
    if path.startswith("/status/"):
        return int(path.split("/")[2]), b""
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/grow":
        _grow(_arg(query, "mb", "1"))
        return 200, str(os.getpid()).encode()
    if path == "/pid":
        return 200, str(os.getpid()).encode()
    return 200, b"ok"


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/sleep":
        time.sleep(float(_arg(query, "s", "1")))
    status, body = _route(path, query)
    start_response("%d X" % status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/sleep":
        await asyncio.sleep(float(_arg(query, "s", "1")))
    status, body = _route(path, query)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
