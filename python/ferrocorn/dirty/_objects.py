"""The ``arbiter`` and ``worker`` objects dirty hooks receive, with the
attributes Gunicorn 27's ``DirtyArbiter`` and ``DirtyWorker`` have. The
dirty arbiter (Rust) keeps them up to date: a worker object is made before
its fork, so the arbiter's and the worker's copies start the same."""

from __future__ import annotations

from typing import Any, Callable


class DirtyArbiter:
    def __init__(self, cfg: Any, log: Any, pid: int, ppid: int, socket_path: str) -> None:
        self.cfg = cfg
        self.log = log
        self.pid = pid
        self.ppid = ppid
        self.socket_path = socket_path
        #: pid -> DirtyWorker, the workers alive.
        self.workers: dict[int, DirtyWorker] = {}
        self.num_workers = 0
        self.worker_age = 0
        self.alive = True
        #: import path -> {"import_path", "worker_count", "original_spec"}.
        self.app_specs: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return "<DirtyArbiter %s>" % self.pid


class DirtyWorker:
    def __init__(self, age: int, ppid: int, app_paths: list[str], cfg: Any, log: Any, socket_path: str) -> None:
        self.pid: Any = "[booting]"
        self.age, self.ppid = age, ppid
        self.cfg, self.log = cfg, log
        self.app_paths = app_paths
        #: The dirty arbiter's socket (the worker's own lanes have no path).
        self.socket_path = socket_path
        self.booted = False
        self.aborted = False
        self.alive = True
        #: import path -> app instance, in the worker once loaded.
        self.apps: dict[str, Any] = {}
        self._beat: Callable[[], None] | None = None

    def notify(self) -> None:
        """A heartbeat (the worker beats by itself; long app code may too)."""
        if self._beat is not None:
            self._beat()

    def __str__(self) -> str:
        return "<DirtyWorker %s>" % self.pid
