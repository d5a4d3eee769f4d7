"""ferrocorn.glogging.Logger beside Gunicorn's own (from the test extra), in
this process, set up from the same Gunicorn configuration: the same lines
in the log files, on syslog and through logging configurations, the same
atoms and user names for the same requests, the same failures for bad
settings, and the same published tables."""

import json
import logging
import os
import re
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
from ferrocorn import glogging
from helpers import LOGGING_INI

gunicorn_glogging = pytest.importorskip("gunicorn.glogging")
from gunicorn.config import Config  # noqa: E402

LOGGERS = {"ferrocorn": glogging.Logger, "gunicorn": gunicorn_glogging.Logger}


@pytest.fixture(autouse=True)
def restore_logging():
    """The root and server loggers as they were: a Logger and the logging
    configurations it applies change them for the whole process."""
    logs = [logging.getLogger(name) for name in ("", "gunicorn.error", "gunicorn.access")]
    saved = [(log, log.handlers[:], log.level, log.propagate, log.disabled) for log in logs]
    yield
    for log, handlers, level, propagate, disabled in saved:
        for handler in log.handlers:
            if handler not in handlers:
                handler.close()
        log.handlers[:] = handlers
        log.level, log.propagate, log.disabled = level, propagate, disabled


def config(**settings):
    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


def each(settings, action):
    """{name: what `action(logger)` gives} for a Logger of each kind set up
    with `settings`, each just before its turn (they share the process's
    loggers), with `now()` fixed so that lines compare."""
    results = {}
    for name, cls in LOGGERS.items():
        logger = cls(config(**settings))
        logger.now = lambda: "[01/Jan/2030:00:00:00 +0000]"
        results[name] = action(logger)
    return results


def same(results):
    first, *others = results.values()
    assert all(other == first for other in others), results
    return first


class Resp:
    def __init__(self, status, headers, sent):
        self.status, self.headers, self.sent = status, headers, sent


def environ(method="GET", uri="/", **extra):
    base = {
        "REQUEST_METHOD": method,
        "RAW_URI": uri,
        "PATH_INFO": uri.partition("?")[0],
        "QUERY_STRING": uri.partition("?")[2],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
    }
    return {**base, **extra}


REQUESTS = [
    (
        Resp("200 OK", [("Content-Type", "text/plain"), ("X-Quote", 'a"b')], 14),
        SimpleNamespace(headers=[("X-Custom", 'va"lue'), ("User-Agent", "agent/1")]),
        environ(uri="/plain?a=1", HTTP_USER_AGENT="agent/1", HTTP_REFERER="http://ref/"),
        timedelta(seconds=2, microseconds=345678),
    ),
    (
        Resp(404, {"Content-Length": "0"}, None),
        [("Host", "x"), ("Authorization", "Basic dXNlcjpwYXNz")],
        environ("POST", '/quote"d', HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz"),
        timedelta(days=1, microseconds=999),
    ),
    (
        Resp("304 Not Modified", [], 0),
        {"X-Dict": "1"},
        environ("HEAD", "/h", HTTP_AUTHORIZATION="Basic /w=="),
        timedelta(0),
    ),
]

FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s '
    "%(L)s %({X-Custom}i)s %({x-quote}o)s %({path_info}e)s %({missing}i)s %(z)s"
)


def test_published_tables_and_formats():
    assert glogging.SYSLOG_FACILITIES == gunicorn_glogging.SYSLOG_FACILITIES
    assert glogging.CONFIG_DEFAULTS == gunicorn_glogging.CONFIG_DEFAULTS
    for attr in ("LOG_LEVELS", "loglevel", "error_fmt", "datefmt", "access_fmt", "syslog_fmt"):
        assert getattr(glogging.Logger, attr) == getattr(gunicorn_glogging.Logger, attr), attr


@pytest.mark.parametrize("request_index", range(len(REQUESTS)))
def test_atoms(request_index):
    resp, req, env, elapsed = REQUESTS[request_index]
    atoms = same(each({}, lambda logger: logger.atoms(resp, req, env, elapsed)))
    assert (atoms["T"], atoms["D"], atoms["M"], atoms["L"]) == {
        0: (2, 2345678, 2345, "2.345678"),
        1: (0, 999, 0, "0.000999"),
        2: (0, 0, 0, "0.000000"),
    }[request_index]


def test_safe_atoms():
    atoms = each({}, lambda logger: logger.atoms(*REQUESTS[0]))["gunicorn"]
    assert FORMAT % glogging.SafeAtoms(atoms) == FORMAT % gunicorn_glogging.SafeAtoms(atoms)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dXNlcjpwYXNz",
        "basic   dXNlcjpwYXNz  ",
        "basicky dXNlcjpwYXNz",
        "Basic",
        "Basic YQ",
        "Basic /w==",
        "Basic !!!",
        "Bearer dXNlcjpwYXNz",
        "",
    ],
)
def test_user_names(authorization, tmp_path):
    log = tmp_path / "error.log"

    def user_and_lines(logger):
        user = logger._get_user({"HTTP_AUTHORIZATION": authorization})
        return user, log.read_text().splitlines()[-1:] if log.exists() else []

    same(each({"errorlog": str(log), "loglevel": "debug"}, user_and_lines))


