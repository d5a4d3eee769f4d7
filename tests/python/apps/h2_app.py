"""The HTTP/2 tests' app, as WSGI (`app`, for gthread) and ASGI (`asgi`):
hello with the protocol version, a sleep, an upload digest, large and
endless downloads, response trailers, a failure; `/seen` lists the
endless responses the server cut off (one worker, so one list)."""

import asyncio
import hashlib
import time
from urllib.parse import parse_qs

from asgi_parts import accept_lifespan

CHUNK = b"x" * 65536
cut_off = []


def _arg(query, name, default):
    values = parse_qs(query).get(name)
    return type(default)(values[0]) if values else default


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    text = [("Content-Type", "text/plain")]
    if path == "/sleep":
        time.sleep(_arg(query, "s", 0.5))
    elif path == "/upload":
        digest, size = hashlib.sha256(), 0
        while True:
            block = environ["wsgi.input"].read(65536)
            if not block:
                break
            digest.update(block)
            size += len(block)
        start_response("200 OK", text)
        return [("%d %s" % (size, digest.hexdigest())).encode()]
    elif path == "/big":
        start_response("200 OK", text)
        return (_fresh() for _ in range(_arg(query, "n", 160)))
    elif path == "/endless":
        start_response("200 OK", text)
        return _endless()
    elif path == "/seen":
        start_response("200 OK", text)
        return [repr(cut_off).encode()]
    elif path == "/boom":
        raise RuntimeError("boom")
    start_response("200 OK", text)
    return [("%s %s" % (environ["SERVER_PROTOCOL"], environ["wsgi.url_scheme"])).encode()]


def _fresh():
    # A new object each time: a server that kept what the client has not
    # read would hold every one of them.
    return CHUNK[:-1] + b"x"


def _endless():
    try:
        while True:
            yield CHUNK
            time.sleep(0.01)
    finally:
        # close() comes when the server cuts the response off.
        cut_off.append("endless")


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await accept_lifespan(receive, send)
    path, query = scope["path"], scope["query_string"].decode()

    async def respond(body, status=200):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    if path == "/sleep":
        await asyncio.sleep(_arg(query, "s", 0.5))
    elif path == "/upload":
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            body = message.get("body", b"")
            digest.update(body)
            size += len(body)
            if not message.get("more_body"):
                break
        return await respond(("%d %s" % (size, digest.hexdigest())).encode())
    elif path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(_arg(query, "n", 160)):
            await send({"type": "http.response.body", "body": _fresh(), "more_body": True})
        return await send({"type": "http.response.body", "body": b""})
    elif path == "/endless":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
                await asyncio.sleep(0.01)
        except OSError:
            # ASGI 2.4: send() raises once the client is gone.
            pass
        message = await receive()
        cut_off.append(message["type"])
        return
    elif path == "/trailers":
        start = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
        await send(start)
        await send({"type": "http.response.body", "body": b"body"})
        return await send({"type": "http.response.trailers", "headers": [(b"x-digest", b"abc")]})
    elif path == "/seen":
        return await respond(repr(cut_off).encode())
    elif path == "/boom":
        raise RuntimeError("boom")
    await respond(("%s %s %s" % (scope["http_version"], scope["scheme"], sorted(scope["extensions"]))).encode())
