"""A raw ASGI 3 application for the asgi worker's end-to-end tests: one path
per spec edge. Every path answers in a way a test can check from outside."""

import asyncio
import json
import os

STATE_LOG = os.environ.get("ASGI_STATE_LOG")
events = []


def note(line):
    if STATE_LOG:
        with open(STATE_LOG, "a") as f:
            f.write(line + "\n")


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if os.environ.get("ASGI_LIFESPAN_RAISES"):
            raise RuntimeError("no lifespan here")
        if message["type"] == "lifespan.startup":
            if os.environ.get("ASGI_FAIL_STARTUP"):
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            scope["state"]["greeting"] = "hello from lifespan"
            note("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            note("shutdown")
            if os.environ.get("ASGI_FAIL_SHUTDOWN"):
                await send({"type": "lifespan.shutdown.failed", "message": "disk full"})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send, status, body, headers=(), content_type=b"text/plain"):
    hs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())] + list(headers)
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": body})


def jsonable_scope(scope):
    out = {}
    for k, v in scope.items():
        if k == "headers":
            out[k] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in v]
        elif isinstance(v, bytes):
            out[k] = v.decode("latin-1")
        elif k == "state":
            out[k] = dict(v)
        else:
            out[k] = v
    return out


async def http(scope, receive, send):
    path = scope["path"]
    if path.startswith("/scope"):
        await respond(send, 200, json.dumps(jsonable_scope(scope)).encode(), content_type=b"application/json")
    elif path == "/echo":
        body = await read_body(receive)
        await respond(send, 200, body or b"")
    elif path == "/chunks":
        # The body as the app received it, message by message.
        sizes = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            sizes.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await respond(send, 200, json.dumps({"sizes": sizes, "total": sum(sizes)}).encode())
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"part %d\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/big":
        n = int(scope["query_string"] or b"1000000")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]})
        chunk = b"x" * 65536
        left = n
        while left:
            part = chunk[: min(left, len(chunk))]
            left -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": left > 0})
    elif path == "/forever":
        # Streams until the client leaves: send() raises once it is gone.
        note("forever start")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"tick\n" * 100, "more_body": True})
                await asyncio.sleep(0.01)
        except OSError as e:
            note("forever send raised %s" % type(e).__name__)
            raise
    elif path == "/wait-disconnect":
        # Reads the body, then waits for http.disconnect.
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        message = await receive()
        note("wait-disconnect got %s" % message["type"])
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await respond(send, 200, b"slept")
    elif path == "/block":
        # Blocks the event loop (a synchronous call in async code).
        import time

        time.sleep(float(scope["query_string"] or b"1"))  # noqa: ASYNC251 (on purpose)
        await respond(send, 200, b"unblocked")
    elif path == "/raise-before":
        raise RuntimeError("boom before start")
    elif path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/no-response":
        return
    elif path == "/incomplete":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]})
    elif path == "/early-hints":
        await send(
            {"type": "http.response.informational", "status": 103, "headers": [(b"link", b"</style.css>; rel=preload")]}
        )
        await respond(send, 200, b"after hints")
    elif path == "/pathsend":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(os.path.getsize(__file__)).encode())],  # noqa: ASYNC240
            }
        )
        await send({"type": "http.response.pathsend", "path": __file__})
    elif path == "/pathsend-chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": __file__})
    elif path == "/loop":
        # the event loop's class, e.g. uvloop.Loop
        loop = type(asyncio.get_running_loop())
        await respond(send, 200, ("%s.%s" % (loop.__module__, loop.__qualname__)).encode())
    elif path == "/state":
        await respond(send, 200, scope["state"].get("greeting", "none").encode())
    elif path == "/background":
        await respond(send, 200, b"done")
        await asyncio.sleep(0.2)
        note("background finished")
    elif path == "/no-body-204":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored"})
    else:
        await respond(send, 404, b"not found")


async def websocket(scope, receive, send):
    path = scope["path"]
    message = await receive()
    assert message["type"] == "websocket.connect"
    if path == "/ws/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/ws/deny-http":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"content-length", b"6")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
        return
    if path == "/ws/raise":
        raise RuntimeError("ws boom")
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-ws", b"yes")]})
    if path == "/ws/close":
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        return
    if path == "/ws/hold":
        # Waits for the disconnect (the worker's stop sends 1001).
        message = await receive()
        note("hold got %s %s" % (message["type"], message.get("code")))
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            note("ws disconnect %s" % message.get("code"))
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope, receive, send):
    # one handler a scope type; any other type is ignored
    handler = {"lifespan": lifespan, "http": http, "websocket": websocket}.get(scope["type"])
    if handler is not None:
        await handler(scope, receive, send)
