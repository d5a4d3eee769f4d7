"""``-k tornado``: Tornado applications on ferrocorn's asgi engine.

The asgi worker's Rust engine owns the sockets, parses and validates each
request (Gunicorn's rules), frames responses, keeps connections alive and
runs the WebSocket protocol; this module drives Tornado's HTTP delegate
interface from it, on Tornado's IOLoop (asyncio's loop on Python 3):

- a request becomes ``app.start_request(server_conn, request_conn)``, then
  ``headers_received``, ``data_received`` for each body chunk as it arrives
  (so ``@stream_request_body`` handlers stream, and a Future they return
  holds back the next chunk), and ``finish``;
- ``request_conn`` is Tornado's ``HTTPConnection``: ``write_headers``,
  ``write`` and ``finish`` become ASGI ``send`` calls, in order, and the
  Futures they return complete when the engine took the bytes (so
  ``await self.flush()`` waits for a slow client);
- a ``WebSocketHandler`` gets a protocol object over the ASGI WebSocket
  messages instead of a detached stream: its 101 is the ``websocket.accept``,
  ``write_message``/``close`` are ``websocket.send``/``websocket.close``, and
  ``on_message``/``on_close`` are called as messages and the close arrive.

A WSGI application under ``-k tornado`` is served as Gunicorn's tornado
worker serves it: through ``tornado.wsgi.WSGIContainer``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable

from tornado import httputil, websocket
from tornado.wsgi import WSGIContainer

Send = Callable[[dict], Any]
MAX_BODY_SIZE = 100 * 1024 * 1024
Receive = Callable[[], Any]


def adapt(app: Any) -> Callable[..., Any]:
    """The ASGI callable that serves ``app``: a Tornado delegate (an
    ``Application``, or any ``HTTPServerConnectionDelegate``) as it is, a
    WSGI callable through ``WSGIContainer`` (Gunicorn's tornado worker does
    the same)."""
    if not isinstance(app, httputil.HTTPServerConnectionDelegate):
        if not isinstance(app, WSGIContainer):
            app = WSGIContainer(app)
        app = _CallableDelegate(app)
    _install_websocket_protocol()
    return TornadoASGI(app)


class _CallableDelegate(httputil.HTTPServerConnectionDelegate):
    """What Tornado's HTTPServer makes of a plain request callback (a
    ``WSGIContainer``): the whole request, any method, to the callback."""

    def __init__(self, callback: Callable[[httputil.HTTPServerRequest], Any]) -> None:
        self.callback = callback

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        from tornado.httpserver import _CallableAdapter

        return _CallableAdapter(self.callback, request_conn)


class _ServerConnection:
    """What Tornado's delegates get as ``server_conn``: an identity."""


class _Context:
    """``request.connection.context``: where ``HTTPServerRequest`` reads the
    client's address and the scheme."""

    def __init__(self, scope: dict) -> None:
        client = scope.get("client")
        self.address = tuple(client) if client else None
        self.remote_ip = client[0] if client else None
        self.protocol = "https" if scope.get("scheme") in ("https", "wss") else "http"
        self.trusted_downstream: set[str] = set()

    def __str__(self) -> str:
        return str(self.remote_ip)


