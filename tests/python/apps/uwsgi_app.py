"""Apps for the uwsgi tests: what the request looked like to the app, a
streamed body without a length, a large download, a WebSocket echo, and
the same for ASGI and Tornado."""

import json
import os

from asgi_parts import accept_lifespan, websocket_echo

CHUNK = b"0123456789abcdef" * 4096  # 64 KiB


def _size(query):
    for part in query.split("&"):
        if part.startswith("size="):
            return int(part[5:])
    return 0


def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        # No length: the uwsgi answer must not be chunked.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", b"uwsgi ", b"world"]
    if path == "/big":
        # Answers without reading the body it was sent.
        start_response("200 OK", [("Content-Length", "7")])
        return [b"skipped"]
    if path == "/download":
        size = _size(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (CHUNK[: min(len(CHUNK), size - sent)] for sent in range(0, size, len(CHUNK)))
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "scheme": environ["wsgi.url_scheme"],
        "remote_addr": environ["REMOTE_ADDR"],
        "host": environ.get("HTTP_HOST"),
        "custom": environ.get("HTTP_X_CUSTOM"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "body_len": len(body),
        "body_sum": sum(body) % 65536,
        "pid": os.getpid(),
    }
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await accept_lifespan(receive, send)
    if scope["type"] == "websocket":
        return await websocket_echo(receive, send, prefix="echo:")
    headers = dict(scope["headers"])
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"hello ", b"uwsgi ", b"world"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"7")]})
        await send({"type": "http.response.body", "body": b"skipped"})
        return
    if scope["path"] == "/download":
        size = _size(scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for sent in range(0, size, len(CHUNK)):
            await send({"type": "http.response.body", "body": CHUNK[: min(len(CHUNK), size - sent)], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    parts = []
    more = True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(parts)
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "scheme": scope["scheme"],
        "remote_addr": scope["client"][0],
        "host": headers.get(b"host", b"").decode() or None,
        "custom": (headers.get(b"x-custom") or b"").decode() or None,
        "content_length": (headers.get(b"content-length") or b"").decode() or None,
        "body_len": len(body),
        "body_sum": sum(body) % 65536,
        "pid": os.getpid(),
    }
    out = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


try:
    import tornado.web
except ImportError:  # only the tornado worker's test needs it
    tornado_app = None
else:

    class Echo(tornado.web.RequestHandler):
        def get(self):
            self.write({"method": "GET", "path": self.request.path, "query": self.request.query})

        def post(self):
            body = self.request.body
            self.write({"method": "POST", "body_len": len(body), "body_sum": sum(body) % 65536})

    tornado_app = tornado.web.Application([(r"/.*", Echo)])
