"""Apps the hostile-client tests attack: an echo (WSGI and ASGI) and a
large response kept in one module-level bytes object, as an app that
serves a cached file from memory would."""

import os
import time

BIG = b"x" * (10 * 1024 * 1024)

# A slow import, as a large app's: workers take this long to boot.
time.sleep(float(os.environ.get("HOSTILE_BOOT_DELAY", "0")))


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return [BIG]
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        return
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(BIG))]})
        await send({"type": "http.response.body", "body": BIG})
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
