"""Exceptions ferrocorn raises into application code.

``wsgi.input.read()`` raises :class:`ParseException` for a request body that
cannot be framed (a bad chunk size, a missing terminator, a forbidden
trailer) and :class:`NoMoreData` when the client closed the connection before
the body was complete; the server answers such a request as Gunicorn does,
whatever the application returns.

ASGI applications see :class:`ClientDisconnected` from ``send()`` after the
client left, and :class:`WebSocketDisconnected` on a closed WebSocket.
"""

from ferrocorn._ferrocorn import (  # noqa: F401
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    NoMoreData,
    ParseException,
)


class ClientDisconnected(OSError):
    """Raised by an ASGI ``send()`` once the client is gone (ASGI 2.4 asks for
    a subclass of OSError, so frameworks can stop producing a response)."""


class WebSocketDisconnected(ClientDisconnected, RuntimeError):
    """Raised by a WebSocket ``send()`` once the connection is closed. It is
    also a RuntimeError, as Gunicorn's is, so ``except RuntimeError`` in
    existing code still matches."""


class RequestTimeout(BaseException):
    """Raised into a handler that ran past ``--request-timeout``: in a WSGI
    worker's thread (sync, gthread) or request greenlet (gevent, eventlet). An ASGI
    handler is cancelled instead (``asyncio.CancelledError``).

    It derives from BaseException, as ``asyncio.CancelledError`` does, so a
    framework's ``except Exception`` that turns errors into 500 pages lets it
    through and the client gets 504 Gateway Timeout. An application may
    still catch it to clean up, and return a response of its own: that
    response is sent.
    """
