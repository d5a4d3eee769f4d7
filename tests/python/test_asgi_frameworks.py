"""FastAPI (on Starlette) under the asgi worker, as under
`gunicorn -k uvicorn.workers.UvicornWorker`."""

import asyncio
import json
import socket

import pytest
from helpers import wait_for

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from websockets.asyncio.client import connect

APP = "fastapi_app:app"


@pytest.fixture
def fastapi_server(server, tmp_path):
    log = tmp_path / "state.log"
    s = server("-k", "uvicorn.workers.UvicornWorker", APP, env={"ASGI_STATE_LOG": str(log)})
    s.state_log = log
    return s


def test_routing_and_json(fastapi_server):
    s = fastapi_server
    status, headers, data = s.request("GET", "/items/42?q=x")
    assert status == 200 and json.loads(data) == {"item_id": 42, "q": "x"}
    assert headers["content-type"] == "application/json"
    status, _, data = s.request("GET", "/items/notanint")
    assert status == 422
    status, _, data = s.request(
        "POST", "/items", body=json.dumps({"b": 1, "a": [1, 2]}), headers={"Content-Type": "application/json"}
    )
    assert status == 200 and json.loads(data) == {"received": {"b": 1, "a": [1, 2]}, "keys": ["a", "b"]}
    assert s.request("GET", "/missing")[0] == 404
    assert json.loads(s.request("GET", "/sync")[2]) == {"sync": True}


def test_lifespan_state(fastapi_server):
    s = fastapi_server
    assert json.loads(s.request("GET", "/state")[2]) == {"db": "connected"}
    assert s.state_log.read_text().splitlines() == ["startup"]
    s.stop()
    assert s.state_log.read_text().splitlines() == ["startup", "shutdown"]


def test_form_upload(fastapi_server):
    s = fastapi_server
    boundary = "XyZ"
    content = b"0123456789" * 100_000
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nreport\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="r.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--XyZ--\r\n"
    )
    status, _, data = s.request(
        "POST", "/upload", body=body, headers={"Content-Type": "multipart/form-data; boundary=" + boundary}
    )
    assert status == 200, data
    assert json.loads(data) == {"name": "report", "filename": "r.bin", "size": len(content), "head": "0123456789"}


def test_streaming_response(fastapi_server):
    status, headers, data = fastapi_server.request("GET", "/stream")
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert data == b"".join(b"chunk %d\n" % i for i in range(5))


def test_streaming_stops_when_the_client_leaves(fastapi_server):
    s = fastapi_server
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"data: tick" in sock.recv(65536)
    sock.close()
    wait_for(lambda: "endless stream stopped" in s.state_log.read_text(), what="the generator to stop")


def test_background_task(fastapi_server):
    s = fastapi_server
    assert json.loads(s.request("POST", "/background")[2]) == {"queued": True}
    wait_for(lambda: "background task ran" in s.state_log.read_text(), what="the background task")


def test_websocket_echo_and_broadcast(fastapi_server):
    s = fastapi_server
    base = "ws://127.0.0.1:%d" % s.port

    async def go():
        async with connect(base + "/ws") as ws:
            await ws.send("hi")
            assert await ws.recv() == "echo: hi"
        clients = [await connect(base + "/room") for _ in range(5)]
        await asyncio.sleep(0.2)
        await clients[0].send("to everyone")
        got = await asyncio.gather(*(asyncio.wait_for(c.recv(), 5) for c in clients))
        for c in clients:
            await c.close()
        return got

    assert asyncio.run(go()) == ["to everyone"] * 5
    wait_for(lambda: "ws closed 1000" in s.state_log.read_text(), what="the disconnect code")


def test_django_asgi_handler(server):
    pytest.importorskip("django")
    s = server("-k", "asgi", "djsite.asgi")
    assert s.request()[2] == b"django index"
    _, _, body = s.request("POST", "/echo/?x=1", body=b"raw body", headers={"Content-Type": "text/plain"})
    assert json.loads(body) == {
        "method": "POST",
        "body": "raw body",
        "query": {"x": "1"},
        "host": "127.0.0.1:%d" % s.port,
        "secure": False,
        "path": "/echo/",
    }
    boundary = "B0und"
    body = (
        b'--B0und\r\nContent-Disposition: form-data; name="name"\r\n\r\ngrace\r\n'
        b'--B0und\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        + b"z" * 300_000
        + b"\r\n--B0und--\r\n"
    )
    _status, _, data = s.request(
        "POST", "/upload/", body=body, headers={"Content-Type": "multipart/form-data; boundary=" + boundary}
    )
    assert json.loads(data) == {"name": "grace", "size": 300_000}
    assert s.request(path="/stream/")[2] == b"line 0\nline 1\nline 2\n"
    assert s.request(path="/echo")[0] == 301
    # Django's ASGI handler listens for http.disconnect while it serves:
    # nothing was cut short or logged as an error.
    assert "Error" not in s.log() and "Traceback" not in s.log()
