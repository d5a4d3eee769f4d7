"""The dirty protocol as ``ferrocorn.dirty``'s clients speak it: Gunicorn
27's frames (a 16-byte header: ``GD``, version 1, the message kind, the
payload length and a request id) with TLV payloads. Encoding and decoding
are done by the Rust extension; this module reads and writes whole
messages on blocking sockets and asyncio streams."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ferrocorn._ferrocorn import dirty_call_frame, dirty_decode, dirty_frame, dirty_parse_header
from ferrocorn.dirty.errors import DirtyProtocolError

MSG_TYPE_REQUEST = 0x01
MSG_TYPE_RESPONSE = 0x02
MSG_TYPE_ERROR = 0x03
MSG_TYPE_CHUNK = 0x04
MSG_TYPE_END = 0x05
MSG_TYPE_STASH = 0x10
MSG_TYPE_STATUS = 0x11
MSG_TYPE_MANAGE = 0x12

# The stash operations, numbered from 1 in this order on the wire.
STASH_OP_PUT, STASH_OP_GET, STASH_OP_DELETE, STASH_OP_KEYS, STASH_OP_CLEAR = range(1, 6)
STASH_OP_INFO, STASH_OP_ENSURE, STASH_OP_DELETE_TABLE, STASH_OP_TABLES, STASH_OP_EXISTS = range(6, 11)

MANAGE_OP_ADD = 1
MANAGE_OP_REMOVE = 2

HEADER_SIZE = 16
MAX_MESSAGE_SIZE = 64 * 1024 * 1024

__all__ = [
    "HEADER_SIZE",
    "MAX_MESSAGE_SIZE",
    "call_frame",
    "frame",
    "read_message",
    "read_message_async",
]


def frame(kind: int, request_id: int, payload: Any = None) -> bytes:
    """A whole message, ready to send."""
    return dirty_frame(kind, request_id, payload)


def call_frame(request_id: int, app_path: str, action: str, args: tuple, kwargs: dict) -> bytes:
    """A request to call ``action`` of the dirty app ``app_path``."""
    return dirty_call_frame(request_id, app_path, action, args, kwargs)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    first = sock.recv(n)
    if len(first) == n:
        return first
    if not first:
        raise DirtyProtocolError("Connection closed")
    buf = bytearray(first)
    while len(buf) < n:
        more = sock.recv(n - len(buf))
        if not more:
            raise DirtyProtocolError("Connection closed after %d bytes, expected %d" % (len(buf), n))
        buf += more
    return bytes(buf)


def read_message(sock: socket.socket) -> tuple[int, int, Any]:
    """The next message on a blocking socket: (kind, request id, payload;
    None when it has none)."""
    kind, request_id, length = dirty_parse_header(_recv_exactly(sock, HEADER_SIZE))
    payload = dirty_decode(_recv_exactly(sock, length)) if length else None
    return kind, request_id, payload


async def read_message_async(reader: asyncio.StreamReader) -> tuple[int, int, Any]:
    """The next message on an asyncio stream."""
    try:
        head = await reader.readexactly(HEADER_SIZE)
        kind, request_id, length = dirty_parse_header(head)
        payload = dirty_decode(await reader.readexactly(length)) if length else None
    except asyncio.IncompleteReadError as e:
        raise DirtyProtocolError("Connection closed after %d bytes" % len(e.partial)) from None
    return kind, request_id, payload
