"""Calling dirty apps from request handlers: ``DirtyClient`` with the API of
Gunicorn 27's (``execute``/``stream`` for sync and gthread workers,
``execute_async``/``stream_async`` for asyncio ones), and the per-thread and
per-event-loop clients ``get_dirty_client()`` and ``get_dirty_client_async()``
hand out.

The server tells its workers where the dirty arbiter listens through
``GUNICORN_DIRTY_SOCKET``, as Gunicorn does, so this client and Gunicorn's
both find it.

Unlike Gunicorn's, one client may be used by many asyncio tasks at once:
each async call borrows a connection of its own from the client (opening
one when none is idle), and a stream keeps its connection until it ends.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
import weakref
from typing import Any

from ferrocorn.dirty import protocol
from ferrocorn.dirty.errors import DirtyConnectionError, DirtyError, DirtyProtocolError, DirtyTimeoutError

SOCKET_ENV = "GUNICORN_DIRTY_SOCKET"

# Request ids only need to tell a connection's messages apart; one counter
# for the process makes them unique anyway.
_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids) & 0xFFFFFFFFFFFFFFFF


def _outcome(kind: int, request_id: int, expected: int, payload: Any) -> Any:
    """The result an answer carries, or the error it describes, raised."""
    if request_id != expected:
        raise DirtyProtocolError("Answer to request %d while waiting for %d" % (request_id, expected))
    if kind == protocol.MSG_TYPE_RESPONSE:
        return (payload or {}).get("result")
    if kind == protocol.MSG_TYPE_ERROR:
        raise DirtyError.from_dict((payload or {}).get("error") or {})
    raise DirtyProtocolError("Unknown response type: %s" % kind)


class DirtyClient:
    """A connection (or, from asyncio, a few) to the dirty arbiter."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        # Idle asyncio connections, per event loop.
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    # -- blocking ------------------------------------------------------------

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise DirtyConnectionError(
                "Failed to connect to dirty arbiter: %s" % e, socket_path=self.socket_path
            ) from e
        return sock

    def connect(self) -> None:
        """Connects now (the first call would otherwise)."""
        with self._lock:
            if self._sock is None:
                self._sock = self._open()

    def _take(self) -> socket.socket:
        if self._sock is None:
            return self._open()
        sock, self._sock = self._sock, None
        return sock

    def _send_request(self, data: bytes) -> socket.socket:
        """Sends on the kept connection, or on a new one when the kept one
        was closed by a dirty arbiter that has since been replaced: a send
        that fails at once was read by nobody, so sending again is safe."""
        fresh = self._sock is None
        sock = self._take()
        try:
            sock.sendall(data)
            return sock
        except OSError:
            sock.close()
            if fresh:
                raise
        sock = self._open()
        try:
            sock.sendall(data)
        except OSError:
            sock.close()
            raise
        return sock

    def _give_back(self, sock: socket.socket) -> None:
        if self._sock is None:
            self._sock = sock
        else:
            sock.close()

    def execute(self, app_path: str, action: str, *args: Any, **kwargs: Any) -> Any:
        """Calls ``action`` of the dirty app ``app_path`` and returns its
        result; raises the DirtyError the call ended with."""
        with self._lock:
            request_id = _next_id()
            try:
                sock = self._send_request(protocol.call_frame(request_id, app_path, action, args, kwargs))
            except OSError as e:
                raise DirtyConnectionError("Communication error: %s" % e) from e
            try:
                kind, got_id, payload = protocol.read_message(sock)
            except socket.timeout:
                sock.close()
                raise DirtyTimeoutError("Timeout waiting for dirty app response", timeout=self.timeout) from None
            except DirtyError:
                sock.close()
                raise
            except Exception as e:
                sock.close()
                raise DirtyConnectionError("Communication error: %s" % e) from e
            try:
                result = _outcome(kind, got_id, request_id, payload)
            except DirtyProtocolError:
                sock.close()
                raise
            except DirtyError:
                # An error answer leaves the connection in step.
                self._give_back(sock)
                raise
            self._give_back(sock)
            return result

    def stream(self, app_path: str, action: str, *args: Any, **kwargs: Any) -> DirtyStreamIterator:
        """Iterates over what a generator action yields."""
        return DirtyStreamIterator(self, app_path, action, args, kwargs)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    # -- asyncio -------------------------------------------------------------

    async def _open_async(self) -> tuple[Any, Any]:
        try:
            return await asyncio.wait_for(asyncio.open_unix_connection(self.socket_path), timeout=self.timeout)
        except asyncio.TimeoutError:
            raise DirtyTimeoutError("Timeout connecting to dirty arbiter", timeout=self.timeout) from None
        except OSError as e:
            raise DirtyConnectionError(
                "Failed to connect to dirty arbiter: %s" % e, socket_path=self.socket_path
            ) from e

    def _idle_here(self) -> list[tuple[Any, Any]]:
        return self._idle.setdefault(asyncio.get_running_loop(), [])

    async def _take_async(self) -> tuple[Any, Any]:
        idle = self._idle_here()
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return await self._open_async()

    def _give_back_async(self, conn: tuple[Any, Any]) -> None:
        self._idle_here().append(conn)

    async def connect_async(self) -> None:
        """Opens a connection now, for the next async call."""
        self._give_back_async(await self._take_async())

    async def execute_async(self, app_path: str, action: str, *args: Any, **kwargs: Any) -> Any:
        """``execute`` for asyncio code: waits without blocking the loop."""
        reader, writer = await self._take_async()
        request_id = _next_id()
        try:
            writer.write(protocol.call_frame(request_id, app_path, action, args, kwargs))
            await writer.drain()
            kind, got_id, payload = await asyncio.wait_for(protocol.read_message_async(reader), self.timeout)
        except asyncio.TimeoutError:
            writer.close()
            raise DirtyTimeoutError("Timeout waiting for dirty app response", timeout=self.timeout) from None
        except DirtyError:
            writer.close()
            raise
        except BaseException as e:
            # Cancelled, or the connection broke: its state is unknown.
            writer.close()
            if isinstance(e, Exception):
                raise DirtyConnectionError("Communication error: %s" % e) from e
            raise
        try:
            result = _outcome(kind, got_id, request_id, payload)
        except DirtyProtocolError:
            writer.close()
            raise
        except DirtyError:
            self._give_back_async((reader, writer))
            raise
        self._give_back_async((reader, writer))
        return result

    def stream_async(self, app_path: str, action: str, *args: Any, **kwargs: Any) -> DirtyAsyncStreamIterator:
        """Iterates (``async for``) over what a generator action yields."""
        return DirtyAsyncStreamIterator(self, app_path, action, args, kwargs)

    async def close_async(self) -> None:
        """Closes this event loop's idle connections."""
        idle = self._idle.pop(asyncio.get_running_loop(), [])
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            try:
                await writer.wait_closed()
            except OSError:
                pass

    def __enter__(self) -> DirtyClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DirtyClient:
        await self.connect_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()


