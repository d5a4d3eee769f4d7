"""The asgi worker's lifespan manager beside Gunicorn's own (from the test
extra), in this process: the same applications, well-behaved or not, get
the same startup outcome, the same log records and the same shared state."""

import asyncio
import logging

import pytest
from ferrocorn import _asgi


def scripted(*steps):
    """A lifespan application that follows `steps`: "receive", "pause",
    "fill state", "raise <text>", or a message to send as
    "<phase>.<outcome>[:<message>]"."""

    async def app(scope, receive, send):
        for step in steps:
            if step == "receive":
                await receive()
            elif step == "pause":
                await asyncio.sleep(0.01)
            elif step == "fill state":
                scope["state"]["db"] = "connected"
            elif step.startswith("raise "):
                raise ValueError(step[len("raise ") :])
            else:
                kind, colon, text = step.partition(":")
                await send({"type": "lifespan." + kind, **({"message": text} if colon else {})})

    return app


STARTED = ("receive", "startup.complete", "receive")

CASES = {
    "complete": (*STARTED, "shutdown.complete"),
    "state": ("receive", "fill state", "startup.complete", "receive", "shutdown.complete"),
    "startup failed": ("receive", "startup.failed:no database"),
    "startup failed without a message": ("receive", "startup.failed"),
    "raises": ("raise not for me",),
    "raises without a message": ("raise ",),
    "returns at once": (),
    "returns after startup": ("receive", "startup.complete"),
    "raises at shutdown": (*STARTED, "raise disk gone"),
    "shutdown failed": (*STARTED, "shutdown.failed:disk full"),
    "shutdown failed with an empty message": (*STARTED, "shutdown.failed:"),
    "goes on after shutdown": (*STARTED, "shutdown.complete", "receive"),
    "fails right after completing": ("receive", "startup.complete", "startup.failed:late", "receive"),
    "fails after completing and a pause": ("receive", "startup.complete", "pause", "startup.failed:late", "receive"),
    "fails twice": ("receive", "startup.failed:first", "startup.failed:second"),
    "raises after failing": ("receive", "startup.failed:down", "raise and then"),
    "fails shutdown after completing it": (*STARTED, "shutdown.complete", "shutdown.failed:late"),
}


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        self.seen.append((record.levelname, record.getMessage()))


@pytest.fixture
def records():
    log = logging.getLogger("gunicorn.error")
    handler = Records()
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield handler.seen
    log.removeHandler(handler)
    log.level, log.propagate = saved


async def live_through(new_manager, app):
    """Startup, then shutdown if it started: the outcome and the state."""
    state = {}
    manager = new_manager(app, state)
    try:
        await manager.startup()
    except Exception as e:
        outcome = (type(e).__name__, str(e))
    else:
        outcome = "started"
        await asyncio.sleep(0.01)
        await manager.shutdown()
    await asyncio.sleep(0.01)
    return outcome, state


@pytest.mark.parametrize("case", CASES)
def test_same_as_gunicorns_lifespan_manager(case, records):
    gunicorn_lifespan = pytest.importorskip("gunicorn.asgi.lifespan")
    app = scripted(*CASES[case])
    ours = asyncio.run(live_through(_asgi.LifespanManager, app)), list(records)
    records.clear()
    log = logging.getLogger("gunicorn.error")
    theirs = asyncio.run(live_through(lambda a, s: gunicorn_lifespan.LifespanManager(a, log, s), app)), list(records)
    assert ours == theirs


def test_timeouts(monkeypatch, records):
    # Gunicorn's 30 seconds, shortened; the app never answers
    monkeypatch.setattr(_asgi, "LIFESPAN_TIMEOUT", 0.05)
    assert asyncio.run(live_through(_asgi.LifespanManager, scripted("receive", "receive"))) == (
        ("RuntimeError", "Lifespan startup timed out"),
        {},
    )
    never_stops = scripted("receive", "startup.complete", "receive", "receive")
    assert asyncio.run(live_through(_asgi.LifespanManager, never_stops)) == ("started", {})
    assert ("WARNING", "Lifespan shutdown timed out") in records
    assert records[-1] == ("DEBUG", "ASGI lifespan shutdown complete")
