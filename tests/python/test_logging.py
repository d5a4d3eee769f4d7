"""Logging as Gunicorn does it: Python logging configurations and logger
classes, the gunicorn.error logger for application code, --capture-output,
syslog and statsd packets on local sockets, and access lines checked
against Gunicorn's own formatting code."""

import json
import os
import re
import signal
import socket

import pytest
from helpers import LOGGING_INI, run_ferrocorn, wait_for


def test_log_config_ini_sends_everything_through_python_logging(server, tmp_path):
    error, access = tmp_path / "e.log", tmp_path / "a.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(LOGGING_INI % {"error": str(error), "access": str(access)})
    s = server("--log-config", str(ini), "basic:hello")
    assert s.request(path="/ini")[0] == 200
    wait_for(lambda: access.exists() and "GET /ini" in access.read_text(), what="an access line")
    assert re.match(
        r'ACCESS 127\.0\.0\.1 - - \[.*\] "GET /ini HTTP/1\.1" 200 14 "-" "Python-urllib/.*"|'
        r'ACCESS 127\.0\.0\.1 - - \[.*\] "GET /ini HTTP/1\.1" 200 14 "-" "-"',
        access.read_text().splitlines()[0],
    )
    text = error.read_text()
    assert "INI INFO Starting ferrocorn" in text
    assert "INI INFO Booting worker with pid" in text
    # gunicorn.error is at DEBUG in the ini: Gunicorn's default pre_request line shows
    assert "INI DEBUG GET /ini" in text
    # USR1 reopens the logging configuration's files too (logrotate)
    os.rename(access, tmp_path / "a.log.1")
    s.signal(signal.SIGUSR1)
    wait_for(lambda: access.exists(), what="the access file to be reopened")
    assert s.request(path="/after")[0] == 200
    wait_for(lambda: "GET /after" in access.read_text(), what="a line in the new file")
    assert "GET /after" not in (tmp_path / "a.log.1").read_text()


