"""The stash: named tables of keys and values kept by the dirty arbiter,
shared by every dirty worker and HTTP worker that talks to it (Gunicorn
27's ``gunicorn.dirty.stash``, which works against ferrocorn too). Each
operation is one message to the arbiter; nothing is shared in memory.

    from ferrocorn.dirty import stash
    stash.put("sessions", "user:1", {"name": "Alice"})
    stash.get("sessions", "user:1")
    stash.table("sessions")["user:2"] = {...}

Tables live as long as the dirty arbiter: a server restart empties them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from ferrocorn.dirty import protocol
from ferrocorn.dirty.errors import DirtyError


class StashError(DirtyError):
    """A stash operation failed."""


class StashTableNotFoundError(StashError):
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        super().__init__("Stash table not found: %s" % (table_name,))


class StashKeyNotFoundError(StashError):
    def __init__(self, table_name: str, key: Any) -> None:
        self.table_name = table_name
        self.key = key
        super().__init__("Key not found in %s: %s" % (table_name, key))


class StashClient:
    """One connection to the arbiter, for one thread at a time."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
            except OSError as e:
                sock.close()
                raise StashError("Failed to connect to arbiter: %s" % e) from e
            self._sock = sock
        return self._sock

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _execute(self, op: int, table: str, key: Any = None, value: Any = None, pattern: str | None = None) -> Any:
        payload: dict[str, Any] = {"op": op, "table": table}
        # Absent, not None: as Gunicorn's client sends them.
        for name, v in (("key", key), ("value", value), ("pattern", pattern)):
            if v is not None:
                payload[name] = v
        with self._lock:
            request_id = threading.get_ident() & 0xFFFFFFFF
            try:
                sock = self._connect()
                sock.sendall(protocol.frame(protocol.MSG_TYPE_STASH, request_id, payload))
                kind, _, answer = protocol.read_message(sock)
            except StashError:
                self._close()
                raise
            except Exception as e:
                self._close()
                raise StashError("Stash operation failed: %s" % e) from e
        answer = answer or {}
        if kind == protocol.MSG_TYPE_RESPONSE:
            return answer.get("result")
        if kind == protocol.MSG_TYPE_ERROR:
            error = answer.get("error") or {}
            error_type = error.get("error_type")
            if error_type == "StashTableNotFoundError":
                raise StashTableNotFoundError(table)
            if error_type == "StashKeyNotFoundError":
                raise StashKeyNotFoundError(table, key)
            raise StashError(error.get("message", "Unknown error"))
        self._close()
        raise StashError("Unexpected response type: %s" % kind)

    def put(self, table: str, key: Any, value: Any) -> None:
        """Stores `value` under `key`, making the table if needed."""
        self._execute(protocol.STASH_OP_PUT, table, key=key, value=value)

    def get(self, table: str, key: Any, default: Any = None) -> Any:
        try:
            return self._execute(protocol.STASH_OP_GET, table, key=key)
        except StashKeyNotFoundError:
            return default

    def delete(self, table: str, key: Any) -> bool:
        """True when the key was there."""
        return self._execute(protocol.STASH_OP_DELETE, table, key=key)

    def keys(self, table: str, pattern: str | None = None) -> list[Any]:
        """The table's keys, those matching a glob `pattern` when given."""
        return self._execute(protocol.STASH_OP_KEYS, table, pattern=pattern)

    def clear(self, table: str) -> None:
        self._execute(protocol.STASH_OP_CLEAR, table)

    def info(self, table: str) -> dict[str, Any]:
        """``{"size": entries, "table": name}``."""
        return self._execute(protocol.STASH_OP_INFO, table)

    def ensure(self, table: str) -> None:
        """Makes the table if it does not exist."""
        self._execute(protocol.STASH_OP_ENSURE, table)

    def exists(self, table: str, key: Any = None) -> bool:
        """Whether the table (or a key in it) exists."""
        return self._execute(protocol.STASH_OP_EXISTS, table, key=key)

    def delete_table(self, table: str) -> None:
        self._execute(protocol.STASH_OP_DELETE_TABLE, table)

    def tables(self) -> list[str]:
        return self._execute(protocol.STASH_OP_TABLES, "")

    def table(self, name: str) -> StashTable:
        return StashTable(self, name)

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> StashClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StashTable:
    """A table as a dict: each operation is a message to the arbiter."""

    def __init__(self, client: StashClient, name: str) -> None:
        self._client = client
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __getitem__(self, key: Any) -> Any:
        value = self._client.get(self._name, key)
        if value is None and not self._client.exists(self._name, key):
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._client.put(self._name, key, value)

    def __delitem__(self, key: Any) -> None:
        if not self._client.delete(self._name, key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return self._client.exists(self._name, key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._client.keys(self._name))

    def __len__(self) -> int:
        return self._client.info(self._name).get("size", 0)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._client.get(self._name, key, default)

    def keys(self, pattern: str | None = None) -> list[Any]:
        return self._client.keys(self._name, pattern=pattern)

    def clear(self) -> None:
        self._client.clear(self._name)

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key in self._client.keys(self._name):
            yield key, self._client.get(self._name, key)

    def values(self) -> Iterator[Any]:
        for key in self._client.keys(self._name):
            yield self._client.get(self._name, key)


# -- the module-level API: one client per thread -------------------------------

_local = threading.local()
_socket_path: str | None = None


def set_stash_socket_path(path: str) -> None:
    global _socket_path
    _socket_path = path


def get_stash_socket_path() -> str:
    path = _socket_path or os.environ.get("GUNICORN_DIRTY_SOCKET")
    if not path:
        raise StashError("Stash socket path not configured. Make sure dirty_workers > 0 and dirty_apps are configured.")
    return path


def _client() -> StashClient:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = StashClient(get_stash_socket_path())
    return client


def put(table: str, key: Any, value: Any) -> None:
    _client().put(table, key, value)


def get(table: str, key: Any, default: Any = None) -> Any:
    return _client().get(table, key, default)


def delete(table: str, key: Any) -> bool:
    return _client().delete(table, key)


def keys(table: str, pattern: str | None = None) -> list[Any]:
    return _client().keys(table, pattern)


def clear(table: str) -> None:
    _client().clear(table)


def info(table: str) -> dict[str, Any]:
    return _client().info(table)


def ensure(table: str) -> None:
    _client().ensure(table)


def exists(table: str, key: Any = None) -> bool:
    return _client().exists(table, key)


def delete_table(table: str) -> None:
    _client().delete_table(table)


def tables() -> list[str]:
    return _client().tables()


def table(name: str) -> StashTable:
    return _client().table(name)
