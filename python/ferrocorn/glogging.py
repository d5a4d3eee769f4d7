"""Python logging for the server, with the interface of Gunicorn's
``gunicorn.glogging``.

Two loggers live here:

* :class:`Logger` is used when the configuration asks for Python logging
  (``--log-config``, ``logconfig_dict``, ``--log-config-json``): ferrocorn
  then sends every error record and every request through it. It behaves
  as Gunicorn 27's ``Logger``: the same handlers on the ``gunicorn.error``
  and ``gunicorn.access`` loggers, the same line formats and access-log
  atoms, the same syslog prefix and facilities, and logging configurations
  laid over the same defaults, so configurations and ``--logger-class``
  subclasses written for Gunicorn work unchanged.
* :class:`BridgeLogger` is what ferrocorn uses otherwise: the error and
  access logs are written by Rust, and the ``gunicorn.error`` and
  ``gunicorn.access`` Python loggers get handlers that write into them, so
  application code that logs to ``logging.getLogger("gunicorn.error")`` (or
  copies its handlers, as Flask apps often do) lands in ferrocorn's error
  log with the same format.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from logging.config import dictConfig, fileConfig
from typing import IO, Any

# Records logged before any handler is set up are dropped without
# logging's one-time "No handlers could be found" complaint.
logging.Logger.manager.emittedNoHandlerWarning = True

ERROR_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"


def _check_is_writable(path: str) -> None:
    """Stop the start, with Gunicorn's message, for a log file that cannot
    be opened for appending."""
    try:
        open(path, "a").close()
    except OSError as e:
        raise RuntimeError("Error: '%s' isn't writable [%r]" % (path, e)) from e


# --log-syslog-facility names and their syslog(3) codes; "security" is an
# old name for auth that Gunicorn still accepts.
SYSLOG_FACILITIES = {
    name: getattr(logging.handlers.SysLogHandler, "LOG_" + name.upper())
    for name in (
        *("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp"),
        *("local%d" % n for n in range(8)),
    )
}
SYSLOG_FACILITIES["security"] = SYSLOG_FACILITIES["auth"]


def _console_handler(stream: str) -> dict[str, str]:
    return {"class": "logging.StreamHandler", "formatter": "generic", "stream": stream}


def _server_logger(name: str, handler: str) -> dict[str, Any]:
    return {"level": "INFO", "handlers": [handler], "propagate": True, "qualname": name}


# What a logging configuration (dict, JSON or ini defaults) is laid over.
# A configuration's top-level entries replace these whole: one that gives
# its own "handlers" must also give the root logger one of them.
CONFIG_DEFAULTS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": _server_logger("gunicorn.error", "error_console"),
        "gunicorn.access": _server_logger("gunicorn.access", "console"),
    },
    "handlers": {
        "console": _console_handler("ext://sys.stdout"),
        "error_console": _console_handler("ext://sys.stderr"),
    },
    "formatters": {"generic": {"format": ERROR_FORMAT, "datefmt": DATE_FORMAT, "class": "logging.Formatter"}},
}


def loggers() -> list[logging.Logger]:
    """Every named logger there is (not the root), placeholders included,
    which this turns into loggers."""
    return [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]


class SafeAtoms(dict):
    """Access-log atoms the way a format string reads them: double quotes
    in text escaped (the formats quote fields), ``{name}i``/``o``/``e``
    atoms found whatever the case the format gives, and ``-`` for anything
    the request did not have."""

    def __init__(self, atoms: Mapping[str, Any]) -> None:
        super().__init__((key, _escape_quotes(value)) for key, value in atoms.items())

    def __getitem__(self, key: str) -> Any:
        if key.startswith("{"):
            key = key.lower()
        return self.get(key, "-")


def _escape_quotes(value: Any) -> Any:
    return value.replace('"', '\\"') if isinstance(value, str) else value


def parse_syslog_address(addr: str) -> tuple[Any, Any]:
    """Gunicorn's: ``(socket type or None, path)`` for ``unix://``, else
    ``(socket type, (host, port))``. The parser is the one ferrocorn's own
    syslog is configured with (``src/log/syslog.rs``)."""
    from ferrocorn._ferrocorn import parse_syslog_address as parse

    return parse(addr)


# Atoms read straight from the WSGI environ: letter -> (key, when absent).
_ENVIRON_ATOMS = {
    "h": ("REMOTE_ADDR", "-"),
    "m": ("REQUEST_METHOD", None),
    "U": ("PATH_INFO", None),
    "q": ("QUERY_STRING", None),
    "H": ("SERVER_PROTOCOL", None),
    "f": ("HTTP_REFERER", "-"),
    "a": ("HTTP_USER_AGENT", "-"),
}


def _response_atoms(resp: Any) -> dict[str, Any]:
    status = resp.status
    sent = getattr(resp, "sent", None)
    return {
        "s": status.split(None, 1)[0] if isinstance(status, str) else status,
        "b": "-" if sent is None else str(sent),
        "B": sent,
    }


def _duration_atoms(elapsed: timedelta) -> dict[str, Any]:
    # Whole days are left out, as Gunicorn leaves them out.
    seconds, micros = elapsed.seconds, elapsed.microseconds
    return {
        "T": seconds,
        "D": seconds * 1_000_000 + micros,
        "M": seconds * 1000 + micros // 1000,
        "L": "%d.%06d" % (seconds, micros),
    }


def _pairs(headers: Any) -> Iterable[tuple[str, Any]]:
    """(name, value) pairs from a mapping or from a list of pairs."""
    return headers.items() if hasattr(headers, "items") else headers


def _named_atoms(pairs: Iterable[tuple[str, Any]], kind: str) -> dict[str, Any]:
    """``{name}<kind>`` atoms: `kind` is i (request header), o (response
    header) or e (environ entry)."""
    return {"{%s}%s" % (name.lower(), kind): value for name, value in pairs}


def _unpropagated(name: str) -> logging.Logger:
    # The server's records go to its own handlers only, not the root's too.
    log = logging.getLogger(name)
    log.propagate = False
    return log


def _ours(log: logging.Logger) -> list[logging.Handler]:
    """The handlers a Logger put on `log` (the ones a logging configuration
    adds are left alone)."""
    return [h for h in log.handlers if getattr(h, "_gunicorn", False)]


def _attach(log: logging.Logger, handler: logging.Handler, fmt: logging.Formatter | None = None) -> None:
    handler.setFormatter(fmt)
    handler._gunicorn = True  # type: ignore[attr-defined]
    log.addHandler(handler)


def _file_handlers() -> Iterator[logging.FileHandler]:
    """The FileHandlers of every named logger: what log rotation reopens."""
    for log in loggers():
        for handler in log.handlers:
            if isinstance(handler, logging.FileHandler):
                yield handler


@contextlib.contextmanager
def _holding(handler: logging.Handler) -> Iterator[None]:
    handler.acquire()
    try:
        yield
    finally:
        handler.release()


_CONFIG_ERRORS = (AttributeError, ImportError, ValueError, TypeError)


def _dict_config(config: Any) -> None:
    """`config` laid over CONFIG_DEFAULTS; what logging refuses in it stops
    the start with logging's message."""
    try:
        merged = dict(CONFIG_DEFAULTS)
        merged.update(config)
        dictConfig(merged)
    except _CONFIG_ERRORS as exc:
        raise RuntimeError(str(exc)) from exc


