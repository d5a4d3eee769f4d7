"""The app the under-load tests and bench/ops.py run: a small answer that
names the worker which served it (X-Worker-Pid), after an optional pause
(OPS_SLEEP_MS) so that operations find requests in flight."""

import asyncio
import os
import time

PAUSE = float(os.environ.get("OPS_SLEEP_MS", "0")) / 1000.0
BODY = b"ok\n"


def app(environ, start_response):
    if PAUSE:
        time.sleep(PAUSE)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY))),
                              ("X-Worker-Pid", str(os.getpid()))])
    return [BODY]


application = app


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if PAUSE:
        await asyncio.sleep(PAUSE)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode()),
                            (b"x-worker-pid", str(os.getpid()).encode())]})
    await send({"type": "http.response.body", "body": BODY})

