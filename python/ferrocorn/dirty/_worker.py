"""Inside a dirty worker: its apps are loaded here, then one thread per lane
(``dirty_threads`` of them) takes calls from the dirty arbiter and runs
them. The process around it (signals, heartbeat, stopping) is Rust
(``src/dirty/worker``); the lanes' I/O is ``_ferrocorn.DirtyLane``."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from typing import Any

from ferrocorn.dirty.app import load_dirty_app
from ferrocorn.dirty.errors import DirtyAppError, DirtyAppNotFoundError


def boot(worker: Any) -> None:
    """Makes an instance of each of the worker's apps, creates the stash
    tables they declare (``stashes``), then calls ``init()`` on each, in
    ``dirty_apps`` order (Gunicorn makes them all before the first init)."""
    log = worker.log
    apps = {}
    for path in worker.app_paths:
        apps[path] = load_dirty_app(path)
        log.debug("Loaded dirty app: %s", path)
    declared = [t for app in apps.values() for t in getattr(app, "stashes", None) or ()]
    if declared:
        from ferrocorn.dirty import stash

        for table in declared:
            stash.ensure(table)
    for path, app in apps.items():
        try:
            app.init()
        except Exception as e:
            log.error("Failed to initialize dirty app %s: %s", path, e)
            raise
        log.info("Initialized dirty app: %s", path)
    worker.apps = apps


class _LaneGone(Exception):
    """The arbiter closed the lane: the thread ends."""


def _send(send: Any, *args: Any) -> Any:
    try:
        return send(*args)
    except OSError as e:
        raise _LaneGone(str(e)) from e


class _AsyncLoop:
    """The event loop async-generator actions run on: one per worker, in a
    thread of its own, started by the first one (Gunicorn runs them on its
    worker's loop)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, awaitable: Any) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="dirty-asyncio", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), self._loop).result()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Lanes:
    """The threads taking calls, one per lane."""

    def __init__(self, worker: Any, lanes: list[Any]) -> None:
        self.worker = worker
        self.log = worker.log
        self.loop = _AsyncLoop()
        self.threads = [
            threading.Thread(
                target=self._serve, args=(lane,), name="dirty-worker-%s-_%d" % (worker.pid, i), daemon=True
            )
            for i, lane in enumerate(lanes)
        ]
        for t in self.threads:
            t.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        """Waits for the calls in progress (the lanes are shut for reading,
        so each thread ends after its call)."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def close_apps(self) -> None:
        for path, app in self.worker.apps.items():
            try:
                app.close()
                self.log.debug("Closed dirty app: %s", path)
            except Exception as e:
                self.log.error("Error closing dirty app %s: %s", path, e)

    def _serve(self, lane: Any) -> None:
        try:
            _send(lane.ready)
            while True:
                try:
                    got = lane.recv()
                except OSError as e:
                    raise _LaneGone(str(e)) from e
                if got is None:
                    return
                self._call(lane, *got)
        except _LaneGone as e:
            self.log.debug("Dirty worker lane closed: %s", e)
        except Exception:
            self.log.exception("Dirty worker lane failed")

    def _call(self, lane: Any, call_id: int, message: Any) -> None:
        message = message if isinstance(message, dict) else {}
        app_path = message.get("app_path")
        action = message.get("action")
        app = self.worker.apps.get(app_path) if isinstance(app_path, str) else None
        if app is None:
            _send(lane.fail, call_id, DirtyAppNotFoundError(app_path).to_dict())
            return
        try:
            result = app(action, *message.get("args", []), **message.get("kwargs", {}))
            if inspect.isgenerator(result):
                self._stream(lane, call_id, result, iter, next, StopIteration, result.close)
                return
            if inspect.isasyncgen(result):
                run = self.loop.run
                self._stream(
                    lane,
                    call_id,
                    result,
                    lambda g: g,
                    lambda g: run(g.__anext__()),
                    StopAsyncIteration,
                    lambda: run(result.aclose()),
                )
                return
            if inspect.iscoroutine(result):
                # Gunicorn does not await it either (its encoder refuses
                # it); closed so Python does not warn it was never awaited.
                result.close()
            _send(lane.respond, call_id, result)
        except _LaneGone:
            raise
        except Exception as e:
            tb = traceback.format_exc()
            self.log.error("Error executing %s.%s: %s\n%s", app_path, action, e, tb)
            _send(lane.fail, call_id, DirtyAppError(str(e), app_path=app_path, action=action, traceback=tb).to_dict())

    def _stream(self, lane: Any, call_id: int, gen: Any, start: Any, step: Any, stop: type, close: Any) -> None:
        """Sends each item as a chunk, then the end; an error mid-stream is
        sent as the stream's last message. A caller that went away stops
        the generator at the next item."""
        try:
            it = start(gen)
            while True:
                try:
                    chunk = step(it)
                except stop:
                    break
                if not _send(lane.chunk, call_id, chunk):
                    break
            _send(lane.end, call_id)
        except _LaneGone:
            raise
        except Exception as e:
            tb = traceback.format_exc()
            self.log.error("Error during streaming: %s\n%s", e, tb)
            _send(lane.fail, call_id, DirtyAppError(str(e), traceback=tb).to_dict())
        finally:
            try:
                close()
            except Exception as e:
                self.log.debug("Closing a streamed generator failed: %s", e)
