"""``--reload``: a thread in each worker that waits for a change to the
worker's Python sources or its ``--reload-extra-file`` entries (file names
or glob patterns) and reports it once; the callback (Rust, ``reload.rs``)
stops the worker and the master starts a fresh one. Also the applications
a worker serves while its own does not compile.

How a change is noticed is the engine's business (``--reload-engine``),
each reproducing the Gunicorn engine of that name:

* ``poll`` stats every watched file each second and reports the first whose
  modification time is later than when it was first seen;
* ``inotify`` watches the directories holding the files and reports the
  first event in any of them (through libc, so no extra package is needed);
* ``auto`` is ``inotify`` when the ``inotify`` package Gunicorn relies on is
  installed, else ``poll``, so the setting picks what Gunicorn would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import select
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any, Callable, Protocol

# What makes a --reload-extra-file entry a pattern (glob's own test).
_GLOB_MAGIC = re.compile(r"[*?[]")


class WatchedFiles:
    """The files a worker watches, listed afresh on each look: the source of
    every module imported by then, the extra files, and whatever the extra
    patterns match by then (so files made after boot count too)."""

    def __init__(self, extra: Iterable[str]) -> None:
        self._names: set[str] = set()
        self._patterns: set[str] = set()
        for entry in extra:
            (self._patterns if _GLOB_MAGIC.search(entry) else self._names).add(entry)

    def add(self, name: str) -> None:
        self._names.add(name)

    def current(self) -> list[str]:
        return [*_module_sources(), *self._names, *self._pattern_matches()]

    def _pattern_matches(self) -> Iterator[str]:
        for pattern in self._patterns:
            yield from sorted(glob.glob(pattern, recursive=True))


def _module_sources() -> Iterator[str]:
    for module in tuple(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            # a module loaded from bytecode is edited through its source
            yield path[:-1] if path.endswith((".pyc", ".pyo")) else path


class ChangeDetector(Protocol):
    def wait_for_change(self, files: WatchedFiles) -> str:
        """Block until one of `files` (or a neighbour) changes; its name."""


class Watcher(threading.Thread):
    """Reports the first change `detector` sees to `callback`, then ends.

    One report per worker, as under Gunicorn, whose callback ends its
    watcher thread: the worker may take a while to finish its requests, and
    the log lines a stopping worker writes (into a watched directory,
    perhaps) must not be reported as further changes."""

    def __init__(self, detector: ChangeDetector, extra_files: Iterable[str], callback: Callable[[str], Any]) -> None:
        super().__init__(name="ferrocorn-reloader", daemon=True)
        self.detector = detector
        self.files = WatchedFiles(extra_files)
        self._callback = callback

    def add_extra_file(self, filename: str) -> None:
        """Watch `filename` too (the file of an application that failed to
        compile, which no module in ``sys.modules`` names)."""
        self.files.add(filename)

    def run(self) -> None:
        self._callback(self.detector.wait_for_change(self.files))


class ModificationTimes:
    """The ``poll`` engine."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval

    def wait_for_change(self, files: WatchedFiles) -> str:
        first_seen: dict[str, float] = {}
        while True:
            for path in files.current():
                if _modified_since_first_seen(path, first_seen):
                    return path
            time.sleep(self.interval)


def _modified_since_first_seen(path: str, first_seen: dict[str, float]) -> bool:
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return False  # a file that went away is not reported
    return mtime > first_seen.setdefault(path, mtime)


# inotify(7) events that make a change: anything but reads and attributes.
IN_MODIFY = 0x002
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
CHANGE_EVENTS = IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MODIFY | IN_MOVE_SELF | IN_MOVED_FROM | IN_MOVED_TO
# struct inotify_event up to its name: wd, mask, cookie, len.
_EVENT_HEADER = struct.Struct("iIII")


class _Inotify:
    """An inotify instance through libc."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def add_watch(self, path: str, mask: int) -> None:
        if self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask) < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), path)

    def read_names(self, timeout: float) -> list[str]:
        """The names the next batch of events is about ('' for a watched
        directory itself), or none when `timeout` seconds pass first."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        return list(_event_names(data))


def _event_names(data: bytes) -> Iterator[str]:
    offset = 0
    while offset + _EVENT_HEADER.size <= len(data):
        name_len = _EVENT_HEADER.unpack_from(data, offset)[3]
        offset += _EVENT_HEADER.size
        yield os.fsdecode(data[offset : offset + name_len].rstrip(b"\0"))
        offset += name_len


class DirectoryEvents:
    """The ``inotify`` engine. Any change in a watched directory counts, as
    with Gunicorn's engine, and is named by the file's name in it."""

    def __init__(self) -> None:
        self._inotify = _Inotify()
        # Directories looked at once, watched or not: one that did not exist
        # then is not watched later.
        self._known_dirs: set[str] = set()

    def wait_for_change(self, files: WatchedFiles) -> str:
        while True:
            # Modules imported since the last look bring their directories.
            self._watch_new_dirs(files)
            names = self._inotify.read_names(timeout=1.0)
            if names:
                return names[0]

    def _watch_new_dirs(self, files: WatchedFiles) -> None:
        for directory in _event_dirs(files.current()) - self._known_dirs:
            self._known_dirs.add(directory)
            if os.path.isdir(directory):
                self._inotify.add_watch(directory, CHANGE_EVENTS)


def _event_dirs(paths: Iterable[str]) -> set[str]:
    """Where the events about `paths` appear: the directory of each and, for
    a symlink, that of its target (editing the target shows nothing beside
    the link)."""
    dirs = set()
    for path in paths:
        dirs.add(os.path.dirname(os.path.abspath(path)))
        if os.path.islink(path):
            dirs.add(os.path.dirname(os.path.realpath(path)))
    return dirs


def _gunicorn_would_use_inotify() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import inotify.adapters  # noqa: F401
    except ImportError:
        return False
    return True


def create(engine: str, extra_files: Iterable[str], callback: Callable[[str], Any]) -> Watcher:
    """The watcher for ``--reload-engine`` `engine`, not started yet."""
    use_inotify = engine == "inotify" or (engine == "auto" and _gunicorn_would_use_inotify())
    return Watcher(DirectoryEvents() if use_inotify else ModificationTimes(), extra_files, callback)


def fail_app(msg: str) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """The WSGI application a worker serves under ``--reload`` while its own
    has a syntax error: a 500 whose body is `msg` (the traceback), as
    Gunicorn serves."""
    body = msg.encode("utf-8")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(
            "500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def fail_asgi_app(msg: str) -> Callable[..., Awaitable[None]]:
    """The asgi worker's equivalent, Gunicorn's: a 500 saying
    ``Application error: <msg>``, and a lifespan that succeeds so the
    worker boots and stops as usual."""
    body = ("Application error: %s" % msg).encode("utf-8")

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await _complete_each_phase(receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})

    return app


async def _complete_each_phase(receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    for phase in ("lifespan.startup", "lifespan.shutdown"):
        if (await receive())["type"] == phase:
            await send({"type": phase + ".complete"})
