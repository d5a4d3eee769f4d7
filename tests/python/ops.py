"""Helpers for the operations tests: reading the metrics page, talking to
the control socket with ferrocornc (or Gunicorn's gunicornc)."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

from helpers import free_port, wait_for

BIN = os.path.dirname(sys.executable)


def metrics_args():
    """--metrics-bind on a free port: (args, port)."""
    port = free_port()
    return ["--metrics-bind", "127.0.0.1:%d" % port], port


def scrape_text(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def parse(text):
    """{series: value} of a Prometheus text page; series keep their labels
    as written, e.g. 'ferrocorn_requests_total{code="2xx"}'."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        out[series] = float(value)
    return out


def scrape(port):
    return parse(scrape_text(port)[1])


def wait_metrics(port, timeout=10.0):
    """The page, once the endpoint answers (it opens after the first fork)."""

    def ready():
        try:
            return scrape(port)
        except (OSError, urllib.error.URLError):
            return None

    return wait_for(ready, timeout=timeout, what="the metrics endpoint")


def wait_metric(port, series, predicate, timeout=10.0):
    """Scrapes until `predicate(value)` holds for `series`; returns the page."""

    def check():
        page = scrape(port)
        return page if predicate(page.get(series)) else None

    return wait_for(check, timeout=timeout, what="%s to match" % series)


def ctl(socket_path, *words, tool="ferrocornc", as_json=False, timeout=30):
    """Runs a control client with the command as words; CompletedProcess."""
    argv = [os.path.join(BIN, tool), "-s", socket_path]
    if as_json:
        argv.append("-j")
    if tool == "gunicornc":
        argv += ["-c", " ".join(words)]
    else:
        argv += list(words)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def ctl_json(socket_path, *words, tool="ferrocornc"):
    r = ctl(socket_path, *words, tool=tool, as_json=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def worker_pids(socket_path):
    return [w["pid"] for w in ctl_json(socket_path, "show", "workers")["workers"]]