class _StreamClock:
    """Gunicorn's two stream limits: the whole stream within the client's
    timeout, and each chunk within the idle timeout (30 s at most)."""

    DEFAULT_IDLE_TIMEOUT = 30.0

    def __init__(self, total: float, idle: float | None) -> None:
        self.total = total
        self.idle = idle if idle is not None else min(self.DEFAULT_IDLE_TIMEOUT, total)
        self.deadline = 0.0
        self.last = 0.0

    def start(self) -> None:
        self.last = time.monotonic()
        self.deadline = self.last + self.total

    def next_wait(self) -> float:
        """How long the next chunk may take; raises once the stream is over
        its total time."""
        now = time.monotonic()
        if now >= self.deadline:
            raise DirtyTimeoutError("Stream exceeded total timeout", timeout=self.total)
        return min(self.deadline - now, self.idle)

    def expired(self) -> DirtyTimeoutError:
        """The error for a wait that ran out."""
        now = time.monotonic()
        if now >= self.deadline:
            return DirtyTimeoutError("Stream exceeded total timeout", timeout=self.total)
        return DirtyTimeoutError("Timeout waiting for next chunk (idle %.1fs)" % (now - self.last), timeout=self.idle)


def _stream_step(kind: int, got_id: int, payload: Any, expected: int) -> tuple[bool, Any]:
    """(more, chunk) for one message of a stream."""
    if got_id != expected:
        raise DirtyProtocolError("Answer to request %d while streaming %d" % (got_id, expected))
    if kind == protocol.MSG_TYPE_CHUNK:
        return True, (payload or {}).get("data")
    if kind == protocol.MSG_TYPE_ERROR:
        raise DirtyError.from_dict((payload or {}).get("error") or {})
    if kind in (protocol.MSG_TYPE_END, protocol.MSG_TYPE_RESPONSE):
        # A plain answer to a stream: Gunicorn's client ends the stream
        # without yielding it.
        return False, None
    raise DirtyProtocolError("Unknown message type: %s" % kind)


