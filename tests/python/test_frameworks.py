"""Real frameworks under ferrocorn: Flask and Django."""

import json
import uuid

import pytest

pytestmark = pytest.mark.usefixtures("worker_class")


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (
            boundary.encode(),
            name.encode(),
            value.encode(),
        )
    for name, (filename, content) in files.items():
        out += (
            b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n%s\r\n"
            % (boundary.encode(), name.encode(), filename.encode(), content)
        )
    out += b"--%s--\r\n" % boundary.encode()
    return out, "multipart/form-data; boundary=" + boundary


def test_flask(server):
    pytest.importorskip("flask")
    s = server("-w", "2", "flask_app:app")
    assert s.request()[2] == b"flask index"
    status, _, body = s.request(
        "POST", "/json", body=json.dumps({"a": [1, 2]}), headers={"Content-Type": "application/json"}
    )
    assert status == 200 and json.loads(body) == {"received": {"a": [1, 2]}, "method": "POST", "remote": "127.0.0.1"}
    data, ctype = multipart({"name": "ada"}, {"file": ("f.txt", b"file contents")})
    status, _, body = s.request("POST", "/form", body=data, headers={"Content-Type": ctype})
    assert json.loads(body) == {"name": "ada", "file": "file contents"}
    status, headers, body = s.request(path="/stream")
    assert body == b"chunk 0\nchunk 1\nchunk 2\n" and headers.get("transfer-encoding") == "chunked"
    status, headers, body = s.request(path="/cookie", headers={"Cookie": "flavour=choc"})
    assert json.loads(body) == {"seen": "choc"} and "flavour=oat" in headers["set-cookie"]
    status, headers, _ = s.request(path="/go")
    assert status == 302 and headers["location"].endswith("/")
    assert s.request(path="/fail")[0] == 500
    assert "flask view failed" in s.log()
    status, _, body = s.request(path="/missing")
    assert status == 404 and json.loads(body) == {"error": "not here"}


def test_django(server):
    pytest.importorskip("django")
    s = server("djsite.wsgi")
    assert s.request()[2] == b"django index"
    _, _, body = s.request("POST", "/echo/?x=1", body=b"raw body", headers={"Content-Type": "text/plain"})
    info = json.loads(body)
    assert info == {
        "method": "POST",
        "body": "raw body",
        "query": {"x": "1"},
        "host": "127.0.0.1:%d" % s.port,
        "secure": False,
        "path": "/echo/",
    }
    data, ctype = multipart({"name": "grace"}, {"file": ("big.bin", b"z" * 300_000)})
    _, _, body = s.request("POST", "/upload/", body=data, headers={"Content-Type": ctype})
    assert json.loads(body) == {"name": "grace", "size": 300_000}
    _status, _headers, body = s.request(path="/stream/")
    assert body == b"line 0\nline 1\nline 2\n"
    # CommonMiddleware's APPEND_SLASH redirect
    assert s.request(path="/echo")[0] == 301
