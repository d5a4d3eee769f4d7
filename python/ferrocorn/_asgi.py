"""The asgi worker's Python side: the event loop, ASGI lifespan and the
ticker. HTTP and WebSocket are served by ``_ferrocorn.AsgiServer`` (Rust),
which runs on this loop's thread: the loop watches its epoll fd and calls
``on_ready``; requests run as ordinary asyncio tasks.

The lifespan manager follows Gunicorn's ``gunicorn/asgi/lifespan.py``
(MIT licence, Copyright (c) 2009-2024 Benoît Chesneau, Paul J. Davis) so
that applications see the same startup and shutdown behaviour.
"""

import asyncio
import logging

log = logging.getLogger("gunicorn.error")

# The arbiter's exit status for a worker that cannot boot.
WORKER_BOOT_ERROR = 3
# How long lifespan startup and shutdown may take (Gunicorn's values).
LIFESPAN_TIMEOUT = 30.0


def _new_loop(kind):
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


def run(server, app, loop_kind, lifespan_mode):
    """Serve until the server stops (graceful stop, max-requests, parent
    gone); a fast stop (QUIT, INT, ABRT) unwinds from here as SystemExit."""
    loop = _new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(loop, server, app, lifespan_mode))
    finally:
        _cleanup(loop, server)


async def _serve(loop, server, app, lifespan_mode):
    state = {}
    lifespan = None
    if lifespan_mode != "off":
        lifespan = LifespanManager(app, state)
        try:
            await lifespan.startup()
        except Exception as e:
            # An app that reported lifespan.startup.failed (or any failure
            # when lifespan is on) cannot serve: stop instead of serving or
            # rebooting workers in a loop, as Gunicorn does.
            if lifespan_mode == "on" or isinstance(e, LifespanStartupFailed):
                log.error("ASGI lifespan startup failed: %s", e)
                raise SystemExit(WORKER_BOOT_ERROR) from None
            log.debug("ASGI lifespan not supported by app: %s", e)
            lifespan = None

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
        try:
            await lifespan.shutdown()
        except Exception as e:
            log.error("ASGI lifespan shutdown error: %s", e)


async def _tick(server):
    """Heartbeat, timers and the stop, a few times a second. A loop blocked
    by application code misses its beats, and the arbiter's timeout sees it,
    as with Gunicorn's workers."""
    interval = server.tick_interval()
    # A timer, not a wait for a condition.
    while server.tick():  # noqa: ASYNC110
        await asyncio.sleep(interval)


def _cleanup(loop, server):
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


class LifespanManager:
    """Runs the ``lifespan`` scope: startup before the worker accepts
    connections, shutdown after it stopped serving."""

    def __init__(self, app, state):
        self.app = app
        self.state = state
        self._startup_complete = asyncio.Event()
        self._shutdown_complete = asyncio.Event()
        self._startup_failed = False
        self._startup_reported = False
        self._startup_error = None
        self._shutdown_error = None
        self._receive_queue = asyncio.Queue()
        self._task = None
        self._app_finished = False

    async def startup(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "state": self.state,
        }
        await self._receive_queue.put({"type": "lifespan.startup"})
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        try:
            await asyncio.wait_for(self._startup_complete.wait(), timeout=LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            self._task.cancel()
            raise RuntimeError("Lifespan startup timed out") from None
        if self._startup_failed:
            self._task.cancel()
            message = self._startup_error or "Unknown error"
            cls = LifespanStartupFailed if self._startup_reported else RuntimeError
            raise cls("Lifespan startup failed: %s" % message)
        log.debug("ASGI lifespan startup complete")

    async def shutdown(self):
        if self._app_finished:
            log.debug("ASGI lifespan already finished")
            return
        await self._receive_queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._shutdown_complete.wait(), timeout=LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("Lifespan shutdown timed out")
        if self._shutdown_error:
            log.error("Lifespan shutdown error: %s", self._shutdown_error)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        log.debug("ASGI lifespan shutdown complete")

    async def _run(self, scope):
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("Lifespan application raised: %s", e)
            if not self._startup_complete.is_set():
                self._startup_failed = True
                self._startup_error = str(e)
                self._startup_complete.set()
            elif not self._shutdown_complete.is_set():
                self._shutdown_error = str(e)
                self._shutdown_complete.set()
        finally:
            self._app_finished = True
            if not self._startup_complete.is_set():
                self._startup_failed = True
                self._startup_error = "Application exited before startup complete"
                self._startup_complete.set()
            if not self._shutdown_complete.is_set():
                self._shutdown_complete.set()

    async def _receive(self):
        return await self._receive_queue.get()

    async def _send(self, message):
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_complete.set()
        elif kind == "lifespan.startup.failed":
            self._startup_failed = True
            self._startup_reported = True
            self._startup_error = message.get("message", "")
            self._startup_complete.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_complete.set()
        elif kind == "lifespan.shutdown.failed":
            self._shutdown_error = message.get("message", "")
            self._shutdown_complete.set()
