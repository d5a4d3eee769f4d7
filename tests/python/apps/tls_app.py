"""What a TLS connection looks like to an app, WSGI (`app`) and ASGI
(`asgi`): /info answers the scheme and the client certificate the server
passed on, /big?N sends N bytes, /echo answers the body's length and
digest, /file sends this file through wsgi.file_wrapper; /ws echoes
WebSocket messages (ASGI)."""

import hashlib
import json

from asgi_parts import accept_lifespan, websocket_echo

_CHUNK = b"0123456789abcdef" * 4096


def _big(n):
    while n > 0:
        part = _CHUNK[: min(n, len(_CHUNK))]
        n -= len(part)
        yield part


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/info":
        body = json.dumps(
            {"scheme": environ["wsgi.url_scheme"], "client_cert": environ.get("SSL_CLIENT_CERT")}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        n = int(environ["QUERY_STRING"] or "1000000")
        start_response("200 OK", [("Content-Length", str(n))])
        return _big(n)
    if path == "/echo":
        data = environ["wsgi.input"].read()
        body = ("%d %s" % (len(data), hashlib.sha256(data).hexdigest())).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f)
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


async def _body(receive):
    parts, more = [], True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(parts)


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await accept_lifespan(receive, send)
    if scope["type"] == "websocket":
        return await websocket_echo(receive, send)
    path = scope["path"]
    if path == "/info":
        tls = scope.get("extensions", {}).get("tls")
        body = json.dumps({"scheme": scope["scheme"], "tls": tls}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/big":
        n = int(scope["query_string"] or b"1000000")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]})
        left = n
        for part in _big(n):
            left -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": left > 0})
        if n == 0:
            await send({"type": "http.response.body", "body": b""})
    elif path == "/echo":
        data = await _body(receive)
        body = ("%d %s" % (len(data), hashlib.sha256(data).hexdigest())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
