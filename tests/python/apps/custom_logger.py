"""A logger class written the way Gunicorn's documentation describes one
(a class taking the config, with the error-log methods and access()), and
apps that log or print the way real applications do."""

import logging
import os
import sys


class FileLogger:
    def __init__(self, cfg):
        self.cfg = cfg
        self.path = os.environ["CUSTOM_LOG"]
        self._write("init accesslog=%s loglevel=%s" % (cfg.accesslog, cfg.loglevel))

    def setup(self, cfg):
        self.cfg = cfg
        self._write("setup workers=%s" % cfg.workers)

    def _write(self, text):
        with open(self.path, "a") as f:
            f.write(text + "\n")

    def critical(self, msg, *args, **kwargs):
        self._write("critical " + (msg % args if args else msg))

    def error(self, msg, *args, **kwargs):
        self._write("error " + (msg % args if args else msg))

    def warning(self, msg, *args, **kwargs):
        self._write("warning " + (msg % args if args else msg))

    def info(self, msg, *args, **kwargs):
        self._write("info " + (msg % args if args else msg))

    def debug(self, msg, *args, **kwargs):
        self._write("debug " + (msg % args if args else msg))

    def exception(self, msg, *args, **kwargs):
        self._write("exception " + (msg % args if args else msg))

    def access(self, resp, req, environ, request_time):
        self._write("access %s %s %s %.3f" % (req.method, req.path, resp.status_code, request_time.total_seconds()))

    def reopen_files(self):
        self._write("reopen_files")

    def close_on_exec(self):
        pass


def logs_to_gunicorn_error(environ, start_response):
    log = logging.getLogger("gunicorn.error")
    log.warning("from the app via gunicorn.error")
    log.info("hidden info")
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def prints(environ, start_response):
    print("printed to stdout", flush=True)
    print("printed to stderr", file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
