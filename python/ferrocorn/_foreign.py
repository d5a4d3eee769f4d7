"""A Gunicorn worker class run under ferrocorn's master (``-k
package.module.Class`` naming a subclass of ``gunicorn.workers.base.Worker``
that ferrocorn does not serve natively: aiohttp's ``GunicornWebWorker``, a
user's ``SyncWorker`` or ``UvicornWorker`` subclass that overrides methods).

The worker gets what Gunicorn's arbiter gives it: ``age``, ``ppid``, the
listening ``sockets`` (wrapped as Gunicorn wraps them), the ``app`` whose
``wsgi()`` loads APP_MODULE, ``timeout``, ``cfg`` and ``log`` (the
configuration in force, as server hooks see it). Its ``notify()`` beats
ferrocorn's heartbeat (the scoreboard the master watches) instead of
touching a temporary file. Everything else is the class's own code,
``init_process()`` and ``run()`` included: signals, the app, its loop.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from ferrocorn import _ferrocorn

# Gunicorn's arbiter's exit statuses.
WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4


class ListenerSocket:
    """A listening socket as Gunicorn's ``gunicorn.sock`` classes present
    it: ``.sock`` is the socket object, everything else is delegated."""

    def __init__(self, fd: int, cfg_addr: Any) -> None:
        # A duplicate: the worker may close its sockets, ferrocorn closes its own.
        self.sock = socket.socket(fileno=os.dup(fd))
        self.FAMILY = self.sock.family
        self.cfg_addr = cfg_addr

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def __str__(self) -> str:
        if self.FAMILY == socket.AF_UNIX:
            return "unix:%s" % self.sock.getsockname()
        host, port = self.sock.getsockname()[:2]
        if self.FAMILY == socket.AF_INET6:
            return "http://[%s]:%d" % (host, port)
        return "http://%s:%d" % (host, port)

    def close(self) -> None:
        self.sock.close()


class Application:
    """What a worker's ``self.app`` is to it: ``wsgi()`` loads the
    application (or returns the one ``--preload`` loaded)."""

    def __init__(self, uri: str, cfg: Any, preloaded: Any = None) -> None:
        self.uri = uri
        self.cfg = cfg
        self.callable = preloaded

    def wsgi(self) -> Any:
        if self.callable is None:
            self.callable = _ferrocorn.import_app(self.uri)
        return self.callable

    def load(self) -> Any:
        return self.wsgi()


class Heartbeat:
    """Stands in for Gunicorn's ``WorkerTmp``: ``notify()`` beats the
    worker's slot in ferrocorn's scoreboard."""

    def __init__(self, beat: Any) -> None:
        self._beat = beat
        self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def notify(self) -> None:
        self._beat.notify()

    def last_update(self) -> float:
        return self._beat.last_update()

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def gunicorn_config(ours: Any, class_path: str) -> Any:
    """A ``gunicorn.config.Config`` holding the configuration in force: a
    Gunicorn worker class (and Gunicorn's HTTP parser, which a SyncWorker
    subclass uses) needs all of Gunicorn's Config, methods included."""
    from gunicorn.config import Config

    cfg = Config()
    values = object.__getattribute__(ours, "_values")
    for name, setting in cfg.settings.items():
        if name not in values:
            continue
        value = class_path if name == "worker_class" else values[name]
        if value is None and callable(setting.value):
            continue  # a hook left unset keeps Gunicorn's default
        try:
            cfg.set(name, value)
        except Exception:
            # Already validated by ferrocorn, in its final form.
            setting.value = value
    return cfg


def _load_class(path: str) -> type:
    from ferrocorn._worker_class import load

    return load(path)


def run(
    path: str,
    age: int,
    ppid: int,
    listeners: list[tuple[int, str]],
    timeout: float,
    max_requests: int,
    app_uri: str,
    preloaded: Any,
    beat: Any,
    cfg: Any,
    log: Any,
) -> int:
    """Runs the worker as Gunicorn's arbiter does after fork; returns the
    exit status (SystemExit from the worker's own code goes through)."""
    from gunicorn.errors import AppImportError

    cls = _load_class(path)
    cfg = gunicorn_config(cfg, path)
    sockets = [ListenerSocket(fd, addr) for fd, addr in listeners]
    app = Application(app_uri, cfg, preloaded)
    worker = cls(age, ppid, sockets, app, timeout, cfg, log)
    worker.pid = os.getpid()
    if max_requests < sys.maxsize:
        worker.max_requests = max_requests
    # The worker's WorkerTmp (a file Gunicorn's arbiter would stat) gives
    # way to ferrocorn's heartbeat.
    worker.tmp.close()
    worker.tmp = Heartbeat(beat)
    try:
        worker.init_process()
        return 0
    except SystemExit:
        raise
    except (AppImportError, _ferrocorn.AppImportError) as e:
        log.debug("Exception while loading the application", exc_info=True)
        print("%s" % e, file=sys.stderr)
        sys.stderr.flush()
        return APP_LOAD_ERROR
    except Exception:
        log.exception("Exception in worker process")
        return WORKER_BOOT_ERROR if not worker.booted else -1
    finally:
        worker.tmp.close()
