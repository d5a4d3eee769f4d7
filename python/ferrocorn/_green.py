"""The green worker types' Python side (``-k gevent``, ``-k eventlet``).

HTTP is served by ``_ferrocorn.GreenServer`` (Rust): it owns the sockets,
parses and frames, and hands each complete request to a new greenlet. This
module does what only the green library can: monkey patching before the
application is imported, the hub's watcher on the server's epoll fd and its
timer, spawning greenlets, parking one on a socket or until the server wakes
it (an HTTP/2 stream's wait), and signal handlers that must not block inside
the hub.

``--preload`` loads the application in the master, before any worker
patches: modules it imports keep references to the unpatched ``socket``,
``threading`` and ``time``. As with Gunicorn, an application preloaded under
a green worker should patch first itself (``from gevent import monkey;
monkey.patch_all()`` at the top of the configuration file or the app's
first module).
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any, Callable

from greenlet import getcurrent

log = logging.getLogger("gunicorn.error")


def prepare(flavour: str) -> None:
    """Patch the standard library, as Gunicorn's worker does in
    ``init_process``, before the application is imported."""
    if flavour == "gevent":
        from gevent import hub, monkey

        monkey.patch_all()
        # The hub of a preloaded master (if it made one) is not ours.
        hub.reinit()
    elif flavour == "eventlet":
        import warnings

        with warnings.catch_warnings():
            # The worker has already logged that eventlet is deprecated,
            # once for the server rather than once per worker.
            warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
            import eventlet

        eventlet.monkey_patch()
    else:
        raise ValueError("unknown green library %r" % flavour)


def run(server: Any, flavour: str) -> None:
    """Serve until the server stops (graceful stop, max-requests, parent
    gone); a fast stop (QUIT, INT, ABRT) unwinds from here as SystemExit."""
    if flavour == "gevent":
        _run_gevent(server)
    else:
        _run_eventlet(server)


def _defer_in_greenlet(spawn: Callable[..., Any], *names: str) -> None:
    """Signal handlers that block (QUIT sleeps, runs worker_int, exits;
    USR1 reopens files) run in a greenlet of their own: a handler runs in
    whatever greenlet holds the interpreter, which may be the hub, where a
    blocking call is an error. Gunicorn's gevent worker does the same."""
    for name in names:
        sig = getattr(signal, name)
        handler = signal.getsignal(sig)
        if callable(handler):
            signal.signal(sig, lambda signum, frame, h=handler: spawn(h, signum, frame))


def _request_greenlet(server: Any, park: Callable[[], Any], on_error: Callable[[Any], None]) -> Callable[[], None]:
    """What a request greenlet runs: the server's jobs, one after the other,
    parked on the hub while there is none (the server wakes it); it ends
    when the server has enough greenlets parked, or stops."""

    def run() -> None:
        me = getcurrent()
        while True:
            job = server.next_job(me)
            if job is True:
                park()
            elif job is False:
                return
            else:
                try:
                    job.run()
                except BaseException:
                    on_error(job)

    return run


def _run_gevent(server: Any) -> None:
    import gevent
    from gevent import get_hub
    from gevent.event import Event
    from gevent.socket import wait_read, wait_write

    hub = get_hub()
    _defer_in_greenlet(gevent.spawn, "SIGQUIT", "SIGINT", "SIGUSR1")

    def on_error(job: Any) -> None:
        # SystemExit (ABRT) goes on to the main greenlet; anything else
        # is reported as the hub reports a greenlet's error.
        hub.handle_error(job, *sys.exc_info())

    run = _request_greenlet(server, hub.switch, on_error)
    done = Event()

    def tick() -> None:
        if not server.tick():
            done.set()

    interval = server.tick_interval()
    watcher = hub.loop.io(server.fileno(), 1)
    timer = hub.loop.timer(interval, interval)
    server.start(
        lambda: gevent.spawn_raw(run),
        lambda g: hub.loop.run_callback(g.switch),
        wait_read,
        wait_write,
        getcurrent,
        hub.switch,
    )
    watcher.start(server.on_ready)
    timer.start(tick)
    try:
        done.wait()
    finally:
        watcher.stop()
        timer.stop()


def _run_eventlet(server: Any) -> None:
    import eventlet
    from eventlet import hubs
    from eventlet.event import Event

    hub = hubs.get_hub()
    _defer_in_greenlet(eventlet.spawn_n, "SIGQUIT", "SIGINT", "SIGUSR1")

    def wait_read(fd: int) -> None:
        hubs.trampoline(fd, read=True)

    def wait_write(fd: int) -> None:
        hubs.trampoline(fd, write=True)

    main = getcurrent()

    def on_error(job: Any) -> None:
        e = sys.exc_info()[1]
        if isinstance(e, SystemExit):
            # ABRT: the main green thread exits with it.
            hub.schedule_call_global(0, main.throw, e)
        else:
            log.exception("Error handling request")

    run = _request_greenlet(server, hub.switch, on_error)

    done = Event()
    interval = server.tick_interval()

    def tick() -> None:
        if server.tick():
            hub.schedule_call_global(interval, tick)
        elif not done.ready():
            done.send(None)

    def on_ready(_fd: int) -> None:
        try:
            server.on_ready()
        except SystemExit as e:
            hub.schedule_call_global(0, main.throw, e)

    server.start(
        lambda: eventlet.spawn_n(run),
        lambda g: hub.schedule_call_global(0, g.switch),
        wait_read,
        wait_write,
        getcurrent,
        hub.switch,
    )
    listener = hub.add(hub.READ, server.fileno(), on_ready, _no_throw, _no_close)
    hub.schedule_call_global(interval, tick)
    try:
        done.wait()
    finally:
        hub.remove(listener)


def _no_throw(*_args: Any) -> None:
    """eventlet calls this when another listener takes the fd: ours is the
    only one on the server's epoll fd."""


def _no_close(*_args: Any) -> None:
    """eventlet calls this when the fd is closed under it: the server closes
    its epoll fd only after this listener is removed."""
