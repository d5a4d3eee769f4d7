"""`-k package.module.Class`: UvicornWorker subclasses served natively from
their CONFIG_KWARGS, and the errors for classes that cannot be served."""

import json
import socket
import time

import pytest
from helpers import parse_response, read_response, run_ferrocorn

pytest.importorskip("uvicorn")


def test_a_uvicorn_worker_subclass_runs_with_its_config_kwargs(server):
    s = server("-k", "uvicorn_workers.Tuned", "asgi_app:app", env={"ASGI_STATE_LOG": ""})
    status, _, body = s.request(path="/scope")
    assert status == 200
    assert json.loads(body)["root_path"] == "/api"
    log = s.log()
    assert "Worker class uvicorn_workers.Tuned is served by ferrocorn's native asgi worker with" in log, log
    for applied in ("asgi_loop=asyncio", "asgi_lifespan=on", "root_path=/api", "keepalive=1"):
        assert applied in log, (applied, log)
    # one warning names what has no counterpart
    warnings = [x for x in log.splitlines() if "no counterpart" in x]
    assert len(warnings) == 1 and "server_header=False" in warnings[0] and "limit_concurrency=100" in warnings[0]
    assert "http=" not in warnings[0]  # ferrocorn's engine is the HTTP implementation whatever it says
    # timeout_keep_alive became the keep-alive time
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parse_response(read_response(c))[0] == 200
    started = time.time()
    assert c.recv(100) == b""
    assert time.time() - started < 3
    c.close()


def test_config_kwargs_with_an_invalid_value_stop_the_master(tmp_path):
    r = run_ferrocorn(["-k", "uvicorn_workers.BadValue", "asgi_app:app"], tmp_path)
    assert r.returncode == 1
    assert "Invalid worker class 'uvicorn_workers.BadValue'" in r.stderr and "asgi_lifespan" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "cls,why",
    [
        ("uvicorn_workers.Overrides", "overrides run"),
        ("uvicorn_workers.NotAWorker", "cannot run another Python worker class"),
        ("uvicorn_workers.Missing", "has no attribute Missing"),
        ("no_such_module.Worker", "cannot import no_such_module"),
    ],
)
def test_a_class_that_cannot_be_served_says_why_and_what_can(tmp_path, cls, why):
    r = run_ferrocorn(["-k", cls, "asgi_app:app"], tmp_path)
    assert r.returncode == 1
    assert "Invalid worker class '%s'" % cls in r.stderr, r.stderr
    assert why in r.stderr, r.stderr
    assert "Valid worker classes are sync, gthread, asgi, gevent" in r.stderr, r.stderr
