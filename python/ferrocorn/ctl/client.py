"""The control protocol, as Gunicorn 27 defines it (``gunicorn/ctl/protocol.py``):
each message is a 4-byte big-endian length followed by that many bytes of
JSON. Requests are ``{"id", "command", "args"}``; answers carry the same id
and ``"status": "ok"`` with ``data``, or ``"status": "error"`` with ``error``."""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

# The largest answer read (Gunicorn's limit).
MAX_MESSAGE = 16 * 1024 * 1024


class ControlError(Exception):
    """The server could not be reached, or refused the command."""


def default_socket() -> str:
    """Where Gunicorn 27 (and ferrocorn, with the same default) puts the
    control socket: $XDG_RUNTIME_DIR/gunicorn.ctl if that is a directory,
    else ~/.gunicorn/gunicorn.ctl."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "gunicorn.ctl")
    return os.path.join(os.path.expanduser("~"), ".gunicorn", "gunicorn.ctl")


def encode(message: Any) -> bytes:
    payload = json.dumps(message).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    """n bytes, filled in place 64 KiB at a time; EOF before the last one is an error."""
    buf = bytearray(n)
    view = memoryview(buf)
    filled = 0
    while filled < n:
        got = sock.recv_into(view[filled:], min(n - filled, 65536))
        if got == 0:
            raise ControlError("connection closed by the server")
        filled += got
    return bytes(buf)


def read_message(sock: socket.socket) -> Any:
    (length,) = struct.unpack(">I", _read_exactly(sock, 4))
    if length > MAX_MESSAGE:
        raise ControlError("answer too large: %d bytes" % length)
    try:
        return json.loads(_read_exactly(sock, length).decode("utf-8"))
    except ValueError as e:
        raise ControlError("invalid answer: %s" % e) from e


class ControlClient:
    """One connection to a control socket; commands are sent one at a time."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._id = 0

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise ControlError("Failed to connect to %s: %s" % (self.path, e)) from e
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, command: str, args: Iterable[Any] | None = None) -> Any:
        """Sends one command and returns its ``data``; raises ControlError
        with the server's message when it refuses it."""
        self.connect()
        self._id += 1
        try:
            self._sock.sendall(encode({"id": self._id, "command": command, "args": list(args or [])}))
            answer = read_message(self._sock)
        except (OSError, ControlError) as e:
            self.close()
            raise ControlError("Communication error: %s" % e) from e
        if not isinstance(answer, dict):
            raise ControlError("invalid answer: %r" % (answer,))
        if answer.get("status") == "error":
            raise ControlError(answer.get("error", "Unknown error"))
        return answer.get("data", {})

    def __enter__(self) -> ControlClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
