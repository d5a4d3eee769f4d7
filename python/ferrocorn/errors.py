"""Exceptions ferrocorn raises into application code.

``wsgi.input.read()`` raises :class:`ParseException` for a request body that
cannot be framed (a bad chunk size, a missing terminator, a forbidden
trailer) and :class:`NoMoreData` when the client closed the connection before
the body was complete; the server answers such a request as Gunicorn does,
whatever the application returns.
"""

from ferrocorn._ferrocorn import (  # noqa: F401
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    NoMoreData,
    ParseException,
)
