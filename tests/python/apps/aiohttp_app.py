"""An aiohttp application for `-k aiohttp.GunicornWebWorker` (the way
aiohttp documents deploying under Gunicorn). Every answer names the worker
(X-Worker-Pid) for the operations tests.

- /           "hello"
- /sleep?s=S  answers after asyncio.sleep(S)
- /pid        the worker's pid
"""

import asyncio
import os

from aiohttp import web


def _answer(body):
    return web.Response(body=body, content_type="text/plain", headers={"X-Worker-Pid": str(os.getpid())})


async def hello(request):
    return _answer(b"hello")


async def sleep(request):
    await asyncio.sleep(float(request.query.get("s", "0.1")))
    return _answer(b"slept")


async def pid(request):
    return _answer(str(os.getpid()).encode())


app = web.Application()
app.add_routes([web.get("/", hello), web.get("/sleep", sleep), web.get("/pid", pid)])
