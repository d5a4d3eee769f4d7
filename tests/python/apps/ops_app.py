"""The app the operations tests (under load, upgrades, systemd, metrics,
memory guard, control socket) and bench/ops.py drive: every path answers
something a test can count from outside, and names the worker that served
it (X-Worker-Pid). `app` is WSGI, `asgi` the same paths for the asgi
worker. OPS_SLEEP_MS pauses every request that long, so that operations
find requests in flight.

- /status/NNN      answers with that status
- /boom            raises (a 500 from the server)
- /sleep?s=SECONDS answers after sleeping
- /grow?mb=N       allocates N MiB, touches every page and keeps it (RSS
                   grows); answers with the worker's pid
- /pid             the worker's pid
- anything else    200 "ok\n"
"""

import asyncio
import os
import time
from http import HTTPStatus
from urllib.parse import parse_qs

from asgi_parts import accept_lifespan

_KEPT = []
PAUSE = float(os.environ.get("OPS_SLEEP_MS", "0")) / 1000.0


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
    return 200, b"ok\n"


def _reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status the tests make up
        return "Other"


def _headers(body):
    return [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("X-Worker-Pid", str(os.getpid()))]


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/sleep":
        time.sleep(float(_arg(query, "s", "1")))
    elif PAUSE:
        time.sleep(PAUSE)
    status, body = _route(path, query)
    start_response("%d %s" % (status, _reason(status)), _headers(body))
    return [body]


application = app


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await accept_lifespan(receive, send)
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/sleep":
        await asyncio.sleep(float(_arg(query, "s", "1")))
    elif PAUSE:
        await asyncio.sleep(PAUSE)
    status, body = _route(path, query)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode(), v.encode()) for k, v in _headers(body)],
        }
    )
    await send({"type": "http.response.body", "body": body})


def activation_env(environ, start_response):
    """What a worker and a process it starts see of the socket-activation
    and notify variables."""
    import json
    import subprocess

    names = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "GUNICORN_FD")
    child = subprocess.run(["env"], capture_output=True, text=True).stdout.splitlines()
    body = json.dumps(
        {
            "os_environ": {k: os.environ[k] for k in names if k in os.environ},
            "child": sorted(line.split("=", 1)[0] for line in child if line.split("=", 1)[0] in names),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
