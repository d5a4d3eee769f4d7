"""Where a handler was when ``--request-timeout`` interrupted it, as text for
the error log (the Rust watchdog and the asgi engine call these with the
GIL held), and the hand-over of a greenlet's interruption to the hub."""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable


def _frames(frame: Any) -> str:
    if frame is None:
        return "  (no Python frame: the handler is outside Python code)\n"
    return "".join(traceback.format_stack(frame))


def thread_stack(ident: int) -> str:
    return _frames(sys._current_frames().get(ident))


def greenlet_stack(glet: Any, main_ident: int) -> str:
    # A greenlet running right now keeps its frame in the thread's state.
    frame = glet.gr_frame
    if frame is None and not glet.dead:
        frame = sys._current_frames().get(main_ident)
    return _frames(frame)


def task_stack(task: Any) -> str:
    """The chain of coroutines the task awaits, outermost first (the task
    runs ferrocorn's call object, which holds the app's coroutine)."""
    coro = task.get_coro()
    coro = getattr(coro, "app_coroutine", None) or coro
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append((frame, frame.f_lineno))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if not frames:
        return _frames(None)
    return "".join(traceback.format_list(traceback.StackSummary.extract(frames)))


def _throw(glet: Any, still_armed: Callable[[], bool], exc: type[BaseException]) -> None:
    if still_armed() and not glet.dead:
        glet.throw(exc)


def green_hand_over(flavour: str) -> Callable[[Any, Callable[[], bool], type[BaseException]], None]:
    """Made on the worker's main thread: what the watchdog's thread calls
    to have the hub raise an exception in a parked greenlet, if its request
    has not ended by then (a greenlet is only switched to from its own
    thread, and neither hub may be touched from another)."""
    if flavour == "gevent":
        from gevent import get_hub

        loop = get_hub().loop
        return lambda glet, armed, exc: loop.run_callback_threadsafe(_throw, glet, armed, exc)
    return _EventletHandOver().send


class _EventletHandOver:
    """eventlet has no thread-safe call into its hub: a pipe the hub
    watches, and a list the watchdog appends to with the GIL held."""

    def __init__(self) -> None:
        import os

        from eventlet import hubs, patcher

        from ferrocorn._green import _no_close, _no_throw

        self._write = patcher.original("os").write
        self._read = patcher.original("os").read
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._pending: list[tuple[Any, Callable[[], bool], type[BaseException]]] = []
        hub = hubs.get_hub()
        hub.add(hub.READ, self._r, self._deliver, _no_throw, _no_close)

    def send(self, glet: Any, armed: Callable[[], bool], exc: type[BaseException]) -> None:
        self._pending.append((glet, armed, exc))
        try:
            self._write(self._w, b"\0")
        except BlockingIOError:
            pass  # the hub has a wake-up pending already

    def _deliver(self, _fd: int) -> None:
        try:
            while self._read(self._r, 512):
                pass
        except BlockingIOError:
            pass
        pending, self._pending = self._pending, []
        for glet, armed, exc in pending:
            _throw(glet, armed, exc)
