"""--access-log-json and --log-json: one JSON object per line, with
OpenTelemetry's field names and typed values, whatever a client puts in its
headers (quotes, backslashes, bytes past ASCII, C1 controls, JSON of its
own, values as long as the server takes), for every worker type."""

import json
import socket

import pytest
from helpers import read_response, run_ferrocorn, wait_for

APPS = {"sync": "ops_app:app", "gthread": "ops_app:app", "asgi": "ops_app:asgi"}

# Header values a client controls, each a forgery attempt on a hand-built
# JSON format: they must come back as sent, inside their own string.
HOSTILE = [
    b'a"b',
    b'\\"},{"forged":true,"x":"',
    b"\x80\x9b[31m\xff latin-1 and a C1 control",
    b"tab\tinside",
    b"x" * 8000,
]


def send(port, head):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head)
        return read_response(s)
    finally:
        s.close()


def json_lines(path, count, timeout=10):
    """The file's lines, each parsed (and required to parse), once there
    are `count` of them."""

    def read():
        try:
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8").splitlines()
        except FileNotFoundError:
            return None
        return lines if len(lines) >= count else None

    return [json.loads(line) for line in wait_for(read, timeout=timeout, what="%d log lines" % count)]


@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_access_lines_are_typed_json_with_every_value_escaped(server, tmp_path, kind):
    log = tmp_path / "access.json"
    s = server(
        "-k", kind, "--access-logfile", str(log), "--access-log-json",
        "--access-log-json-header", "X-Request-Id", "--access-log-json-header", "referer",
        APPS[kind],
    )  # fmt: skip
    heads = [
        b"GET /status/404?q=%22x%22&y=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
        b"X-Request-Id: " + value + b"\r\nUser-Agent: " + value[:200] + b"\r\n\r\n"
        for value in HOSTILE
    ]
    heads.append(
        b"POST /p%20q HTTP/1.0\r\nHost: h\r\nContent-Length: 3\r\nX-Request-ID: one\r\nx-request-id: two\r\n"
        b"Referer: http://r/\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\nabc"
    )
    for head in heads:
        assert send(s.port, head)
    records = json_lines(log, len(heads))
    assert len(records) == len(heads)
    for value, rec in zip(HOSTILE, records):
        sent = value.decode("latin-1")
        assert rec["http.request.header.x-request-id"] == [sent]
        assert rec["user_agent.original"] == sent[:200]
        assert "forged" not in rec
        assert rec["http.request.method"] == "GET"
        assert rec["url.path"] == "/status/404"
        assert rec["url.query"] == "q=%22x%22&y=1"
        assert rec["http.response.status_code"] == 404
        assert isinstance(rec["http.response.body.size"], int)
        assert isinstance(rec["http.server.request.duration"], float) and rec["http.server.request.duration"] >= 0
        assert rec["network.protocol.version"] == "1.1"
        assert rec["url.scheme"] == "http"
        assert rec["client.address"] == "127.0.0.1" and rec["network.peer.address"] == "127.0.0.1"
        assert isinstance(rec["network.peer.port"], int)
        assert rec["process.pid"] in s.workers()
        assert rec["timestamp"].endswith("Z")
        assert "http.request.header.referer" not in rec
    last = records[-1]
    assert last["http.request.header.x-request-id"] == ["one", "two"]
    assert last["http.request.header.referer"] == ["http://r/"]
    assert last["http.request.method"] == "POST" and last["url.path"] == "/p%20q" and "url.query" not in last
    assert last["network.protocol.version"] == "1.0"
    assert last["user.name"] == "user"
    assert last["http.response.status_code"] == 200 and last["http.response.body.size"] == len(b"ok\n")
    # C1 controls and the escape byte are written as \u escapes, never raw
    with open(log, "rb") as f:
        raw = f.read()
    assert b"\xc2\x9b" not in raw and b"\\u009b" in raw


def test_error_log_as_json_lines(server, tmp_path):
    log = tmp_path / "error.json"
    s = server("--log-json", "--error-logfile", str(log), "--log-level", "debug", "ops_app:app")
    assert s.request(path="/boom")[0] == 500
    records = json_lines(log, 1)
    wait_for(lambda: any("Traceback" in r["body"] for r in json_lines(log, 1)), what="the traceback record")
    records = json_lines(log, 1)
    for rec in records:
        assert set(rec) >= {"timestamp", "process.pid", "body"}
        if "severity_text" in rec:
            assert (rec["severity_text"], rec["severity_number"]) in {
                ("DEBUG", 5), ("INFO", 9), ("WARNING", 13), ("ERROR", 17), ("CRITICAL", 21)
            }  # fmt: skip
    assert any(r["body"].startswith("Listening at: http://127.0.0.1:%d" % s.port) for r in records)
    boom = next(r for r in records if "Traceback" in r["body"])
    assert boom["severity_text"] == "ERROR" and "\n" in boom["body"]


def test_wsgi_errors_writes_are_records_of_their_own(server, tmp_path):
    log = tmp_path / "error.json"
    s = server("--log-json", "--error-logfile", str(log), "basic:errors_app")
    assert s.request()[0] == 200
    wait_for(lambda: any(r["body"] == "message for wsgi.errors" for r in json_lines(log, 1)), what="the record")
    rec = next(r for r in json_lines(log, 1) if r["body"] == "message for wsgi.errors")
    assert "severity_text" not in rec and rec["process.pid"] in s.workers()


def test_json_logs_are_refused_where_they_cannot_hold(tmp_path):
    conf = tmp_path / "logging.conf.py"
    conf.write_text("logconfig_dict = {'version': 1, 'root': {'level': 'INFO'}}\n")
    r = run_ferrocorn(["-c", str(conf), "--access-log-json", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "access_log_json cannot be used with a Python logging configuration" in r.stderr
    r = run_ferrocorn(["--log-json", "--capture-output", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "error_log_json cannot be used with capture_output" in r.stderr
    r = run_ferrocorn(["--access-log-json", "--access-log-json-header", "bad name", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "'bad name' is not a header name" in r.stderr.replace('"', "'")
    # the same settings from a config file
    conf = tmp_path / "json.conf.py"
    conf.write_text("access_log_json = True\naccess_log_json_headers = ['x-a']\nerror_log_json = True\n")
    r = run_ferrocorn(["-c", str(conf), "--print-config", "basic:hello"], tmp_path)
    assert r.returncode == 0, r.stderr
    shown = {line.split(" = ")[0].strip(): line.split(" = ", 1)[1] for line in r.stdout.splitlines()}
    assert (shown["access_log_json"], shown["access_log_json_headers"], shown["error_log_json"]) == (
        "True",
        "['x-a']",
        "True",
    )
