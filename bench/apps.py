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


async def asgi_hello(scope, receive, send):
    """Hello-world ASGI (no lifespan: returning at once says so)."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"14")],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})


async def asgi_echo(scope, receive, send):
    """Echoes the request body (the 10 KB POST scenario)."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def asgi_ws_echo(scope, receive, send):
    """WebSocket echo, message by message."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


def _fastapi():
    try:
        from fastapi import FastAPI
    except ImportError:  # the WSGI scenarios do not need it
        return None
    app = FastAPI()

    @app.get("/")
    async def items():
        return {"message": "Hello, world!", "items": [{"id": i, "name": "item %d" % i} for i in range(5)]}

    return app


fastapi_json = _fastapi()


def _aiohttp():
    try:
        from aiohttp import web
    except ImportError:  # only the aiohttp scenario needs it
        return None

    async def hello(request):
        return web.Response(body=HELLO, content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/", hello)])
    return app


# For -k aiohttp.GunicornWebWorker (the same worker class under both masters).
aiohttp_hello = _aiohttp()


def _tornado():
    try:
        from tornado import web, websocket
    except ImportError:  # only the tornado scenarios need it
        return None

    class Hello(web.RequestHandler):
        def get(self):
            self.write(HELLO)

    class Echo(websocket.WebSocketHandler):
        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    return web.Application([(r"/", Hello), (r"/ws", Echo)])


# For -k tornado: a RequestHandler at / and a WebSocket echo at /ws.
tornado_hello = _tornado()
