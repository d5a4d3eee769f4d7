"""The asgi worker's Python side: the event loop, the ASGI lifespan protocol
and the ticker. HTTP and WebSocket are served by ``_ferrocorn.AsgiServer``
(Rust), which runs on this loop's thread: the loop watches its epoll fd and
calls ``on_ready``; requests run as ordinary asyncio tasks.

Lifespan behaves as in Gunicorn's asgi worker: startup completes before the
worker accepts connections; an application that reports
``lifespan.startup.failed`` (or fails in any way under ``--asgi-lifespan
on``) stops the server; shutdown runs once serving is over; each phase may
take 30 seconds; request scopes see the ``state`` that startup filled.
Under uvicorn's worker class names, the lifespan lines uvicorn prints
("Waiting for application startup.", ...) are logged as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Callable

log = logging.getLogger("gunicorn.error")

# The arbiter's exit status for a worker that cannot boot.
WORKER_BOOT_ERROR = 3
# How long lifespan startup and shutdown may take (Gunicorn's values).
LIFESPAN_TIMEOUT = 30.0


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """``--asgi-loop``: auto takes uvloop when it is installed."""
    if kind == "auto":
        try:
            import uvloop
        except ImportError:
            kind = "asyncio"
        else:
            kind = "uvloop"
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop not available, falling back to asyncio")
        else:
            log.debug("Using uvloop event loop")
            return uvloop.new_event_loop()
    log.debug("Using asyncio event loop")
    return asyncio.new_event_loop()


def run(
    server: Any, app: Callable[..., Awaitable[None]], loop_kind: str, lifespan_mode: str, uvicorn_lines: bool = False
) -> None:
    """Serve until the server stops (graceful stop, max-requests, parent
    gone); a fast stop (QUIT, INT, ABRT) unwinds from here as SystemExit.
    ``uvicorn_lines``: the worker class was uvicorn's, whose users look for
    its lifespan lines in the log."""
    loop = _new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(loop, server, app, lifespan_mode, _UvicornLines(uvicorn_lines)))
    finally:
        _cleanup(loop, server)


class _UvicornLines:
    """The lifespan lines uvicorn logs (its ``lifespan/on.py`` wording), or
    nothing when the worker class was not uvicorn's."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def info(self, message: str) -> None:
        if self.enabled:
            log.info(message)

    def error(self, message: str) -> None:
        if self.enabled:
            log.error(message)


async def _serve(
    loop: asyncio.AbstractEventLoop,
    server: Any,
    app: Callable[..., Awaitable[None]],
    lifespan_mode: str,
    uvicorn: _UvicornLines,
) -> None:
    state: dict[str, Any] = {}
    lifespan = None
    if lifespan_mode != "off":
        lifespan = LifespanManager(app, state)
        uvicorn.info("Waiting for application startup.")
        try:
            await lifespan.startup()
        except Exception as e:
            # An app that reported lifespan.startup.failed (or any failure
            # when lifespan is on) cannot serve: stop instead of serving or
            # rebooting workers in a loop, as Gunicorn does.
            if lifespan_mode == "on" or isinstance(e, LifespanStartupFailed):
                log.error("ASGI lifespan startup failed: %s", e)
                uvicorn.error("Application startup failed. Exiting.")
                raise SystemExit(WORKER_BOOT_ERROR) from None
            log.debug("ASGI lifespan not supported by app: %s", e)
            uvicorn.info("ASGI 'lifespan' protocol appears unsupported.")
            lifespan = None
        # uvicorn says so after an unsupported lifespan too
        uvicorn.info("Application startup complete.")

    done = loop.create_future()
    fd = server.fileno()
    server.start(loop, state, done)
    loop.add_reader(fd, server.on_ready)
    ticker = loop.create_task(_tick(server))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        ticker.cancel()

    if lifespan is not None:
        uvicorn.info("Waiting for application shutdown.")
        try:
            completed = await lifespan.shutdown()
        except Exception as e:
            log.error("ASGI lifespan shutdown error: %s", e)
            completed = False
        if completed:
            uvicorn.info("Application shutdown complete.")
        else:
            uvicorn.error("Application shutdown failed. Exiting.")


async def _tick(server: Any) -> None:
    """Heartbeat, timers and the stop, a few times a second. A loop blocked
    by application code misses its beats, and the arbiter's timeout sees it,
    as with Gunicorn's workers."""
    interval = server.tick_interval()
    # A timer, not a wait for a condition.
    while server.tick():  # noqa: ASYNC110
        await asyncio.sleep(interval)


