"""Handlers that run past --request-timeout in the ways it must deal with
(tests/python/test_request_timeout.py): a blocking sleep, a CPU loop, a read
from a server that never answers, an asyncio sleep, and a handler that
catches the interruption and answers itself. `/pid` answers at once, for
the requests that must still be served meanwhile."""

import asyncio
import os
import signal
import socket
import time
from urllib.parse import parse_qs

from ferrocorn import RequestTimeout


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _ok(start_response, body):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def handler_sleeps(seconds):
    time.sleep(seconds)


def handler_spins():
    while True:
        pass


def handler_reads_silence(port):
    s = socket.create_connection(("127.0.0.1", port))
    try:
        return s.recv(1)
    finally:
        s.close()


def handler_blocks_signals(seconds):
    # What a C library that masks signals does: out of the signal's reach.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN + 2})
    try:
        time.sleep(seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGRTMIN + 2})


def handler_reads_body(environ):
    return environ["wsgi.input"].read()


def handler_catches():
    try:
        # Short waits in Python: reachable on every worker type.
        for _ in range(3000):
            time.sleep(0.01)
    except RequestTimeout:
        return b"cleaned up"
    return b"not interrupted"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    seconds = float(q.get("s", "30"))
    if path == "/pid":
        return _ok(start_response, str(os.getpid()).encode())
    if path == "/sleep":
        handler_sleeps(seconds)
    elif path == "/spin":
        handler_spins()
    elif path == "/silent":
        handler_reads_silence(int(q["port"]))
    elif path == "/masked":
        handler_blocks_signals(seconds)
    elif path == "/catch":
        return _ok(start_response, handler_catches())
    elif path == "/body":
        handler_reads_body(environ)
    elif path == "/started":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial ")
        handler_sleeps(seconds)
    return _ok(start_response, b"done")


async def handler_asyncio_sleeps(seconds):
    await asyncio.sleep(seconds)


async def handler_asyncio_reads_silence(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await reader.read(1)
    finally:
        writer.close()


async def handler_receives_body(receive):
    while (await receive()).get("more_body"):
        pass


async def handler_asyncio_catches():
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return b"cleaned up"
    return b"not interrupted"


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    seconds = float(q.get("s", "30"))
    path = scope["path"]
    body = b"done"
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/sleep":
        handler_sleeps(seconds)
    elif path == "/spin":
        handler_spins()
    elif path == "/asleep":
        await handler_asyncio_sleeps(seconds)
    elif path == "/silent":
        await handler_asyncio_reads_silence(int(q["port"]))
    elif path == "/catch":
        body = await handler_asyncio_catches()
    elif path == "/body":
        await handler_receives_body(receive)
    elif path == "/started":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial ", "more_body": True})
        await handler_asyncio_sleeps(seconds)
        await send({"type": "http.response.body", "body": b"done"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