class RequestConnection(httputil.HTTPConnection):
    """Tornado's ``HTTPConnection`` for one request, over ASGI ``send``."""

    def __init__(self, scope: dict, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        self.context = _Context(scope)
        self.websocket = scope["type"] == "websocket"
        self._send = send
        self._loop = loop
        self._tail: asyncio.Future[None] | None = None
        self._close_callback: Callable[[], None] | None = None
        # Tornado's HTTPServer default (a handler may change it, as
        # @stream_request_body handlers do in prepare()).
        self.max_body_size = MAX_BODY_SIZE
        self.finished: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self.accepted = False
        self.started = False

    # Tornado's HTTPConnection interface.

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.get_all()]
        if self.websocket:
            return self._queue([self._websocket_answer(start_line.code, raw)])
        self.started = True
        messages: list[dict] = [{"type": "http.response.start", "status": start_line.code, "headers": raw}]
        if chunk:
            messages.append({"type": "http.response.body", "body": chunk, "more_body": True})
        return self._queue(messages)

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        if self.websocket:
            return self._done()
        return self._queue([{"type": "http.response.body", "body": chunk, "more_body": True}])

    def finish(self) -> None:
        if self.websocket:
            # An accepted WebSocket lasts until its protocol ends it.
            if not self.accepted:
                self._resolve_finished()
            return
        tail = self._queue([{"type": "http.response.body", "body": b"", "more_body": False}])
        tail.add_done_callback(lambda _f: self._resolve_finished())

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def set_max_body_size(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def set_body_timeout(self, timeout: float) -> None:
        # The engine's own deadlines apply to bodies (Gunicorn's).
        pass

    # The adapter's side.

    def connection_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._resolve_finished()
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()

    def _websocket_answer(self, status: int, headers: list[tuple[bytes, bytes]]) -> dict:
        """The handshake's answer: 101 accepts (with the subprotocol the
        handler chose), anything else refuses (403, Gunicorn's answer to a
        WebSocket closed before accept)."""
        if status != 101:
            return {"type": "websocket.close", "code": 1000}
        self.accepted = True
        skip = {b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-protocol", b"content-length"}
        subprotocol = next((v.decode("latin-1") for k, v in headers if k == b"sec-websocket-protocol"), None)
        return {
            "type": "websocket.accept",
            "subprotocol": subprotocol,
            "headers": [(k, v) for k, v in headers if k not in skip],
        }

    def resolve_finished(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    _resolve_finished = resolve_finished

    def _done(self) -> asyncio.Future[None]:
        f = self._loop.create_future()
        f.set_result(None)
        return f

    def queue(self, messages: list[dict]) -> asyncio.Future[None]:
        return self._queue(messages)

    def _queue(self, messages: list[dict]) -> asyncio.Future[None]:
        """Sends `messages` after everything queued before them; the Future
        completes when the engine has taken them. The engine's send()
        completes at once while the client keeps up, so the common case
        costs no task."""
        if self.closed:
            return self._done()
        if self._tail is not None and not self._tail.done():
            self._tail = asyncio.ensure_future(self._after(self._tail, messages))
            return self._tail
        for i, message in enumerate(messages):
            try:
                step = self._send(message).__await__()
                # next(), not send(None): the engine's completed awaitables
                # end on their first __next__ (as `await` steps them).
                waiting = next(step)
            except StopIteration:
                continue
            except Exception:
                self._gone()
                return self._done()
            # A real wait (a slow client): the rest goes on in a task.
            self._tail = asyncio.ensure_future(self._resume(step, waiting, messages[i + 1 :]))
            return self._tail
        return self._done()

    async def _after(self, previous: asyncio.Future[None], messages: list[dict]) -> None:
        await asyncio.shield(previous)
        await self._send_all(messages)

    async def _resume(self, step: Any, waiting: Any, messages: list[dict]) -> None:
        try:
            await _Resumed(step, waiting)
        except Exception:
            self._gone()
            return
        await self._send_all(messages)

    async def _send_all(self, messages: list[dict]) -> None:
        for m in messages:
            if self.closed:
                return
            try:
                await self._send(m)
            except Exception:
                self._gone()
                return

    def _gone(self) -> None:
        # The client is gone: Tornado learns it from the close callback,
        # not from its write Futures (as with its own HTTP1Connection,
        # whose writes then do nothing).
        self.connection_lost()


class _Resumed:
    """Finishes an await that was started by hand and had to wait: yields
    what it waits on to the task, then steps it on."""

    def __init__(self, step: Any, waiting: Any) -> None:
        self.step = step
        self.waiting = waiting

    def __await__(self) -> Any:
        waiting = self.waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as e:
                waiting = self.step.throw(e)
                continue
            try:
                waiting = self.step.send(sent)
            except StopIteration as done:
                return done.value


class TornadoASGI:
    """The ASGI application the engine calls for a Tornado delegate."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate) -> None:
        self.app = app
        self.server_conn = _ServerConnection()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        loop = asyncio.get_running_loop()
        conn = RequestConnection(scope, send, loop)
        conn.receive = receive  # type: ignore[attr-defined]
        delegate = self.app.start_request(self.server_conn, conn)
        target = scope.get("raw_path") or scope["path"].encode("latin-1")
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        version = "HTTP/" + scope.get("http_version", "1.1")
        start_line = httputil.RequestStartLine(scope.get("method", "GET"), target.decode("latin-1"), version)
        headers = httputil.HTTPHeaders()
        for name, value in scope["headers"]:
            headers.add(name.decode("latin-1"), value.decode("latin-1"))
        try:
            await self._exchange(conn, delegate, start_line, headers, receive)
        except httputil.HTTPInputError as e:
            # Tornado's own checks on top of the engine's (a missing Host
            # on HTTP/1.1): answered as Tornado's HTTP server answers them.
            logging.getLogger("tornado.general").info("Malformed HTTP message from %s: %s", conn.context, e)
            if conn.websocket:
                await send({"type": "websocket.close", "code": 1000})
            elif not conn.started:
                await send({"type": "http.response.start", "status": 400, "headers": [(b"connection", b"close")]})
                await send({"type": "http.response.body", "body": b""})
        finally:
            if not conn.finished.done():
                conn.connection_lost()

    async def _exchange(
        self,
        conn: RequestConnection,
        delegate: httputil.HTTPMessageDelegate,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
        receive: Receive,
    ) -> None:
        waited = delegate.headers_received(start_line, headers)
        if waited is not None:
            await waited
        declared = headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > conn.max_body_size:
            raise httputil.HTTPInputError("Content-Length too long")
        if conn.websocket:
            # No body: the handler runs (and, accepting, takes the messages
            # through its protocol, see ASGIWebSocketProtocol).
            delegate.finish()
            await conn.finished
            return
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                conn.connection_lost()
                delegate.on_connection_close()
                return
            body = message.get("body", b"")
            if body:
                received += len(body)
                if received > conn.max_body_size:
                    # Tornado's HTTP1Connection answers an oversized body
                    # by closing the connection.
                    conn.connection_lost()
                    delegate.on_connection_close()
                    return
                waited = delegate.data_received(body)
                if waited is not None:
                    await waited
            if not message.get("more_body", False):
                break
        delegate.finish()
        # The handler may run on (a long poll, a stream). If the client
        # leaves meanwhile, the engine cancels this call after
        # --asgi-disconnect-grace-period, and the close callback runs then
        # (in __call__'s finally), so the handler's on_connection_close does.
        await conn.finished

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """A Tornado application has no lifespan of its own: startup and
        shutdown complete at once."""
        kind = ""
        while kind != "lifespan.shutdown":
            kind = (await receive())["type"]
            if kind in ("lifespan.startup", "lifespan.shutdown"):
                await send({"type": kind + ".complete"})


class ASGIWebSocketProtocol(websocket.WebSocketProtocol):
    """A ``WebSocketHandler``'s protocol over the engine's ASGI WebSocket
    messages (the engine does the framing, pings and the close handshake)."""

    def __init__(self, handler: websocket.WebSocketHandler, conn: RequestConnection) -> None:
        super().__init__(handler)
        self.conn = conn
        self._selected_subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._closing = False

    @property
    def selected_subprotocol(self) -> str | None:
        return self._selected_subprotocol

    @selected_subprotocol.setter
    def selected_subprotocol(self, value: str | None) -> None:
        self._selected_subprotocol = value

    async def accept_connection(self, handler: websocket.WebSocketHandler) -> None:
        offered = handler.request.headers.get("Sec-WebSocket-Protocol")
        subprotocols = [s.strip() for s in offered.split(",")] if offered else []
        self.selected_subprotocol = handler.select_subprotocol(subprotocols)
        if self.selected_subprotocol:
            handler.set_header("Sec-WebSocket-Protocol", self.selected_subprotocol)
        handler.clear_header("Content-Type")
        handler.set_status(101)
        handler.finish()
        try:
            opened = handler.open(*handler.open_args, **handler.open_kwargs)
            if opened is not None:
                await opened
        except Exception:
            handler.log_exception(*sys.exc_info())
            self._abort()
            return
        try:
            await self._receive_loop()
        finally:
            self.conn.resolve_finished()

    async def _receive_loop(self) -> None:
        receive = self.conn.receive  # type: ignore[attr-defined]
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.close_code = message.get("code")
                self.close_reason = message.get("reason") or None
                self._closing = True
                self.handler.on_ws_connection_close(self.close_code, self.close_reason)
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is None:
                continue
            handled = self.handler.on_message(data)
            if handled is not None:
                await handled

    def write_message(self, message: str | bytes | dict[str, Any], binary: bool = False) -> asyncio.Future[None]:
        if binary:
            out = {"type": "websocket.send", "bytes": message if isinstance(message, bytes) else str(message).encode()}
        else:
            text = message.decode("utf-8") if isinstance(message, bytes) else str(message)
            out = {"type": "websocket.send", "text": text}
        return self.conn.queue([out])

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        message: dict[str, Any] = {"type": "websocket.close", "code": code or 1000}
        if reason:
            message["reason"] = reason
        self.conn.queue([message])

    def is_closing(self) -> bool:
        return self._closing or self.conn.closed

    def write_ping(self, data: bytes) -> None:
        # ASGI has no ping message: the engine answers the client's pings,
        # and a handler's own pings are not sent.
        pass

    def set_nodelay(self, x: bool) -> None:
        pass  # the engine sets TCP_NODELAY on every connection

    def on_connection_close(self) -> None:
        self._closing = True

    def _abort(self) -> None:
        self._closing = True
        self.conn.queue([{"type": "websocket.close", "code": 1011}])
        self.conn.resolve_finished()

    # The abstract parts of WebSocketProtocol that only a stream-based
    # protocol uses.
    def _process_server_headers(self, key: Any, headers: Any) -> None:
        raise NotImplementedError("server side only")

    def start_pinging(self) -> None:
        pass

    async def _receive_frame_loop(self) -> None:
        raise NotImplementedError("the engine receives the frames")

    def _connection_closed(self) -> None:  # pragma: no cover - not called here
        pass


_INSTALLED = False


def _install_websocket_protocol() -> None:
    """``WebSocketHandler.get_websocket_protocol`` gives handlers served by
    this adapter the ASGI-backed protocol (once per process)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    original = websocket.WebSocketHandler.get_websocket_protocol

    def get_websocket_protocol(self: websocket.WebSocketHandler) -> Any:
        conn = self.request.connection
        if isinstance(conn, RequestConnection) and conn.websocket:
            return ASGIWebSocketProtocol(self, conn)
        return original(self)

    websocket.WebSocketHandler.get_websocket_protocol = get_websocket_protocol  # type: ignore[method-assign]
