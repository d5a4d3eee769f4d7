"""The objects Gunicorn's server hooks and logger classes are given.

ferrocorn's master and workers are Rust; these small classes offer what
hook code written for Gunicorn reads from its ``Arbiter`` (``server``),
``Worker``, ``Config`` (``cfg``), ``Request`` (``req``) and ``Response``
(``resp``). The Rust side creates them and keeps their fields current.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any, Callable, NoReturn, Union

# A listener's address as Gunicorn's parse_address gives it: (host, port),
# a unix socket path or a file descriptor.
Address = Union[tuple[str, int], str, int]
Headers = list[tuple[str, str]]

HOOKS = (
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_int",
    "worker_abort",
    "pre_exec",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
    "ssl_context",
    "on_dirty_starting",
    "dirty_post_fork",
    "dirty_worker_init",
    "dirty_worker_exit",
)


def _default_hook(name: str) -> Callable[..., Any]:
    """Gunicorn's default for an unset hook: nothing, except pre_request,
    which logs the request at debug level."""
    if name == "pre_request":

        def pre_request(worker: Worker, req: Request) -> None:
            worker.log.debug("%s %s", req.method, req.path)

        return pre_request

    def hook(*args: Any) -> None:
        return None

    hook.__name__ = hook.__qualname__ = name
    return hook


class Setting:
    """One entry of ``cfg.settings``."""

    def __init__(self, name: str, value: Any, section: str, cli: list[str]) -> None:
        self.name = name
        self.value = value
        self.section = section
        self.cli = cli

    def get(self) -> Any:
        return self.value

    def __repr__(self) -> str:
        return "<Setting %s: %r>" % (self.name, self.value)


class Config:
    """A read-only view of the effective settings with the attributes and
    properties of ``gunicorn.config.Config``."""

    def __init__(self, values: dict[str, Any], specs: Iterable[tuple[str, str, list[str]]]) -> None:
        object.__setattr__(self, "_values", values)
        object.__setattr__(
            self, "settings", {name: Setting(name, values[name], section, cli) for name, section, cli in specs}
        )

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name not in values:
            raise AttributeError("No configuration setting for: %s" % name)
        value = values[name]
        if value is None and name in HOOKS:
            return _default_hook(name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._values:
            raise AttributeError("Invalid access!")
        object.__setattr__(self, name, value)

    def set(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("ferrocorn's cfg is read-only: set %s in the configuration instead" % name)

    def __str__(self) -> str:
        lines = []
        kmax = max(len(k) for k in self._values)
        for k in sorted(self._values):
            v = self._values[k]
            if callable(v):
                v = f"<{v.__qualname__}()>"
            lines.append("{k:{kmax}} = {v}".format(k=k, v=v, kmax=kmax))
        return "\n".join(lines)

    @property
    def worker_class_str(self) -> str:
        uri = self._values["worker_class"]
        if isinstance(uri, str):
            is_sync = uri.endswith("SyncWorker") or uri == "sync"
            if is_sync and self._values["threads"] > 1:
                return "gthread"
            return uri
        return uri.__name__

    @property
    def worker_class(self) -> str:
        # ferrocorn's workers are Rust: the name stands in for the class.
        return self.worker_class_str

    @property
    def address(self) -> list[Address]:
        return [_parse_address(b) for b in self._values["bind"]]

    @property
    def uid(self) -> int:
        return self._values["user"]

    @property
    def gid(self) -> int:
        return self._values["group"]

    @property
    def proc_name(self) -> str:
        pn = self._values["proc_name"]
        return pn if pn is not None else self._values["default_proc_name"]

    @property
    def logger_class(self) -> Any:
        return self._values["logger_class"]

    @property
    def is_ssl(self) -> str | None:
        return self._values["certfile"] or self._values["keyfile"]

    @property
    def ssl_options(self) -> dict[str, Any]:
        return {name: s.value for name, s in self.settings.items() if s.section == "SSL"}

    @property
    def env(self) -> dict[str, str]:
        env = {}
        for e in self._values["raw_env"]:
            k, _, v = e.partition("=")
            env[k] = v
        return env

    @property
    def sendfile(self) -> bool | None:
        return self._values["sendfile"]

    @property
    def reuse_port(self) -> bool:
        return self._values["reuse_port"]

    @property
    def paste_global_conf(self) -> dict[str, str]:
        return paste_global_conf(self._values["raw_paste_global_conf"])


def paste_global_conf(raw: Iterable[str]) -> dict[str, str]:
    """``--paste-global KEY=VALUE`` items as Gunicorn reads them (``\\=``
    escapes an equals sign)."""
    import re

    conf = {}
    for e in raw:
        try:
            k, v = re.split(r"(?<!\\)=", e, maxsplit=1)
        except ValueError:
            raise RuntimeError("environment setting %r invalid" % e) from None
        conf[k.replace("\\=", "=")] = v.replace("\\=", "=")
    return conf


def _parse_address(netloc: str) -> Address:
    """``gunicorn.util.parse_address`` with its default port: a Unix socket
    path, an fd, or ``(host, port)``. The parser is the one ``--bind`` is
    read with (``src/net/bind.rs``)."""
    from ferrocorn._ferrocorn import parse_address

    return parse_address(netloc)


class Listener:
    """An entry of ``server.LISTENERS`` and ``worker.sockets`` (Gunicorn's
    ``sock.BaseSocket``): prints as Gunicorn prints its listeners, gives its
    ``fileno()`` and address. ``sock`` is a duplicate of the socket, so code
    that closes it does not close the server's own."""

    def __init__(self, text: str, fd: int) -> None:
        self._text = text
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    @property
    def sock(self) -> socket.socket:
        return socket.socket(fileno=os.dup(self._fd))

    def getsockname(self) -> Any:
        s = self.sock
        try:
            return s.getsockname()
        finally:
            s.close()

    @property
    def cfg_addr(self) -> Any:
        return self.getsockname()

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return "<Listener %s>" % self._text