def test_logconfig_dict_and_json(server, tmp_path):
    out = tmp_path / "dict.log"
    config = {
        "version": 1,
        "formatters": {"plain": {"format": "DICT %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out), "formatter": "plain"}},
        # Gunicorn merges this over its defaults key by key: a config that
        # replaces "handlers" must give the root logger one of them.
        "root": {"handlers": ["file"], "level": "WARNING"},
        "loggers": {
            "gunicorn.error": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
        },
    }
    (tmp_path / "gunicorn.conf.py").write_text("logconfig_dict = %r\n" % config)
    s = server("basic:hello")
    assert s.request(path="/dict")[0] == 200
    wait_for(lambda: "DICT gunicorn.access INFO 127.0.0.1" in out.read_text(), what="the access line")
    assert "DICT gunicorn.error INFO Starting ferrocorn" in out.read_text()
    s.stop()

    os.remove(tmp_path / "gunicorn.conf.py")
    js = tmp_path / "log.json"
    config["formatters"]["plain"]["format"] = "JSON %(name)s %(message)s"
    js.write_text(json.dumps(config))
    s = server("--log-config-json", str(js), "basic:hello")
    assert s.request(path="/json")[0] == 200
    wait_for(lambda: "JSON gunicorn.access 127.0.0.1" in out.read_text(), what="the access line")


def test_missing_log_config_stops_the_start(tmp_path):

    r = run_ferrocorn(["--log-config", str(tmp_path / "nope.ini"), "basic:hello"], tmp_path)
    assert r.returncode == 1 and "log config '%s' not found" % (tmp_path / "nope.ini") in r.stderr


def test_custom_logger_class(server, tmp_path):
    out = tmp_path / "custom.log"
    s = server("--logger-class", "custom_logger.FileLogger", "basic:hello", env={"CUSTOM_LOG": str(out)})
    assert s.request(path="/custom")[0] == 200
    wait_for(lambda: "access GET /custom 200" in out.read_text(), what="the access call")
    text = out.read_text()
    assert "init accesslog=None loglevel=info" in text
    assert "info Starting ferrocorn" in text
    s.signal(signal.SIGUSR1)
    wait_for(lambda: "reopen_files" in out.read_text(), what="reopen_files on USR1")
    # HUP sets the same logger object up again, as Gunicorn does
    (tmp_path / "gunicorn.conf.py").write_text("workers = 2\n")
    s.signal(signal.SIGHUP)
    wait_for(lambda: "setup workers=2" in out.read_text(), what="setup() on HUP")
    assert out.read_text().count("init ") == 1


def test_app_code_logging_to_gunicorn_error(server):
    s = server("--log-level", "warning", "custom_logger:logs_to_gunicorn_error")
    assert s.request()[0] == 200
    wait_for(lambda: "[WARNING] from the app via gunicorn.error" in s.log(), what="the app's record")
    assert "hidden info" not in s.log()
    assert re.search(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] from the app", s.log())


def test_capture_output(server, tmp_path):
    log = tmp_path / "captured.log"
    s = server("--capture-output", "--error-logfile", str(log), "custom_logger:prints")
    assert s.request()[0] == 200
    wait_for(
        lambda: "printed to stdout" in log.read_text() and "printed to stderr" in log.read_text(),
        what="captured output",
    )


# Every atom except the clock and timings (t T D M L) and the pid (p).
ATOMS = (
    '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s "%(f)s" "%(a)s" '
    "%({x-custom}i)s %({content-type}o)s %({path_info}e)s %({missing}i)s"
)

REQUESTS = [
    ("GET", "/plain?a=1&b=2", {"User-Agent": "agent/1.0", "Referer": "http://ref/x"}),
    ("POST", '/quote"d', {"X-Custom": 'va"lue', "Authorization": "Basic dXNlcjpwYXNz"}),
    ("HEAD", "/h", {}),
    ("GET", "/missing", {"User-Agent": ""}),
]


def access_lines(server, tmp_path, extra):
    s = server("--access-logformat", ATOMS, "basic:hello", *extra)
    for method, path, headers in REQUESTS:
        request = "%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (
            method,
            path,
            "".join("%s: %s\r\n" % kv for kv in headers.items()),
        )
        s.raw(request.encode())
    return s


@pytest.mark.parametrize("worker", [[], ["-k", "gthread", "--threads", "2"]], ids=["sync", "gthread"])
def test_access_lines_match_gunicorns_formatting(server, tmp_path, worker):
    rust = access_lines(server, tmp_path, ["--access-logfile", str(tmp_path / "rust.log")] + worker)
    wait_for(lambda: len((tmp_path / "rust.log").read_text().splitlines()) == len(REQUESTS), what="rust lines")
    rust.stop()
    # The same requests through ferrocorn.glogging.Logger.access(), which a
    # logging configuration selects (test_glogging holds it to Gunicorn's).
    config = {
        "version": 1,
        "loggers": {"gunicorn.access": {"handlers": ["f"], "level": "INFO", "propagate": False}},
        "handlers": {"f": {"class": "logging.FileHandler", "filename": str(tmp_path / "py.log")}},
        "root": {"handlers": ["f"], "level": "CRITICAL"},
    }
    (tmp_path / "gunicorn.conf.py").write_text("logconfig_dict = %r\n" % config)
    access_lines(server, tmp_path, worker)
    wait_for(
        lambda: (tmp_path / "py.log").exists() and len((tmp_path / "py.log").read_text().splitlines()) == len(REQUESTS),
        what="python lines",
    )
    assert (tmp_path / "rust.log").read_text() == (tmp_path / "py.log").read_text()
    lines = (tmp_path / "rust.log").read_text().splitlines()
    assert lines[1] == (
        '127.0.0.1 - user "POST /quote\\"d HTTP/1.1" 200 POST /quote\\"d  HTTP/1.1 14 14 "-" "-" '
        'va\\"lue text/plain /quote\\"d -'
    )


def test_access_and_error_lines_match_gunicorn_itself(server, tmp_path):
    """The same requests logged by ferrocorn's Rust writer and by Gunicorn's
    own Logger class (installed from PyPI, used as a --logger-class)."""
    pytest.importorskip("gunicorn.glogging")
    rust = access_lines(
        server,
        tmp_path,
        ["--access-logfile", str(tmp_path / "rust.log"), "--error-logfile", str(tmp_path / "rust-error.log")],
    )
    wait_for(lambda: len((tmp_path / "rust.log").read_text().splitlines()) == len(REQUESTS), what="rust lines")
    rust.stop()
    access_lines(
        server,
        tmp_path,
        [
            "--logger-class",
            "real_gunicorn_logger.GunicornLogger",
            "--access-logfile",
            str(tmp_path / "gunicorn.log"),
            "--error-logfile",
            str(tmp_path / "gunicorn-error.log"),
        ],
    )
    wait_for(
        lambda: (
            (tmp_path / "gunicorn.log").exists()
            and len((tmp_path / "gunicorn.log").read_text().splitlines()) == len(REQUESTS)
        ),
        what="gunicorn lines",
    )
    assert (tmp_path / "rust.log").read_text() == (tmp_path / "gunicorn.log").read_text()

    def shape(path):
        # the same lines, in the same format, apart from time and pids
        text = re.sub(r"^\[[^]]+\] \[\d+\]", "[T] [P]", path.read_text(), flags=re.M)
        return [
            line
            for line in re.sub(r"pid: \d+", "pid: P", text).splitlines()
            if "Starting" in line or "Booting" in line or "Using worker" in line
        ]

    assert shape(tmp_path / "rust-error.log") == shape(tmp_path / "gunicorn-error.log")
    assert shape(tmp_path / "rust-error.log")


def udp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    return sock


def drain(sock, until, timeout=10.0):
    got = []

    def more():
        try:
            while True:
                got.append(sock.recv(65536))
        except socket.timeout:
            pass
        return until(got)

    wait_for(more, timeout=timeout, interval=0.01, what="packets")
    return got


@pytest.mark.parametrize("worker", [[], ["-k", "gthread", "--threads", "2"]], ids=["sync", "gthread"])
def test_statsd_packets(server, tmp_path, worker):
    sock = udp_listener()
    port = sock.getsockname()[1]
    (tmp_path / "gunicorn.conf.py").write_text("def when_ready(server):\n    server.log.warning('from a hook')\n")
    s = server(
        "--statsd-host",
        "127.0.0.1:%d" % port,
        "--statsd-prefix",
        "web",
        "--dogstatsd-tags",
        "env:test,team:x",
        "basic:boom",
        *worker,
    )
    s.request()  # a 500 from the app
    got = drain(sock, lambda g: any(b"request.status.500" in p for p in g))
    text = [p.decode() for p in got]
    assert "web.gunicorn.workers:1|g|#env:test,team:x" in text
    assert "web.gunicorn.requests:1|c|@1.0|#env:test,team:x" in text
    assert "web.gunicorn.request.status.500:1|c|@1.0|#env:test,team:x" in text
    assert any(re.fullmatch(r"web\.gunicorn\.request\.duration:\d+\.\d+\|ms\|#env:test,team:x", t) for t in text)
    assert "web.gunicorn.log.exception:1|c|@1.0|#env:test,team:x" in text
    assert "web.gunicorn.log.warning:1|c|@1.0|#env:test,team:x" in text  # the hook's server.log.warning
    s.signal(signal.SIGTTIN)
    drain(sock, lambda g: b"web.gunicorn.workers:2|g|#env:test,team:x" in g)


def test_backlog_metric(server):
    sock = udp_listener()
    s = server("--statsd-host", "127.0.0.1:%d" % sock.getsockname()[1], "--enable-backlog-metric", "basic:hello")
    drain(sock, lambda g: any(re.fullmatch(rb"gunicorn\.backlog:\d+\|h", p) for p in g))
    assert s.request()[0] == 200


def test_syslog_packets(server):
    sock = udp_listener()
    port = sock.getsockname()[1]
    s = server(
        "--log-syslog",
        "--log-syslog-to",
        "udp://127.0.0.1:%d" % port,
        "--log-syslog-facility",
        "local1",
        "--log-syslog-prefix",
        "myapp",
        "basic:hello",
    )
    (worker,) = s.wait_workers(1)
    assert s.request(path="/sys")[0] == 200
    got = drain(sock, lambda g: any(b"gunicorn.myapp.access" in p for p in g))
    # local1 = 17: info is <17*8+6>
    assert ("<142>gunicorn.myapp.error: [%d] Booting worker with pid: %d\0" % (worker, worker)).encode() in got
    access = next(p for p in got if b"gunicorn.myapp.access" in p)
    assert re.fullmatch(
        rb'<142>gunicorn\.myapp\.access: \[%d\] 127\.0\.0\.1 - - \[.*\] "GET /sys HTTP/1\.1" 200 14 .*\0' % worker,
        access,
    )
    # the error log still gets everything too
    assert "Booting worker with pid: %d" % worker in s.log()


def test_syslog_access_can_be_kept_out(server):
    sock = udp_listener()
    s = server(
        "--log-syslog",
        "--log-syslog-to",
        "udp://127.0.0.1:%d" % sock.getsockname()[1],
        "--disable-redirect-access-to-syslog",
        "basic:hello",
    )
    assert s.request()[0] == 200
    got = drain(sock, lambda g: any(b"Booting worker" in p for p in g))
    s.request()
    got += drain(sock, lambda g: True, timeout=1)
    assert not any(b".access:" in p for p in got)
    # the default prefix is the process name with ':' made '.'
    assert any(b"<14>gunicorn.basic.hello.error: " in p for p in got)


def test_bad_syslog_address_stops_the_start(tmp_path):

    r = run_ferrocorn(["--log-syslog", "--log-syslog-to", "localhost:514", "basic:hello"], tmp_path)
    assert r.returncode == 1 and "invalid syslog address" in r.stderr


def test_logger_class_object_from_config_file(server, tmp_path):
    out = tmp_path / "object.log"
    (tmp_path / "gunicorn.conf.py").write_text(
        "from custom_logger import FileLogger\n"
        "class MyLogger(FileLogger):\n"
        "    def info(self, msg, *args, **kwargs):\n"
        "        self._write('my-info ' + (msg % args if args else msg))\n"
        "logger_class = MyLogger\n"
    )
    s = server("basic:hello", env={"CUSTOM_LOG": str(out)})
    assert s.request(path="/obj")[0] == 200
    wait_for(lambda: "access GET /obj 200" in out.read_text(), what="the access call")
    assert "my-info Starting ferrocorn" in out.read_text()


def test_syslog_over_a_unix_socket(server, tmp_path):
    path = str(tmp_path / "syslog.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    s = server("--log-syslog", "--log-syslog-to", "unix://%s" % path, "basic:hello")
    (worker,) = s.wait_workers(1)
    got = drain(sock, lambda g: any(b"Booting worker" in p for p in g))
    assert ("<14>gunicorn.basic.hello.error: [%d] Booting worker with pid: %d\0" % (worker, worker)).encode() in got
    sock.close()
