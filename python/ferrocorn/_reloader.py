"""``--reload``: a thread in each worker watching the imported modules'
files and ``--reload-extra-file`` entries (files or glob patterns), as
Gunicorn's ``reloader.py`` does. On a change the callback stops the worker
and the master starts a fresh one.

Engines, as ``--reload-engine`` names them: ``poll`` checks modification
times every second; ``inotify`` uses Linux inotify directly (through
libc, so no extra package is needed); ``auto`` is ``inotify`` when the
``inotify`` package Gunicorn uses is installed, else ``poll``, so the same
setting picks the same engine as under Gunicorn.
"""

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

COMPILED_EXT_RE = re.compile(r"py[co]$")
GLOB_MAGIC_RE = re.compile(r"[*?[]")


def is_glob_pattern(value):
    return GLOB_MAGIC_RE.search(value) is not None


def symlink_target_dir(filename):
    if not os.path.islink(filename):
        return None
    return os.path.dirname(os.path.realpath(filename))


class ReloaderBase(threading.Thread):
    def __init__(self, extra_files=None, interval=1, callback=None):
        super().__init__(name="ferrocorn-reloader")
        self.daemon = True
        self._extra_files = set()
        self._extra_patterns = set()
        for entry in extra_files or ():
            if is_glob_pattern(entry):
                self._extra_patterns.add(entry)
            else:
                self._extra_files.add(entry)
        self._interval = interval
        self._callback = callback

    def add_extra_file(self, filename):
        self._extra_files.add(filename)

    def get_files(self):
        fnames = [
            COMPILED_EXT_RE.sub("py", module.__file__)
            for module in tuple(sys.modules.values())
            if getattr(module, "__file__", None)
        ]
        fnames.extend(self._extra_files)
        # Expanded on every pass so that files created later are seen too.
        for pattern in self._extra_patterns:
            fnames.extend(sorted(glob.glob(pattern, recursive=True)))
        return fnames


class Reloader(ReloaderBase):
    def run(self):
        mtimes = {}
        while True:
            for filename in self.get_files():
                try:
                    mtime = os.stat(filename).st_mtime
                except OSError:
                    continue
                old_time = mtimes.get(filename)
                if old_time is None:
                    mtimes[filename] = mtime
                    continue
                elif mtime > old_time:
                    if self._callback:
                        self._callback(filename)
            time.sleep(self._interval)


IN_MODIFY = 0x002
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
EVENT_MASK = IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MODIFY | IN_MOVE_SELF | IN_MOVED_FROM | IN_MOVED_TO
_EVENT = struct.Struct("iIII")


class _Inotify:
    def __init__(self):
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def add_watch(self, path, mask):
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), path)
        return wd

    def events(self, timeout):
        """Names of files with events, or [] after `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        names = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            names.append(os.fsdecode(data[offset : offset + length].rstrip(b"\0")))
            offset += length
        return names


class InotifyReloader(ReloaderBase):
    def __init__(self, extra_files=None, callback=None):
        super().__init__(extra_files=extra_files, callback=callback)
        self._dirs = set()
        self._watcher = _Inotify()

    def add_extra_file(self, filename):
        super().add_extra_file(filename)
        for dirname in (os.path.dirname(filename) or ".", symlink_target_dir(filename)):
            if dirname is None or dirname in self._dirs:
                continue
            self._watcher.add_watch(dirname, EVENT_MASK)
            self._dirs.add(dirname)

    def get_dirs(self):
        dirnames = set()
        for fname in self.get_files():
            dirnames.add(os.path.dirname(os.path.abspath(fname)))
            target_dir = symlink_target_dir(fname)
            if target_dir is not None:
                dirnames.add(target_dir)
        return dirnames

    def refresh_dirs(self):
        new_dirs = self.get_dirs().difference(self._dirs)
        self._dirs.update(new_dirs)
        for new_dir in new_dirs:
            if os.path.isdir(new_dir):
                self._watcher.add_watch(new_dir, EVENT_MASK)

    def run(self):
        self.refresh_dirs()
        while True:
            names = self._watcher.events(1.0)
            if not names:
                self.refresh_dirs()
                continue
            for name in names:
                self._callback(name)


def _inotify_package_installed():
    try:
        import inotify.adapters  # noqa: F401

        return True
    except ImportError:
        return False


def create(engine, extra_files, callback):
    if engine == "inotify" or (engine == "auto" and sys.platform.startswith("linux") and _inotify_package_installed()):
        return InotifyReloader(extra_files=extra_files, callback=callback)
    return Reloader(extra_files=extra_files, callback=callback)


def fail_app(msg):
    """Gunicorn's ``util.make_fail_app``: what a worker serves when the
    application has a syntax error under ``--reload``."""
    msg = msg.encode("utf-8")

    def app(environ, start_response):
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(msg))),
            ],
        )
        return [msg]

    return app


def fail_asgi_app(msg):
    """What an asgi worker serves instead (Gunicorn's ASGIWorker
    ``_make_error_app``): a 500 with the error, and a lifespan that
    completes so the worker can start."""
    body = ("Application error: %s" % msg).encode("utf-8")

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})

    return app
