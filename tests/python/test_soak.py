"""A soak: a million requests per worker type (half on kept-alive
connections, half one connection per request), after which the workers'
memory has grown by less than 5% and their open descriptors are back where
they started. wrk (Debian's) drives the load."""

import os
import re
import shutil
import subprocess

import pytest
from helpers import rss_kib, wait_for

WRK = shutil.which("wrk")
TOTAL = 1_000_000
THREADS = 2


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wrk(port, requests, close):
    """Runs wrk in 10-second rounds until `requests` have been answered."""
    done = 0
    while done < requests:
        argv = [WRK, "-t%d" % THREADS, "-c32", "-d10s"]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append("http://127.0.0.1:%d/" % port)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        # Every response must have been a 200 on a sound connection (wrk
        # reports the others).
        assert "Non-2xx" not in out.stdout and "Socket errors" not in out.stdout, out.stdout
        match = re.search(r"(\d+) requests in", out.stdout)
        assert match, out.stdout
        done += int(match.group(1))
    return done


@pytest.mark.skipif(WRK is None, reason="wrk is not installed (make ci-deps installs it)")
@pytest.mark.parametrize("kind", ["sync", "gthread", "asgi"])
def test_a_million_requests_leave_memory_and_descriptors_as_they_were(server, kind):
    app = "hostile_app:asgi" if kind == "asgi" else "hostile_app:wsgi"
    s = server("-k", kind, "-w", "1", "--keep-alive", "5", app)
    (worker,) = s.wait_workers(1)
    # Warm up (allocator pools, caches, interned objects), then measure.
    wrk(s.port, 1, close=False)
    wrk(s.port, 1, close=True)
    # The warm-up's lingering connections are gone before the baseline.
    fds = wait_for(lambda: (lambda n: n if n == open_fds(worker) else None)(open_fds(worker)), timeout=5)
    rss = rss_kib(worker)
    if kind == "sync":
        wrk(s.port, TOTAL, close=True)
    else:
        wrk(s.port, TOTAL // 2, close=False)
        wrk(s.port, TOTAL // 2, close=True)
    assert s.workers() == [worker], "the worker served everything without being replaced"
    # Lingering and kept-alive connections close within seconds.
    wait_for(lambda: open_fds(worker) <= fds, timeout=15, what="descriptors back to %d" % fds)
    grown = (rss_kib(worker) - rss) / rss
    assert grown < 0.05, "RSS %d KiB -> %d KiB" % (rss, rss_kib(worker))