def _json_config(path: str) -> None:
    # A missing file is passed over (unlike an ini file), as by Gunicorn.
    if not os.path.exists(path):
        return
    with open(path) as f:
        try:
            config = json.load(f)
        except ValueError as exc:  # not JSON, or not text
            raise RuntimeError(str(exc)) from exc
    _dict_config(config)


def _ini_config(path: str) -> None:
    if not os.path.exists(path):
        raise RuntimeError("Error: log config '%s' not found" % path)
    # The ini may interpolate %(here)s and %(__file__)s.
    defaults = dict(CONFIG_DEFAULTS, __file__=path, here=os.path.dirname(path))
    fileConfig(path, defaults=defaults, disable_existing_loggers=False)


class Logger:
    """The server's logger over Python logging (see the module's text):
    error records through ``gunicorn.error``, one access line a request
    through ``gunicorn.access``. ``--logger-class`` subclasses override the
    class attributes (formats, atoms_wrapper_class) or the methods."""

    LOG_LEVELS = {  # noqa: RUF012 (read-only, as Gunicorn publishes it)
        name: getattr(logging, name.upper()) for name in ("critical", "error", "warning", "info", "debug")
    }
    loglevel = logging.INFO

    error_fmt = ERROR_FORMAT
    datefmt = DATE_FORMAT
    access_fmt = "%(message)s"
    syslog_fmt = "[%(process)d] %(message)s"

    atoms_wrapper_class = SafeAtoms

    def __init__(self, cfg: Any) -> None:
        self.error_log = _unpropagated("gunicorn.error")
        self.access_log = _unpropagated("gunicorn.access")
        # The error log file that stdout and stderr go to (--capture-output).
        self.logfile: IO[str] | None = None
        self.lock = threading.Lock()
        self.cfg = cfg
        self.setup(cfg)

    def setup(self, cfg: Any) -> None:
        """(Re)build the handlers for `cfg`: at start and on every HUP."""
        # a configuration reload brings a new cfg object: follow it
        self.cfg = cfg
        self._access_log_enabled = self._compute_access_log_enabled()
        self._reset_loggers(cfg)
        if cfg.capture_output and cfg.errorlog != "-":
            self._capture_output()
        self._set_handler(self.error_log, cfg.errorlog, logging.Formatter(self.error_fmt, self.datefmt))
        if cfg.accesslog is not None:
            self._set_handler(self.access_log, cfg.accesslog, fmt=logging.Formatter(self.access_fmt), stream=sys.stdout)
        if cfg.syslog:
            self._set_syslog_handler(self.error_log, cfg, self.syslog_fmt, "error")
            if not cfg.disable_redirect_access_to_syslog:
                self._set_syslog_handler(self.access_log, cfg, self.syslog_fmt, "access")
        # A logging configuration comes last, over the handlers above.
        if cfg.logconfig_dict:
            _dict_config(cfg.logconfig_dict)
        elif cfg.logconfig_json:
            _json_config(cfg.logconfig_json)
        elif cfg.logconfig:
            _ini_config(cfg.logconfig)

    def _level(self, name: str) -> int:
        return self.LOG_LEVELS.get(name.lower(), logging.INFO)

    def _reset_loggers(self, cfg: Any) -> None:
        """Levels from `cfg`, and none of our handlers from a previous
        setup, so that setting up again on HUP does not stack them."""
        self.loglevel = self._level(cfg.loglevel)
        self.error_log.setLevel(self.loglevel)
        self.access_log.setLevel(logging.INFO)
        for log in (self.error_log, self.access_log):
            for handler in _ours(log):
                log.removeHandler(handler)

    def _capture_output(self) -> None:
        """Point stdout and stderr at the error log file: their file
        descriptors, so that C code and child processes write there too."""
        sys.stdout.flush()
        sys.stderr.flush()
        with self.lock:
            if self.logfile is not None:
                self.logfile.close()
            self.logfile = open(self.cfg.errorlog, "a+")
            for fd in (sys.stdout.fileno(), sys.stderr.fileno()):
                os.dup2(self.logfile.fileno(), fd)

    # The error log's levels. Each is a method of its own, as in Gunicorn,
    # so that a record's funcName (%(funcName)s) is the same.

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.error_log.critical(msg, *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.error_log.error(msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.error_log.warning(msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.error_log.info(msg, *args, **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.error_log.debug(msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.error_log.exception(msg, *args, **kwargs)

    def log(self, lvl: int | str, msg: Any, *args: Any, **kwargs: Any) -> None:
        """A record at `lvl`: a number, or a level name (unknown names are
        info)."""
        level = self._level(lvl) if isinstance(lvl, str) else lvl
        self.error_log.log(level, msg, *args, **kwargs)

    def atoms(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: timedelta) -> dict[str, Any]:
        """The values an access-log format can name: Apache's letters (see
        ``--access-logformat``), and ``{name}i``, ``{name}o`` and
        ``{name}e`` for each request header, response header and environ
        entry. `req` is a request with ``headers``, or the headers
        themselves."""
        atoms = {letter: environ.get(key, absent) for letter, (key, absent) in _ENVIRON_ATOMS.items()}
        atoms["l"] = "-"
        atoms["u"] = self._get_user(environ) or "-"
        atoms["t"] = self.now()
        atoms["r"] = "%s %s %s" % (environ["REQUEST_METHOD"], environ["RAW_URI"], environ["SERVER_PROTOCOL"])
        atoms["p"] = "<%s>" % os.getpid()
        atoms.update(_response_atoms(resp))
        atoms.update(_duration_atoms(request_time))
        atoms.update(_named_atoms(_pairs(getattr(req, "headers", req)), "i"))
        atoms.update(_named_atoms(_pairs(resp.headers), "o"))
        atoms.update(_named_atoms(environ.items(), "e"))
        return atoms

    @property
    def access_log_enabled(self) -> bool:
        """Whether access() writes anything (protocol handlers read it to
        skip building atoms). Computed by setup()."""
        if not hasattr(self, "_access_log_enabled"):
            # a subclass whose setup() does not call this one's
            return self._compute_access_log_enabled()
        return self._access_log_enabled

    def _compute_access_log_enabled(self) -> bool:
        cfg = self.cfg
        to_syslog = cfg.syslog and not cfg.disable_redirect_access_to_syslog
        return any((cfg.accesslog, cfg.logconfig, cfg.logconfig_dict, cfg.logconfig_json, to_syslog))

    def access(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: timedelta) -> None:
        """One line for a request, in ``access_log_format`` (Apache's
        combined format with the default)."""
        if not self.access_log_enabled:
            return
        values = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
        try:
            self.access_log.info(self.cfg.access_log_format, values)
        except Exception:
            self.error(traceback.format_exc())

    def now(self) -> str:
        """The time as the Common Log Format writes it."""
        return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")

    def reopen_files(self) -> None:
        """USR1 (log rotation): the captured error log and the files of
        every named logger's FileHandlers are opened again."""
        if self.cfg.capture_output and self.cfg.errorlog != "-":
            self._capture_output()
        for handler in _file_handlers():
            with _holding(handler):
                if handler.stream:
                    handler.close()
                    handler.stream = handler._open()

    def close_on_exec(self) -> None:
        """Keep the log files out of processes the server executes."""
        for handler in _file_handlers():
            with _holding(handler):
                if handler.stream:
                    os.set_inheritable(handler.stream.fileno(), False)

    def _get_gunicorn_handler(self, log: logging.Logger) -> logging.Handler | None:
        return next(iter(_ours(log)), None)

    def _set_handler(
        self,
        log: logging.Logger,
        output: str | None,
        fmt: logging.Formatter,
        stream: IO[str] | None = None,
    ) -> None:
        """Our handler on `log` replaced by one writing to `output`: a file
        name, ``-`` for `stream`, or None for no handler."""
        previous = self._get_gunicorn_handler(log)
        if previous is not None:
            log.handlers.remove(previous)
        if output is None:
            return
        handler = logging.StreamHandler(stream) if output == "-" else self._file_handler(output)
        _attach(log, handler, fmt)

    def _file_handler(self, path: str) -> logging.FileHandler:
        _check_is_writable(path)
        handler = logging.FileHandler(path)
        # Workers that drop privileges must still be able to reopen it; a
        # file such as /dev/null is not ours to chown, and need not be.
        with contextlib.suppress(OSError):
            os.chown(handler.baseFilename, self.cfg.user, self.cfg.group)
        return handler

    def _set_syslog_handler(self, log: logging.Logger, cfg: Any, fmt: str, name: str) -> None:
        """A handler on `log` sending to ``--log-syslog-to``, each message
        tagged ``gunicorn.<prefix>.<name>:``."""
        prefix = cfg.syslog_prefix or cfg.proc_name.replace(":", ".")
        try:
            facility = SYSLOG_FACILITIES[cfg.syslog_facility.lower()]
        except KeyError as exc:
            raise RuntimeError("unknown facility name") from exc
        socktype, address = parse_syslog_address(cfg.syslog_addr)
        handler = logging.handlers.SysLogHandler(address=address, facility=facility, socktype=socktype)
        _attach(log, handler, logging.Formatter("gunicorn.%s.%s: %s" % (prefix, name, fmt)))

    def _get_user(self, environ: Mapping[str, Any]) -> str | None:
        """The user name of Basic authentication, else None. Credentials
        that do not decode are logged at debug level."""
        authorization = environ.get("HTTP_AUTHORIZATION")
        if not authorization or not authorization.lower().startswith("basic"):
            return None
        scheme_and_token = authorization.split(" ", 1)
        if len(scheme_and_token) != 2:
            return None
        try:
            credentials = base64.b64decode(scheme_and_token[1].strip().encode("utf-8"))
            return credentials.split(b":", 1)[0].decode("utf-8")
        except (TypeError, binascii.Error, UnicodeDecodeError) as exc:
            self.debug("Couldn't get username: %s", exc)
            return None


class ErrorLogHandler(logging.Handler):
    """Records of the ``gunicorn.error`` logger into ferrocorn's error log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from ferrocorn._ferrocorn import write_error_log

            write_error_log(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)


class AccessLogHandler(logging.Handler):
    """Lines of the ``gunicorn.access`` logger into ferrocorn's access log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from ferrocorn._ferrocorn import write_access_log

            write_access_log(self.format(record))
        except Exception:
            self.handleError(record)


def _count(level: str) -> None:
    from ferrocorn._ferrocorn import count_log_metric

    count_log_metric(level)


class BridgeLogger(Logger):
    """The ``log`` of server hooks when ferrocorn writes the logs itself:
    Gunicorn's Logger API over the ``gunicorn.error`` / ``gunicorn.access``
    loggers, whose handlers write into ferrocorn's Rust logs."""

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg
        self._access_log_enabled = bool(cfg.accesslog)
        self._reset_loggers(cfg)
        _attach(self.error_log, ErrorLogHandler())
        if cfg.accesslog is not None or (cfg.syslog and not cfg.disable_redirect_access_to_syslog):
            _attach(self.access_log, AccessLogHandler())

    # Gunicorn's Statsd logger counts these calls (gunicorn.log.<level>).
    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        Logger.critical(self, msg, *args, **kwargs)
        _count("critical")

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        Logger.error(self, msg, *args, **kwargs)
        _count("error")

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        Logger.warning(self, msg, *args, **kwargs)
        _count("warning")

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        Logger.exception(self, msg, *args, **kwargs)
        _count("exception")

    def reopen_files(self) -> None:
        from ferrocorn._ferrocorn import reopen_logs

        reopen_logs()

    def close_on_exec(self) -> None:
        """Nothing to do: the Rust logs are opened close-on-exec."""


def create(cfg: Any, python_logging: bool, custom_class: bool) -> Logger:
    """The process's logger: the configured class (a class object or a
    dotted name) when it is not one of Gunicorn's own, else Gunicorn's
    Logger when Python logging is asked for, else the bridge."""
    if not python_logging:
        return BridgeLogger(cfg)
    cls = Logger
    if custom_class:
        cls = cfg.logger_class
        if isinstance(cls, str):
            cls = _load_class(cls)
    if hasattr(cls, "install"):
        cls.install()
    return cls(cfg)


def _load_class(uri: str) -> type:
    module, _, name = uri.rpartition(".")
    if not module:
        raise RuntimeError("class uri %r invalid or not found: give it as module.Class" % uri)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RuntimeError("class uri %r invalid or not found: \n\n[%s]" % (uri, e)) from e