class DirtyStreamIterator:
    """What ``DirtyClient.stream()`` returns. The stream has the client's
    connection to itself until it ends; a stream left unfinished closes it."""

    DEFAULT_IDLE_TIMEOUT = _StreamClock.DEFAULT_IDLE_TIMEOUT

    def __init__(
        self,
        client: DirtyClient,
        app_path: str,
        action: str,
        args: tuple,
        kwargs: dict,
        idle_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.app_path, self.action, self.args, self.kwargs = app_path, action, args, kwargs
        self._clock = _StreamClock(client.timeout, idle_timeout)
        self._sock: socket.socket | None = None
        self._id = 0
        self._done = False

    def __iter__(self) -> DirtyStreamIterator:
        return self

    def _start(self) -> None:
        self._id = _next_id()
        data = protocol.call_frame(self._id, self.app_path, self.action, self.args, self.kwargs)
        self._clock.start()
        try:
            with self.client._lock:
                self._sock = self.client._send_request(data)
        except OSError as e:
            self._done = True
            raise DirtyConnectionError("Communication error: %s" % e) from e

    def _finish(self, reusable: bool) -> None:
        self._done = True
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if reusable:
            with self.client._lock:
                self.client._give_back(sock)
        else:
            sock.close()

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._sock is None:
            self._start()
        sock = self._sock
        try:
            wait = self._clock.next_wait()
            sock.settimeout(wait)
            message = protocol.read_message(sock)
        except DirtyTimeoutError:
            self._finish(False)
            raise
        except socket.timeout:
            # The rest of the stream may still come: the connection goes, so
            # no later call reads it as its own answer.
            self._finish(False)
            raise self._clock.expired() from None
        except Exception as e:
            self._finish(False)
            raise DirtyConnectionError("Communication error: %s" % e) from e
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.client.timeout)
        self._clock.last = time.monotonic()
        try:
            more, chunk = _stream_step(*message, self._id)
        except DirtyProtocolError:
            self._finish(False)
            raise
        except DirtyError:
            self._finish(True)
            raise
        if not more:
            self._finish(True)
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Stops reading; the arbiter is told the caller went away."""
        if not self._done:
            self._finish(False)

    def __del__(self) -> None:
        if self._sock is not None:
            self._sock.close()


class DirtyAsyncStreamIterator:
    """What ``DirtyClient.stream_async()`` returns."""

    DEFAULT_IDLE_TIMEOUT = _StreamClock.DEFAULT_IDLE_TIMEOUT

    def __init__(
        self,
        client: DirtyClient,
        app_path: str,
        action: str,
        args: tuple,
        kwargs: dict,
        idle_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.app_path, self.action, self.args, self.kwargs = app_path, action, args, kwargs
        self._clock = _StreamClock(client.timeout, idle_timeout)
        self._conn: tuple[Any, Any] | None = None
        self._id = 0
        self._done = False

    def __aiter__(self) -> DirtyAsyncStreamIterator:
        return self

    async def _start(self) -> None:
        self._conn = await self.client._take_async()
        self._id = _next_id()
        self._clock.start()
        writer = self._conn[1]
        try:
            writer.write(protocol.call_frame(self._id, self.app_path, self.action, self.args, self.kwargs))
            await writer.drain()
        except OSError as e:
            self._finish(False)
            raise DirtyConnectionError("Communication error: %s" % e) from e

    def _finish(self, reusable: bool) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reusable:
            self.client._give_back_async(conn)
        else:
            conn[1].close()

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        if self._conn is None:
            await self._start()
        try:
            wait = self._clock.next_wait()
            message = await asyncio.wait_for(protocol.read_message_async(self._conn[0]), wait)
        except DirtyTimeoutError:
            self._finish(False)
            raise
        except asyncio.TimeoutError:
            self._finish(False)
            raise self._clock.expired() from None
        except BaseException as e:
            self._finish(False)
            if isinstance(e, Exception):
                raise DirtyConnectionError("Communication error: %s" % e) from e
            raise
        self._clock.last = time.monotonic()
        try:
            more, chunk = _stream_step(*message, self._id)
        except DirtyProtocolError:
            self._finish(False)
            raise
        except DirtyError:
            self._finish(True)
            raise
        if not more:
            self._finish(True)
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        """Stops reading; the arbiter is told the caller went away."""
        if not self._done:
            self._finish(False)


# -- the clients handed out ----------------------------------------------------

_thread_local = threading.local()
# One client per event loop and timeout: it is safe for concurrent tasks.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, DirtyClient]] = (
    weakref.WeakKeyDictionary()
)
_socket_path: str | None = None


def set_dirty_socket_path(path: str) -> None:
    """Where the dirty arbiter listens, for this process (the server sets
    ``GUNICORN_DIRTY_SOCKET``, which is used when this is not called)."""
    global _socket_path
    _socket_path = path
    from ferrocorn.dirty import stash

    stash.set_stash_socket_path(path)


def get_dirty_socket_path() -> str:
    path = _socket_path or os.environ.get(SOCKET_ENV)
    if not path:
        raise DirtyError("Dirty socket path not configured. Make sure dirty_workers > 0 and dirty_apps are configured.")
    return path


def get_dirty_client(timeout: float = 30.0) -> DirtyClient:
    """This thread's client (made with `timeout` the first time)."""
    client = getattr(_thread_local, "dirty_client", None)
    if client is None:
        client = DirtyClient(get_dirty_socket_path(), timeout=timeout)
        _thread_local.dirty_client = client
    return client


async def get_dirty_client_async(timeout: float = 30.0) -> DirtyClient:
    """The running event loop's client for `timeout`, shared by its tasks."""
    per_timeout = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = per_timeout.get(timeout)
    if client is None:
        client = per_timeout[timeout] = DirtyClient(get_dirty_socket_path(), timeout=timeout)
    return client


def close_dirty_client() -> None:
    """Closes this thread's client."""
    client = getattr(_thread_local, "dirty_client", None)
    if client is not None:
        client.close()
        _thread_local.dirty_client = None


async def close_dirty_client_async() -> None:
    """Closes the running event loop's clients."""
    for client in _async_clients.pop(asyncio.get_running_loop(), {}).values():
        await client.close_async()