class Server:
    """``server`` in hooks: the master (Gunicorn's ``Arbiter``)."""

    def __init__(self, cfg: Config, log: Any, pid: int) -> None:
        self.cfg, self.log, self.pid = cfg, log, pid
        self.master_name = "Master"
        # what the configuration says; the Rust master keeps them current
        self.num_workers, self.proc_name, self.timeout = cfg.workers, cfg.proc_name, cfg.timeout
        self.WORKERS: dict[int, Worker] = {}
        self.LISTENERS: list[Listener] = []
        # counters and pids Gunicorn's Arbiter starts at 0
        self.worker_age = self.reexec_pid = self.master_pid = 0

    def __repr__(self) -> str:
        return "<ferrocorn master %s>" % self.pid


class Worker:
    """``worker`` in hooks. In the worker process ``alive`` and ``nr`` are
    live: setting ``worker.alive = False`` stops the worker after the
    current request, as in Gunicorn."""

    def __init__(self, age: int, ppid: int, cfg: Config, log: Any, max_requests: int) -> None:
        self.age, self.ppid, self.max_requests = age, ppid, max_requests
        self.pid: int | str = "[booting]"
        self.cfg, self.log = cfg, log
        self.timeout = cfg.timeout / 2.0
        self.booted = self.aborted = False
        self.sockets: list[Listener] = []
        # what the worker loads, once it does
        self.app: Any = None
        self.wsgi: Any = None
        self.reloader: Any = None
        # the worker process's live state (Rust), once it runs; until then
        # alive and nr are kept here
        self._live: Any = None
        self._alive, self._nr = True, 0

    def __str__(self) -> str:
        return "<Worker %s>" % self.pid

    __repr__ = __str__

    @property
    def alive(self) -> bool:
        return self._live.alive if self._live is not None else self._alive

    @alive.setter
    def alive(self, value: Any) -> None:
        if self._live is not None:
            self._live.alive = bool(value)
        else:
            self._alive = bool(value)

    @property
    def nr(self) -> int:
        return self._live.nr if self._live is not None else self._nr

    @nr.setter
    def nr(self, value: int) -> None:
        self._nr = value

    def notify(self) -> None:
        if self._live is not None:
            self._live.notify()


class Request:
    """``req`` in ``pre_request``/``post_request`` (Gunicorn's
    ``http.message.Request``): header names are upper-cased, as there."""

    def __init__(
        self,
        method: str,
        uri: str,
        path: str,
        query: str,
        fragment: str,
        version: tuple[int, int],
        headers: Headers,
        scheme: str,
        peer_addr: tuple[str, int] | str,
    ) -> None:
        # the request line, split as Gunicorn splits it
        self.method, self.uri, self.version = method, uri, version
        self.path, self.query, self.fragment = path, query, fragment
        self.headers, self.scheme = headers, scheme
        # the client's address, under both of Gunicorn's names
        self.peer_addr = self.remote_addr = peer_addr
        self.trailers: Headers = []
        self.body: Any = None

    def should_close(self) -> bool:
        # The first Connection header decides when it says close or
        # keep-alive; otherwise HTTP/1.0 and older close.
        first = next((value for name, value in self.headers if name == "CONNECTION"), "")
        token = first.lower().strip(" \t")
        if token in ("close", "keep-alive"):
            return token == "close"
        return self.version <= (1, 0)

    def __repr__(self) -> str:
        return "<Request %s %s>" % (self.method, self.uri)


class Response:
    """``resp`` in ``post_request`` (Gunicorn's ``http.wsgi.Response``)."""

    def __init__(
        self,
        status: str | None,
        headers: Headers,
        sent: int,
        headers_sent: bool,
        chunked: bool,
        response_length: int | None,
    ) -> None:
        self.status, self.headers = status, headers
        try:
            self.status_code = int(status.split()[0]) if status else None
        except ValueError:
            self.status_code = None
        # what went out: body bytes, whether the head did, and how the body is framed
        self.sent, self.headers_sent = sent, headers_sent
        self.chunked, self.response_length = chunked, response_length

    def __repr__(self) -> str:
        return "<Response %s>" % self.status


class ASGIResponseInfo:
    """``resp`` for the asgi worker's access log and ``post_request``
    (Gunicorn's ``asgi.protocol.ASGIResponseInfo``): ``status`` is an int."""

    def __init__(self, status: int, headers: Headers, sent: int) -> None:
        self.status = status
        self.status_code = status
        self.headers = headers
        self.sent = sent

    def __repr__(self) -> str:
        return "<ASGIResponseInfo %s>" % self.status