def _cleanup(loop: asyncio.AbstractEventLoop, server: Any) -> None:
    """Cancel what still runs, then close the loop (Gunicorn's _cleanup)."""
    try:
        server.cancel_all()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except BaseException as e:  # the worker is exiting whatever happens
        log.debug("Cleanup error: %s", e)
    finally:
        loop.close()


class LifespanStartupFailed(RuntimeError):
    """The application sent ``lifespan.startup.failed``: unlike an app that
    does not speak the lifespan protocol, it says it cannot start."""


class _Phase:
    """What the application has said about one lifespan phase (startup or
    shutdown). Its first report, or its end, decides the phase and wakes
    the waiter; a ``.failed`` report counts even after a completion until
    the waiter looks, because Gunicorn's worker reads its failure flags only
    when it resumes (and the last message sent is the one it sees)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.decided: asyncio.Future[None] = loop.create_future()
        self.reported: str | None = None  # the message of a .failed report
        self.unreported: str | None = None  # why the app ended the phase without a report

    def complete(self) -> None:
        if not self.decided.done():
            self.decided.set_result(None)

    def report_failure(self, message: str) -> None:
        self.reported = message
        self.complete()

    def end_without_report(self, reason: str) -> None:
        if not self.decided.done():
            self.unreported = reason
            self.complete()

    def failure(self) -> str | None:
        return self.reported if self.reported is not None else self.unreported


class LifespanManager:
    """Runs the application's ``lifespan`` scope: startup before the worker
    accepts connections, shutdown after it stopped serving. Messages, log
    lines and the 30 second limits are those of Gunicorn's asgi worker."""

    def __init__(self, app: Callable[..., Awaitable[None]], state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        loop = asyncio.get_running_loop()
        self._startup = _Phase(loop)
        self._shutdown = _Phase(loop)
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Raises LifespanStartupFailed when the application reports that it
        cannot start, RuntimeError when it fails otherwise (which, in
        ``auto`` mode, means it does not speak lifespan)."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.4"}, "state": self.state}
        self._to_app.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.get_running_loop().create_task(self._run_app(scope))
        try:
            await asyncio.wait_for(self._startup.decided, LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            self._task.cancel()
            raise RuntimeError("Lifespan startup timed out") from None
        reason = self._startup.failure()
        if reason is not None:
            self._task.cancel()
            cls = LifespanStartupFailed if self._startup.reported is not None else RuntimeError
            raise cls("Lifespan startup failed: %s" % (reason or "Unknown error"))
        log.debug("ASGI lifespan startup complete")

    async def shutdown(self) -> bool:
        """True when the application completed its shutdown."""
        if self._task is None or self._task.done():
            log.debug("ASGI lifespan already finished")
            return True
        self._to_app.put_nowait({"type": "lifespan.shutdown"})
        completed = True
        try:
            await asyncio.wait_for(self._shutdown.decided, LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("Lifespan shutdown timed out")
            completed = False
        error = self._shutdown.failure()
        if error is not None:
            completed = False
        if error:
            log.error("Lifespan shutdown error: %s", error)
        await self._end_app()
        log.debug("ASGI lifespan shutdown complete")
        return completed

    async def _end_app(self) -> None:
        """Cancel the application's lifespan task if it is still running (it
        may go on after reporting), and wait until it has ended."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run_app(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._to_app.get, self._from_app)
        except Exception as e:
            log.debug("Lifespan application raised: %s", e)
            phase = self._shutdown if self._startup.decided.done() else self._startup
            phase.end_without_report(str(e))
        finally:
            self._startup.end_without_report("Application exited before startup complete")
            self._shutdown.complete()

    async def _from_app(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            log.debug("Received lifespan.startup.complete")
            self._startup.complete()
        elif kind == "lifespan.startup.failed":
            log.debug("Received lifespan.startup.failed: %s", message.get("message", ""))
            self._startup.report_failure(message.get("message", ""))
        elif kind == "lifespan.shutdown.complete":
            log.debug("Received lifespan.shutdown.complete")
            self._shutdown.complete()
        elif kind == "lifespan.shutdown.failed":
            log.debug("Received lifespan.shutdown.failed: %s", message.get("message", ""))
            self._shutdown.report_failure(message.get("message", ""))