def test_access_lines(tmp_path):
    def lines(logger):
        path = tmp_path / "access.log"
        for resp, req, env, elapsed in REQUESTS:
            logger.access(resp, req, env, elapsed)
        text = path.read_text()
        path.unlink()
        return text

    text = same(each({"accesslog": str(tmp_path / "access.log"), "access_log_format": FORMAT}, lines))
    assert len(text.splitlines()) == len(REQUESTS)


def without_times(text):
    return re.sub(r"^\[[^]]+\]", "[T]", text, flags=re.M)


def test_error_lines(tmp_path):
    path = tmp_path / "error.log"

    def lines(logger):
        logger.debug("debug %s", 1)
        logger.info("info")
        logger.log("warning", "by name")
        logger.log("nonsense", "unknown names are info")
        logger.log(logging.ERROR, "by number")
        logger.critical("critical")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        text = without_times(path.read_text())
        path.unlink()
        return text

    text = same(each({"errorlog": str(path), "loglevel": "debug"}, lines))
    assert "[DEBUG] debug 1" in text and "ValueError: boom" in text


@pytest.mark.parametrize("prefix", ["", "myapp"])
def test_syslog_packets(prefix):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    settings = {
        "syslog": True,
        "syslog_addr": "udp://127.0.0.1:%d" % sock.getsockname()[1],
        "syslog_facility": "LOCAL3",
        "syslog_prefix": prefix or None,
        "proc_name": "web:app",
        "accesslog": None,
    }

    def packets(logger):
        logger.warning("to syslog")
        logger.access(*REQUESTS[0])
        return [sock.recv(65536), sock.recv(65536)]

    got = same(each(settings, packets))
    sock.close()
    tag = b"gunicorn.%s." % (prefix.encode() or b"web.app")
    assert got[0].startswith(b"<156>" + tag + b"error: [")
    assert got[1].startswith(b"<158>" + tag + b"access: [")


def test_access_log_enabled():
    for settings in (
        {},
        {"accesslog": "-"},
        {"syslog": True},
        {"syslog": True, "disable_redirect_access_to_syslog": True},
    ):
        same(each(settings, lambda logger: logger.access_log_enabled))


DICT_CONFIG = {
    "version": 1,
    "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
    "handlers": {"file": {"class": "logging.FileHandler", "filename": "{log}", "formatter": "plain"}},
    "root": {"handlers": ["file"], "level": "WARNING"},
    "loggers": {
        "gunicorn.error": {"handlers": ["file"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
    },
}


@pytest.mark.parametrize("kind", ["dict", "json", "ini"])
def test_logging_configurations(kind, tmp_path):
    log = tmp_path / "config.log"
    dict_config = json.loads(json.dumps(DICT_CONFIG).replace("{log}", str(log)))
    if kind == "dict":
        settings = {"logconfig_dict": dict_config}
    elif kind == "json":
        (tmp_path / "log.json").write_text(json.dumps(dict_config))
        settings = {"logconfig_json": str(tmp_path / "log.json")}
    else:
        # both into one file, named through the ini's %(here)s
        here = "%(here)s/config.log"
        (tmp_path / "log.ini").write_text(LOGGING_INI % {"error": here, "access": here})
        settings = {"logconfig": str(tmp_path / "log.ini")}

    def lines(logger):
        logger.info("through the configuration")
        logger.access(*REQUESTS[1])
        for handler in logging.getLogger("gunicorn.error").handlers:
            handler.flush()
        text = log.read_text()
        log.unlink()
        return text

    text = same(each(settings, lines))
    assert "INFO through the configuration\n" in text and " 10.0.0.1 - user " in text


def failure(settings):
    def attempt(cls):
        try:
            cls(config(**settings))
        except Exception as e:
            return type(e).__name__, str(e)
        return None

    return same({name: attempt(cls) for name, cls in LOGGERS.items()})


def test_failures(tmp_path):
    assert failure({"syslog": True, "syslog_facility": "nope"}) == ("RuntimeError", "unknown facility name")
    assert failure({"syslog": True, "syslog_addr": "localhost:514"}) == ("RuntimeError", "invalid syslog address")
    assert failure({"errorlog": str(tmp_path / "no" / "such.log")})[1].startswith("Error: '")
    assert failure({"logconfig": str(tmp_path / "nope.ini")})[1].startswith("Error: log config '")
    bad_class = {"version": 1, "handlers": {"h": {"class": "no_such_module.Handler"}}}
    assert failure({"logconfig_dict": bad_class})[0] == "RuntimeError"
    (tmp_path / "bad.json").write_text("{not json")
    assert failure({"logconfig_json": str(tmp_path / "bad.json")})[0] == "RuntimeError"
    (tmp_path / "list.json").write_text("[1, 2]")
    assert failure({"logconfig_json": str(tmp_path / "list.json")})[0] == "RuntimeError"
    assert failure({"logconfig_json": str(tmp_path / "missing.json")}) is None


def test_reopen_files(tmp_path):
    path = tmp_path / "rotated.log"

    def rotate(logger):
        logger.info("before")
        path.rename(tmp_path / "rotated.log.1")
        logger.reopen_files()
        logger.info("after")
        logger.close_on_exec()
        fd = logging.getLogger("gunicorn.error").handlers[0].stream.fileno()
        old = (tmp_path / "rotated.log.1").read_text()
        new = path.read_text()
        path.unlink()
        return without_times(old), without_times(new), os.get_inheritable(fd)

    assert same(each({"errorlog": str(path)}, rotate))[2] is False
