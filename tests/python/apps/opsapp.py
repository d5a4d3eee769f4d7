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


def activation_env(environ, start_response):
    """What a worker and a process it starts see of the socket-activation
    and notify variables."""
    import json
    import subprocess
    names = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
    child = subprocess.run(["env"], capture_output=True, text=True).stdout.splitlines()
    body = json.dumps({
        "os_environ": {k: os.environ[k] for k in names if k in os.environ},
        "child": sorted(line.split("=", 1)[0] for line in child if line.split("=", 1)[0] in names),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
