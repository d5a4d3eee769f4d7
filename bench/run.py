#!/usr/bin/env python3
"""Side-by-side HTTP benchmarks: ferrocorn and its peers, one run, one machine.

    python3 bench/run.py --setup            # once: bench/.venv with the peers and this checkout
    python3 bench/run.py                    # every scenario
    python3 bench/run.py --scenario sync-hello --duration 10 --markdown out.md

Every server gets the same app (bench/apps.py), the same load tool (wrk,
from Debian: apt-get install wrk) and the same load, one server at a time,
with a warm-up run first. Results print as a table with ratios and are saved
as JSON in bench/results/. Speed is measured here, never asserted in tests.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
BIN = os.path.join(VENV, "bin")
PEERS = [
    "gunicorn[http2]==27.0.1",
    "granian",
    "uvicorn[standard]",
    "fastapi",
    "gevent>=24.10.1",
    "packaging",
    "tornado",
    "aiohttp",
    "flask",
    "django",
]


# The ASGI peers, each in its fastest documented configuration for one
# worker; uvicorn's access log is off as the others' is by default.
def asgi_servers(app, ws=False):
    return [
        ("ferrocorn -k asgi", "{bin}/ferrocorn -k asgi -w 1 -b 127.0.0.1:{port} apps:%s" % app, False),
        (
            "granian --interface asgi --workers 1",
            "{bin}/granian --interface asgi --workers 1 --host 127.0.0.1 --port {port} apps:%s" % app,
            True,
        ),
        (
            "uvicorn (httptools, uvloop)",
            "{bin}/uvicorn --workers 1 --http httptools --loop uvloop --no-access-log "
            "--host 127.0.0.1 --port {port} apps:%s" % app,
            False,
        ),
        (
            "gunicorn -k asgi",
            "{bin}/gunicorn -k asgi -w 1 --no-control-socket -b 127.0.0.1:{port} apps:%s" % app,
            False,
        ),
    ]


# name -> scenario. A server is (label, command template with {port} and
# {bin}, is_baseline); ratios are against the baseline row.
SCENARIOS = {
    "sync-hello": {
        "what": "Hello-world WSGI, 1 worker, sync worker (Connection: close), wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "servers": [
            ("ferrocorn -k sync -w 1", "{bin}/ferrocorn -k sync -w 1 -b 127.0.0.1:{port} apps:hello", False),
            (
                "gunicorn -k sync -w 1",
                "{bin}/gunicorn -k sync -w 1 --no-control-socket -b 127.0.0.1:{port} apps:hello",
                True,
            ),
        ],
    },
    "gthread-hello": {
        "what": "Hello-world WSGI, 1 worker, keep-alive, wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "servers": [
            (
                "ferrocorn -k gthread --threads 1",
                "{bin}/ferrocorn -k gthread --threads 1 -w 1 -b 127.0.0.1:{port} apps:hello",
                False,
            ),
            (
                "ferrocorn -k gthread --threads 4",
                "{bin}/ferrocorn -k gthread --threads 4 -w 1 -b 127.0.0.1:{port} apps:hello",
                False,
            ),
            (
                "ferrocorn -k gthread --threads 8",
                "{bin}/ferrocorn -k gthread --threads 8 -w 1 -b 127.0.0.1:{port} apps:hello",
                False,
            ),
            (
                "granian --interface wsgi --workers 1 --blocking-threads 1",
                "{bin}/granian --interface wsgi --workers 1 --blocking-threads 1 --host 127.0.0.1 --port {port} apps:hello",
                True,
            ),
            (
                "gunicorn -k gthread --threads 4",
                "{bin}/gunicorn -k gthread --threads 4 -w 1 --no-control-socket -b 127.0.0.1:{port} apps:hello",
                False,
            ),
        ],
    },
    "gevent-hello": {
        "what": "Hello-world WSGI, 1 worker, gevent, keep-alive, wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "servers": [
            ("ferrocorn -k gevent", "{bin}/ferrocorn -k gevent -w 1 -b 127.0.0.1:{port} apps:hello", False),
            (
                "gunicorn -k gevent",
                "{bin}/gunicorn -k gevent -w 1 --no-control-socket -b 127.0.0.1:{port} apps:hello",
                True,
            ),
        ],
    },
    "gevent-sleep": {
        "what": "Long I/O under gevent: the app makes a patched 10 ms wait per request (time.sleep yields to the hub), "
        "1 worker, wrk -t1 -c256 (ideal: 25,600 req/s)",
        "threads": 1,
        "connections": 256,
        "ideal": 25600,
        "servers": [
            ("ferrocorn -k gevent", "{bin}/ferrocorn -k gevent -w 1 -b 127.0.0.1:{port} apps:sleep10", False),
            (
                "gunicorn -k gevent",
                "{bin}/gunicorn -k gevent -w 1 --no-control-socket -b 127.0.0.1:{port} apps:sleep10",
                True,
            ),
        ],
    },
    "aiohttp-worker": {
        "what": "aiohttp hello world under aiohttp's GunicornWebWorker, 1 worker, wrk -t1 -c64: the same Python "
        "worker class under each master",
        "threads": 1,
        "connections": 64,
        "servers": [
            (
                "ferrocorn -k aiohttp.GunicornWebWorker",
                "{bin}/ferrocorn -k aiohttp.GunicornWebWorker -w 1 -b 127.0.0.1:{port} apps:aiohttp_hello",
                False,
            ),
            (
                "gunicorn -k aiohttp.GunicornWebWorker",
                "{bin}/gunicorn -k aiohttp.GunicornWebWorker -w 1 --no-control-socket -b 127.0.0.1:{port} "
                "apps:aiohttp_hello",
                True,
            ),
        ],
    },
    "tornado-hello": {
        "what": "Tornado RequestHandler hello world, 1 worker, keep-alive, wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "servers": [
            ("ferrocorn -k tornado", "{bin}/ferrocorn -k tornado -w 1 -b 127.0.0.1:{port} apps:tornado_hello", False),
            (
                "gunicorn -k tornado",
                "{bin}/gunicorn -k tornado -w 1 --no-control-socket -b 127.0.0.1:{port} apps:tornado_hello",
                True,
            ),
        ],
    },
    "tornado-ws-echo": {
        "what": "Tornado WebSocketHandler echo of 32-byte text messages, 1 worker, 64 connections each waiting for "
        "its echo (bench/wsload.py, one Python process, so the client shares the machine)",
        "threads": 1,
        "connections": 64,
        "load": "ws",
        "path": "/ws",
        "unit": "messages/s",
        "servers": [
            ("ferrocorn -k tornado", "{bin}/ferrocorn -k tornado -w 1 -b 127.0.0.1:{port} apps:tornado_hello", False),
            (
                "gunicorn -k tornado",
                "{bin}/gunicorn -k tornado -w 1 --no-control-socket -b 127.0.0.1:{port} apps:tornado_hello",
                True,
            ),
        ],
    },
    "gthread-sleep": {
        "what": "Long I/O: the app sleeps 10 ms per request, 1 worker, --threads 32, wrk -t1 -c256 (ideal: 3,200 req/s)",
        "threads": 1,
        "connections": 256,
        "ideal": 3200,
        "servers": [
            (
                "ferrocorn -k gthread --threads 32",
                "{bin}/ferrocorn -k gthread --threads 32 -w 1 -b 127.0.0.1:{port} apps:sleep10",
                False,
            ),
            (
                "gunicorn -k gthread --threads 32",
                "{bin}/gunicorn -k gthread --threads 32 -w 1 --no-control-socket -b 127.0.0.1:{port} apps:sleep10",
                True,
            ),
        ],
    },
    "asgi-hello": {
        "what": "Hello-world ASGI, 1 worker, keep-alive, wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "servers": asgi_servers("asgi_hello"),
    },
    "asgi-fastapi": {
        "what": "FastAPI JSON endpoint (a small dict and list), 1 worker, wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "servers": asgi_servers("fastapi_json"),
    },
    "asgi-echo": {
        "what": "10 KB POST echoed back by a raw ASGI app, 1 worker, wrk -t1 -c64",
        "threads": 1,
        "connections": 64,
        "script": "post10k.lua",
        "servers": asgi_servers("asgi_echo"),
    },
    # What the access log costs: the gthread hello world with no access log,
    # Gunicorn's default format and the JSON lines, written to a file.
    "access-log": {
        "what": "Access-log cost: hello-world WSGI, 1 worker, gthread --threads 1, keep-alive, wrk -t1 -c64; "
        "the log written to a file (FILE: in /tmp) or to /dev/null",
        "threads": 1,
        "connections": 64,
        "servers": [
            (
                "ferrocorn, no access log",
                "{bin}/ferrocorn -k gthread --threads 1 -w 1 -b 127.0.0.1:{port} apps:hello",
                True,
            ),
            (
                "ferrocorn --access-logfile FILE (Gunicorn's format)",
                "{bin}/ferrocorn -k gthread --threads 1 -w 1 --access-logfile {tmp}/access.log "
                "-b 127.0.0.1:{port} apps:hello",
                False,
            ),
            (
                "ferrocorn --access-logfile FILE --access-log-json",
                "{bin}/ferrocorn -k gthread --threads 1 -w 1 --access-logfile {tmp}/access.log --access-log-json "
                "-b 127.0.0.1:{port} apps:hello",
                False,
            ),
            # the same lines into /dev/null: what rendering them costs,
            # without the write to a file
            (
                "ferrocorn --access-logfile /dev/null",
                "{bin}/ferrocorn -k gthread --threads 1 -w 1 --access-logfile /dev/null -b 127.0.0.1:{port} apps:hello",
                False,
            ),
            (
                "ferrocorn --access-logfile /dev/null --access-log-json",
                "{bin}/ferrocorn -k gthread --threads 1 -w 1 --access-logfile /dev/null --access-log-json "
                "-b 127.0.0.1:{port} apps:hello",
                False,
            ),
            (
                "gunicorn --access-logfile FILE (Gunicorn's format)",
                "{bin}/gunicorn -k gthread --threads 1 -w 1 --no-control-socket --access-logfile {tmp}/access.log "
                "-b 127.0.0.1:{port} apps:hello",
                False,
            ),
        ],
    },
    "ws-echo": {
        "what": "WebSocket echo of 32-byte text messages, 1 worker, 64 connections each waiting for its echo "
        "(bench/wsload.py, one Python process, so the client shares the machine)",
        "threads": 1,
        "connections": 64,
        "load": "ws",
        "unit": "messages/s",
        "servers": [srv for srv in asgi_servers("asgi_ws_echo") if not srv[0].startswith("gunicorn")]
        + [
            (
                "gunicorn -k asgi",
                "{bin}/gunicorn -k asgi -w 1 --no-control-socket -b 127.0.0.1:{port} apps:asgi_ws_echo",
                False,
            )
        ],
    },
}


# HTTP/2: h2load (nghttp2-client, from Debian) instead of wrk, over TLS
# ({cert}/{key}: a self-signed pair made for the run) or h2c with prior
# knowledge. Gunicorn 27 serves h2 on gthread, asgi and gevent (with its http2
# extra: the h2 package), Granian with --http 2.
def h2_servers(interface, app, tls, threads=4):
    ours = "--http-protocols h2 " + (
        "--certfile {cert} --keyfile {key}" if tls else "--http2-cleartext prior-knowledge"
    )
    granian = "--http 2" + (" --ssl-certificate {cert} --ssl-keyfile {key}" if tls else "")
    if interface == "wsgi":
        worker = "-k gthread --threads %d" % threads
        granian += " --blocking-threads %d" % threads
    else:
        worker = "-k asgi"
    return [
        (
            "ferrocorn %s" % worker,
            "{bin}/ferrocorn %s -w 1 %s -b 127.0.0.1:{port} apps:%s" % (worker, ours, app),
            False,
        ),
        (
            "granian --interface %s %s" % (interface, re.sub(r" --ssl-\S+ \S+", "", granian)),
            "{bin}/granian --interface %s --workers 1 %s --host 127.0.0.1 --port {port} apps:%s"
            % (interface, granian, app),
            True,
        ),
        (
            "gunicorn %s" % worker,
            "{bin}/gunicorn %s -w 1 --no-control-socket %s -b 127.0.0.1:{port} apps:%s" % (worker, ours, app),
            False,
        ),
    ]


H2_LOAD = "h2load -c16 -m100 (16 connections, 100 streams each)"
SCENARIOS.update(
    {
        "h2-hello": {
            "what": "Hello-world WSGI over HTTP/2 with TLS (ALPN), 1 worker, " + H2_LOAD,
            "load": "h2",
            "scheme": "https",
            "connections": 16,
            "streams": 100,
            "servers": h2_servers("wsgi", "hello", tls=True),
        },
        "h2-asgi-hello": {
            "what": "Hello-world ASGI over HTTP/2 with TLS (ALPN), 1 worker, " + H2_LOAD,
            "load": "h2",
            "scheme": "https",
            "connections": 16,
            "streams": 100,
            "servers": h2_servers("asgi", "asgi_hello", tls=True),
        },
        "h2c-hello": {
            "what": "Hello-world WSGI over cleartext HTTP/2 (prior knowledge), 1 worker, " + H2_LOAD,
            "load": "h2",
            "scheme": "http",
            "connections": 16,
            "streams": 100,
            "servers": h2_servers("wsgi", "hello", tls=False),
        },
        "h2c-asgi-hello": {
            "what": "Hello-world ASGI over cleartext HTTP/2 (prior knowledge), 1 worker, " + H2_LOAD,
            "load": "h2",
            "scheme": "http",
            "connections": 16,
            "streams": 100,
            "servers": h2_servers("asgi", "asgi_hello", tls=False),
        },
        "h2c-sleep": {
            "what": "The app waits 10 ms per request; 100 streams at once on one connection (h2load -c1 -m100), "
            "cleartext HTTP/2, 1 worker, 100 threads: concurrent streams take about one wait each "
            "(p50 column: mean time per request; ideal: 10,000 req/s)",
            "load": "h2",
            "scheme": "http",
            "connections": 1,
            "streams": 100,
            "ideal": 10000,
            "servers": h2_servers("wsgi", "sleep10", tls=False, threads=100),
        },
    }
)


# HTTP/2 on the gevent worker: Gunicorn 27's gevent worker serves h2 too;
# Granian has no green worker.
def h2_gevent_servers(app, tls):
    ours = "--http-protocols h2 " + (
        "--certfile {cert} --keyfile {key}" if tls else "--http2-cleartext prior-knowledge"
    )
    return [
        ("ferrocorn -k gevent", "{bin}/ferrocorn -k gevent -w 1 %s -b 127.0.0.1:{port} apps:%s" % (ours, app), False),
        (
            "gunicorn -k gevent",
            "{bin}/gunicorn -k gevent -w 1 --no-control-socket %s -b 127.0.0.1:{port} apps:%s" % (ours, app),
            True,
        ),
    ]


SCENARIOS.update(
    {
        "h2-gevent-hello": {
            "what": "Hello-world WSGI over HTTP/2 with TLS (ALPN), 1 worker, gevent, " + H2_LOAD,
            "load": "h2",
            "scheme": "https",
            "connections": 16,
            "streams": 100,
            "servers": h2_gevent_servers("hello", tls=True),
        },
        "h2c-gevent-sleep": {
            "what": "The app makes a patched 10 ms wait per request; 100 streams at once on one connection "
            "(h2load -c1 -m100), cleartext HTTP/2, 1 worker, gevent: concurrent streams take about one wait each "
            "(ideal: 10,000 req/s)",
            "load": "h2",
            "scheme": "http",
            "connections": 1,
            "streams": 100,
            "ideal": 10000,
            "servers": h2_gevent_servers("sleep10", tls=False),
        },
    }
)


# TLS on HTTP/1.1 (wrk's https, OpenSSL on the client side): ferrocorn's
# rustls against Granian's rustls and Gunicorn's Python ssl, with the same
# ECDSA P-256 certificate.
def tls_servers(extra=""):
    return [
        (
            "ferrocorn -k gthread --threads 4",
            "{bin}/ferrocorn -k gthread --threads 4 -w 1 %s--certfile {cert} --keyfile {key} "
            "-b 127.0.0.1:{port} apps:hello" % extra,
            False,
        ),
        (
            "granian --interface wsgi --blocking-threads 1",
            "{bin}/granian --interface wsgi --workers 1 --blocking-threads 1 --ssl-certificate {cert} "
            "--ssl-keyfile {key} --host 127.0.0.1 --port {port} apps:hello",
            True,
        ),
        (
            "gunicorn -k gthread --threads 4",
            "{bin}/gunicorn -k gthread --threads 4 -w 1 --no-control-socket %s--certfile {cert} --keyfile {key} "
            "-b 127.0.0.1:{port} apps:hello" % extra,
            False,
        ),
    ]


SCENARIOS.update(
    {
        "tls-hello": {
            "what": "Hello-world WSGI over HTTPS (TLS 1.3, ECDSA P-256), keep-alive, 1 worker, wrk -t1 -c64",
            "threads": 1,
            "connections": 64,
            "scheme": "https",
            "servers": tls_servers(),
        },
        "tls-new-conn": {
            "what": "New TLS connections: one request per connection (Connection: close), 1 worker, wrk -t1 -c64",
            "threads": 1,
            "connections": 64,
            "scheme": "https",
            "header": "Connection: close",
            "servers": tls_servers(),
        },
    }
)


def fronted(kind, extra=""):
    """The servers behind nginx: ferrocorn and Gunicorn over uwsgi
    (uwsgi_pass), and ferrocorn over HTTP (proxy_pass, kept-alive upstream
    connections), all with the same app. A template with `--protocol
    uwsgi` gets uwsgi_pass."""
    app = "apps:asgi_hello" if kind == "asgi" else "apps:hello"
    args = "-k %s %s-w 1" % (kind, extra)
    return [
        (
            "nginx uwsgi -> ferrocorn %s" % args,
            "{bin}/ferrocorn %s --protocol uwsgi -b 127.0.0.1:{port} %s" % (args, app),
            False,
        ),
        (
            "nginx http -> ferrocorn %s" % args,
            "{bin}/ferrocorn %s -b 127.0.0.1:{port} %s" % (args, app),
            False,
        ),
        (
            "nginx uwsgi -> gunicorn %s" % args,
            "{bin}/gunicorn %s --no-control-socket --protocol uwsgi -b 127.0.0.1:{port} %s" % (args, app),
            True,
        ),
    ]


SCENARIOS.update(
    {
        "uwsgi-gthread": {
            "what": "Hello-world WSGI behind nginx (1 nginx worker), 1 server worker, wrk -t1 -c64 to nginx",
            "threads": 1,
            "connections": 64,
            "front": "nginx",
            "servers": fronted("gthread", "--threads 4 "),
        },
        "uwsgi-asgi": {
            "what": "Hello-world ASGI behind nginx (1 nginx worker), 1 server worker, wrk -t1 -c64 to nginx",
            "threads": 1,
            "connections": 64,
            "front": "nginx",
            "servers": fronted("asgi"),
        },
    }
)


def real_wsgi(app, workers):
    """The WSGI servers for a real-framework app at `workers` workers: each
    peer's fastest set-up for it on this machine."""
    w = "-w %d" % workers
    return [
        (
            "ferrocorn -k gthread --threads 1 %s" % w,
            "{bin}/ferrocorn -k gthread --threads 1 %s -b 127.0.0.1:{port} real_apps:%s" % (w, app),
            False,
        ),
        (
            "ferrocorn -k gthread --threads 4 %s" % w,
            "{bin}/ferrocorn -k gthread --threads 4 %s -b 127.0.0.1:{port} real_apps:%s" % (w, app),
            False,
        ),
        (
            "granian --interface wsgi --blocking-threads 1 --workers %d" % workers,
            "{bin}/granian --interface wsgi --workers %d --blocking-threads 1 --host 127.0.0.1 --port {port} "
            "real_apps:%s" % (workers, app),
            True,
        ),
        (
            "gunicorn -k gthread --threads 4 %s" % w,
            "{bin}/gunicorn -k gthread --threads 4 %s --no-control-socket -b 127.0.0.1:{port} real_apps:%s" % (w, app),
            False,
        ),
    ]


def real_asgi(app, workers):
    w = "-w %d" % workers
    return [
        ("ferrocorn -k asgi %s" % w, "{bin}/ferrocorn -k asgi %s -b 127.0.0.1:{port} real_apps:%s" % (w, app), False),
        (
            "granian --interface asgi --workers %d" % workers,
            "{bin}/granian --interface asgi --workers %d --host 127.0.0.1 --port {port} real_apps:%s" % (workers, app),
            True,
        ),
        (
            "uvicorn --workers %d" % workers,
            "{bin}/uvicorn --workers %d --log-level warning --no-access-log --host 127.0.0.1 --port {port} "
            "real_apps:%s" % (workers, app),
            False,
        ),
        (
            "gunicorn -k asgi %s" % w,
            "{bin}/gunicorn -k asgi %s --no-control-socket -b 127.0.0.1:{port} real_apps:%s" % (w, app),
            False,
        ),
    ]


# Real applications (issue 15): the same JSON endpoint in each framework, at
# one worker and at one per core.
for _w in (1, os.cpu_count() or 1):
    for _name, _what, _servers, _path in (
        ("flask", "Flask JSON endpoint", real_wsgi("flask_app", _w), "/users/42"),
        ("django", "Django JSON endpoint (CommonMiddleware, no database)", real_wsgi("django_wsgi", _w), "/users/42"),
        ("django-sqlite", "Django, one SQLite query per request", real_wsgi("django_wsgi", _w), "/db/users/42"),
        ("django-asgi", "Django ASGI JSON endpoint (a sync view)", real_asgi("django_asgi", _w), "/users/42"),
        ("fastapi", "FastAPI JSON endpoint (a path parameter)", real_asgi("fastapi_app", _w), "/users/42"),
    ):
        SCENARIOS["%s-w%d" % (_name, _w)] = {
            "what": "%s, %d worker%s, keep-alive, wrk -t1 -c64" % (_what, _w, "s" if _w > 1 else ""),
            "threads": 1,
            "connections": 64,
            "path": _path,
            "servers": _servers,
        }

# The same apps at the same load for every server (issue 15: "never worse
# p99 than Granian at the same load"): each of the 64 connections pauses
# between a response and its next request (paced.lua), which offers at most
# 64 / (pause + latency) requests a second: 16 ms gave about 3,700 here,
# below every server's capacity but Gunicorn's; 10 ms 5,000 to 5,800, near
# ferrocorn's and Granian's at one worker. The req/s column shows whether a
# server kept up; latencies compare only between servers that did.
for _name, _what, _servers, _path in (
    ("flask", "Flask JSON endpoint", real_wsgi("flask_app", 1), "/users/42"),
    ("django", "Django JSON endpoint (CommonMiddleware, no database)", real_wsgi("django_wsgi", 1), "/users/42"),
    ("fastapi", "FastAPI JSON endpoint (a path parameter)", real_asgi("fastapi_app", 1), "/users/42"),
):
    for _pause in (16, 10):
        SCENARIOS["%s-w1-paced%d" % (_name, _pause)] = {
            "what": "%s, 1 worker, keep-alive, wrk -t1 -c64, each connection pausing %d ms between requests"
            % (_what, _pause),
            "threads": 1,
            "connections": 64,
            "path": _path,
            "script": "paced.lua",
            "script_args": [_pause],
            "servers": _servers,
        }

# The sync worker on a real app (issue 15): a connection per request, as
# Gunicorn's sync worker answers, so loopback connection set-up by the load
# tool caps both servers' throughput; the per CPU-second column is the one
# that compares them.
SCENARIOS["django-sync"] = {
    "what": "Django JSON endpoint (CommonMiddleware, no database), 1 worker, sync worker (Connection: close), "
    "wrk -t1 -c64",
    "threads": 1,
    "connections": 64,
    "path": "/users/42",
    "servers": [
        (
            "ferrocorn -k sync -w 1",
            "{bin}/ferrocorn -k sync -w 1 -b 127.0.0.1:{port} real_apps:django_wsgi",
            False,
        ),
        (
            "gunicorn -k sync -w 1",
            "{bin}/gunicorn -k sync -w 1 --no-control-socket -b 127.0.0.1:{port} real_apps:django_wsgi",
            True,
        ),
    ],
}

NGINX_CONF = """
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi; scgi_temp_path scgi;
    upstream app { server 127.0.0.1:%(upstream)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(port)d;
        location / { %(pass)s }
    }
}
"""
UWSGI_PASS = "include /etc/nginx/uwsgi_params; uwsgi_pass app;"
HTTP_PASS = (
    'proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_pass http://app;'
)


def start_nginx(upstream, uwsgi, directory):
    """nginx on a port of its own in front of `upstream`; returns (proc, port)."""
    if not shutil.which("nginx"):
        sys.exit("nginx is needed for the uwsgi scenarios: apt-get install nginx")
    port = free_port()
    os.makedirs(os.path.join(directory, "logs"), exist_ok=True)
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {"upstream": upstream, "port": port, "pass": UWSGI_PASS if uwsgi else HTTP_PASS})
    settings = "daemon off; pid %s/nginx.pid; error_log %s/error.log;" % (directory, directory)
    proc = subprocess.Popen(
        ["nginx", "-p", directory, "-c", conf, "-g", settings], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(port, proc)
    return proc, port


# Idle TLS connections: the worker's memory per connection.
TLS_IDLE_SERVERS = [
    (
        "ferrocorn -k gthread --threads 4",
        "{bin}/ferrocorn -k gthread --threads 4 -w 1 --worker-connections 10100 --keep-alive 300 "
        "--certfile {cert} --keyfile {key} -b 127.0.0.1:{port} apps:hello",
    ),
    (
        "gunicorn -k gthread --threads 4",
        "{bin}/gunicorn -k gthread --threads 4 -w 1 --worker-connections 10100 --keep-alive 300 "
        "--no-control-socket --certfile {cert} --keyfile {key} -b 127.0.0.1:{port} apps:hello",
    ),
]


def tls_pair():
    """A self-signed certificate and PKCS#8 key for the TLS scenarios."""
    d = os.path.join(HERE, "results", "tls")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    if not os.path.exists(cert):
        os.makedirs(d, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost"],
            check=True, capture_output=True,
        )  # fmt: skip
    return cert, key


def parse_h2load(out):
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    mean_ms = None
    if mean:
        value, unit = float(mean.group(1)), mean.group(2)
        mean_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    failed = int(done.group(2)) + int(done.group(3)) if done else 0
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        # h2load reports the mean, not percentiles: shown in the p50 column.
        "p50_ms": mean_ms,
        "p99_ms": None,
        "errors": "failed %d" % failed if failed else "",
        "non2xx": sum(int(c) for c in codes.groups()[1:]) if codes else 0,
    }


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).split("\n")[0].split(" Copyright")[0].strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def setup():
    if not os.path.exists(BIN):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    pip = [os.path.join(BIN, "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call(pip + PEERS)
    subprocess.check_call(pip + ["--force-reinstall", "--no-deps", ROOT])


def process_tree_ticks(pid):
    """CPU ticks (user+system) used so far by pid and its children."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total


def wait_listening(port, proc, timeout=30, ok_exits=()):
    """Until the port answers; `proc` exiting is an error unless with one
    of `ok_exits` (a daemonizing launcher exits 0)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None and proc.returncode not in ok_exits:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen")


def wait_settled(proc, timeout=15.0, every=0.25):
    """Until the server's processes stop using the processor: every
    worker has loaded the app. A worker still importing takes no
    connections, so the load tool's keep-alive connections would all stay
    with the first worker ready."""
    deadline = time.time() + timeout
    last = process_tree_ticks(proc.pid)
    quiet = 0
    while quiet < 2 and time.time() < deadline:
        time.sleep(every)
        now = process_tree_ticks(proc.pid)
        quiet = quiet + 1 if now - last <= 1 else 0
        last = now


def parse_wrk(out):
    def latency(pct):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
        if not m:
            return None
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"(?:Requests|messages)/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "errors": errors.group(1).strip() if errors else "",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def stop_server(proc):
    """TERM the server under test and wait for it (KILL after 30 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def allow_descriptors(n):
    """Raises this process's descriptor limit to `n` (as far as the hard
    limit allows), for the idle-connection scenarios."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n)), hard))


def wrk_target(url, sc):
    """wrk's URL, then the scenario's script arguments (after `--`)."""
    return [url] + (["--"] + [str(a) for a in sc["script_args"]] if sc.get("script_args") else [])


def run_one(template, sc, duration):
    port = free_port()
    cert, key = tls_pair() if "{cert}" in template else ("", "")
    # {tmp}: a directory of the run's own, for files the server writes
    tmp = tempfile.mkdtemp(prefix="ferrocorn-bench-")
    cmd = template.format(port=port, bin=BIN, cert=cert, key=key, tmp=tmp)
    env = dict(os.environ, PYTHONPATH=HERE)
    proc = subprocess.Popen(cmd.split(), cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    front = None
    try:
        wait_listening(port, proc)
        wait_settled(proc)
        target = port
        if sc.get("front") == "nginx":
            front, target = start_nginx(port, "--protocol uwsgi" in template, tmp)
        url = "%s://127.0.0.1:%d%s" % (sc.get("scheme", "http"), target, sc.get("path", "/"))
        if sc.get("load") == "h2":
            # h2load by request count (its duration mode aborts when a
            # server stalls connections): the warm-up's rate sizes the
            # measured run; -N gives up on a connection silent for 3 s.
            wrk = ["h2load", "-t1", "-N3", "-c%d" % sc["connections"], "-m%d" % sc["streams"]]
            warm = subprocess.run(
                wrk + ["-n%d" % (sc["connections"] * sc["streams"] * 20), url],
                capture_output=True, text=True, timeout=120,
            ).stdout  # fmt: skip
            h2_count = max(2000, int(parse_h2load(warm)["rps"] * duration))
        elif sc.get("load") == "ws":
            wrk = [
                sys.executable,
                os.path.join(HERE, "wsload.py"),
                "--port",
                str(port),
                "--connections",
                str(sc["connections"]),
                "--path",
                sc.get("path", "/"),
                "--duration",
            ]
            subprocess.run(wrk + ["2"], capture_output=True)
        else:
            wrk = ["wrk", "-t%d" % sc["threads"], "-c%d" % sc["connections"], "--latency"]
            if sc.get("header"):
                wrk += ["-H", sc["header"]]
            if sc.get("script"):
                wrk += ["-s", os.path.join(HERE, sc["script"])]
            subprocess.run(wrk + ["-d2s"] + wrk_target(url, sc), capture_output=True)
        # CPU used by the server (master and workers) and by wrk during the
        # measured run: a load tool near 100% means the server is not the limit.
        hz = os.sysconf("SC_CLK_TCK")
        server_before = process_tree_ticks(proc.pid)
        front_before = process_tree_ticks(front.pid) if front else 0
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        if sc.get("load") == "h2":
            out = subprocess.run(
                wrk + ["-n%d" % h2_count, url], capture_output=True, text=True, timeout=duration * 5 + 60
            ).stdout
        elif sc.get("load") == "ws":
            out = subprocess.run(wrk + [str(duration)], capture_output=True, text=True).stdout
        else:
            out = subprocess.run(
                wrk + ["-d%ds" % duration] + wrk_target(url, sc), capture_output=True, text=True
            ).stdout
        elapsed = time.time() - started
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = parse_h2load(out) if sc.get("load") == "h2" else parse_wrk(out)
        result["server_cpu"] = 100.0 * (process_tree_ticks(proc.pid) - server_before) / hz / elapsed
        if front:
            result["front_cpu"] = 100.0 * (process_tree_ticks(front.pid) - front_before) / hz / elapsed
        result["wrk_cpu"] = (
            100.0 * ((wrk_after.ru_utime - wrk_before.ru_utime) + (wrk_after.ru_stime - wrk_before.ru_stime)) / elapsed
        )
        return result
    finally:
        if front:
            stop_server(front)
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)


IDLE_SERVERS = [
    (
        "ferrocorn -k gthread --threads 4",
        "{bin}/ferrocorn -k gthread --threads 4 -w 1 --worker-connections 10100 "
        "--keep-alive 300 -b 127.0.0.1:{port} apps:hello",
    ),
    (
        "gunicorn -k gthread --threads 4",
        "{bin}/gunicorn -k gthread --threads 4 -w 1 --worker-connections 10100 "
        "--keep-alive 300 --no-control-socket -b 127.0.0.1:{port} apps:hello",
    ),
    (
        "ferrocorn -k gevent",
        "{bin}/ferrocorn -k gevent -w 1 --worker-connections 10100 --keep-alive 300 -b 127.0.0.1:{port} apps:hello",
    ),
    (
        "gunicorn -k gevent",
        "{bin}/gunicorn -k gevent -w 1 --worker-connections 10100 "
        "--keep-alive 300 --no-control-socket -b 127.0.0.1:{port} apps:hello",
    ),
]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker_pid(master):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        return int(entry)
            except OSError:
                pass
    return master


def fresh_request_ms(port):
    started = time.perf_counter()
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while c.recv(65536):
        pass
    c.close()
    return (time.perf_counter() - started) * 1000


def idle_run(template, count):
    """Opens `count` keep-alive connections that each made one request and
    stay idle; reports the worker's RSS growth per connection and the
    latency of fresh requests meanwhile."""
    import selectors

    allow_descriptors(count + 1000)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=HERE)
    proc = subprocess.Popen(
        template.format(port=port, bin=BIN).split(),
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socks = []
    try:
        wait_listening(port, proc)
        for _ in range(20):
            fresh_request_ms(port)
        worker = worker_pid(proc.pid)
        before = rss_kb(worker)
        sel = selectors.DefaultSelector()
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        pending = 0
        for i in range(count):
            c = socket.socket()
            c.connect(("127.0.0.1", port))
            c.sendall(request)
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            socks.append(c)
            pending += 1
            if pending >= 500 or i == count - 1:
                deadline = time.time() + 60
                while pending and time.time() < deadline:
                    for key, _ in sel.select(timeout=1):
                        try:
                            if key.fileobj.recv(65536):
                                sel.unregister(key.fileobj)
                                pending -= 1
                        except BlockingIOError:
                            pass
        answered = count - pending
        time.sleep(1)
        after = rss_kb(worker)
        lat = sorted(fresh_request_ms(port) for _ in range(200))
        return {
            "connections": answered,
            "rss_before_kb": before,
            "rss_after_kb": after,
            "per_conn_bytes": (after - before) * 1024.0 / max(answered, 1),
            "fresh_p50_ms": lat[len(lat) // 2],
            "fresh_p99_ms": lat[int(len(lat) * 0.99) - 1],
        }
    finally:
        for c in socks:
            c.close()
        stop_server(proc)


def tls_idle_run(template, count):
    """Opens `count` TLS connections that each made one request and stay
    idle; reports the worker's RSS growth per connection."""
    import ssl

    allow_descriptors(count + 1000)
    port = free_port()
    cert, key = tls_pair()
    proc = subprocess.Popen(
        template.format(port=port, bin=BIN, cert=cert, key=key).split(),
        cwd=HERE,
        env=dict(os.environ, PYTHONPATH=HERE),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    socks = []
    try:
        wait_listening(port, proc)
        worker = worker_pid(proc.pid)
        before = rss_kb(worker)
        for _ in range(count):
            c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            c.recv(65536)
            socks.append(c)
        time.sleep(1)
        after = rss_kb(worker)
        return {
            "connections": len(socks),
            "rss_before_kb": before,
            "rss_after_kb": after,
            "per_conn_bytes": (after - before) * 1024.0 / max(len(socks), 1),
        }
    finally:
        for c in socks:
            c.close()
        stop_server(proc)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", action="store_true", help="create bench/.venv with the peers and this checkout")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS) + ["idle", "tls-idle"])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument(
        "--idle", type=int, default=10000, help="idle keep-alive connections for the memory scenario (0 skips it)"
    )
    ap.add_argument("--only", help="run only the servers whose label starts with this (e.g. ferrocorn)")
    ap.add_argument("--venv", help="serve from this virtualenv instead of bench/.venv (to compare two builds)")
    a = ap.parse_args()
    if a.venv:
        global BIN
        BIN = os.path.join(os.path.abspath(a.venv), "bin")
    if a.setup:
        setup()
        if not a.scenario:
            return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    if not os.path.exists(os.path.join(BIN, "ferrocorn")):
        sys.exit("run bench/run.py --setup first")
    info = machine()
    report = {"machine": info, "scenarios": {}}
    lines = ["Machine: %(cpu)s, %(cores)s cores, Linux %(kernel)s, Python %(python)s, %(wrk)s; %(date)s" % info, ""]
    for name in a.scenario or list(SCENARIOS) + ["idle", "tls-idle"]:
        if name == "idle":
            if a.idle <= 0:
                continue
            lines += [
                "### idle",
                "",
                "%d idle keep-alive connections on one worker (each made one request), then 200 fresh "
                "requests on new connections meanwhile." % a.idle,
                "",
                "| server | connections held | RSS before | RSS after | RSS per idle connection | "
                "fresh request p50 ms | p99 ms |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            report["scenarios"]["idle"] = []
            for label, template in IDLE_SERVERS:
                if a.only and not label.startswith(a.only):
                    continue
                r = idle_run(template, a.idle)
                r.update(label=label, command=template.format(port="PORT", bin="").lstrip("/"))
                report["scenarios"]["idle"].append(r)
                print(
                    "%-40s %6d conns  %.0f B/conn  fresh p99 %.2f ms"
                    % (label, r["connections"], r["per_conn_bytes"], r["fresh_p99_ms"]),
                    file=sys.stderr,
                )
                lines.append(
                    "| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB | %.2f | %.2f |"
                    % (
                        label,
                        r["connections"],
                        r["rss_before_kb"] / 1024.0,
                        r["rss_after_kb"] / 1024.0,
                        r["per_conn_bytes"] / 1024.0,
                        r["fresh_p50_ms"],
                        r["fresh_p99_ms"],
                    )
                )
            lines += ["", "Commands:", ""] + ["    " + r["command"] for r in report["scenarios"]["idle"]] + [""]
            continue
        if name == "tls-idle":
            lines += [
                "### tls-idle",
                "",
                "%d idle keep-alive TLS connections on one worker (each made one request)." % a.idle,
                "",
                "| server | connections held | RSS before | RSS after | RSS per idle connection |",
                "|---|---:|---:|---:|---:|",
            ]
            report["scenarios"]["tls-idle"] = []
            for label, template in TLS_IDLE_SERVERS:
                r = tls_idle_run(template, a.idle)
                r.update(label=label)
                report["scenarios"]["tls-idle"].append(r)
                print("%-40s %6d conns  %.0f B/conn" % (label, r["connections"], r["per_conn_bytes"]), file=sys.stderr)
                lines.append(
                    "| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB |"
                    % (
                        label,
                        r["connections"],
                        r["rss_before_kb"] / 1024.0,
                        r["rss_after_kb"] / 1024.0,
                        r["per_conn_bytes"] / 1024.0,
                    )
                )
            lines.append("")
            continue
        sc = SCENARIOS[name]
        results = []
        for label, template, baseline in sc["servers"]:
            if a.only and not label.startswith(a.only):
                continue
            r = run_one(template, sc, a.duration)
            command = template.format(port="PORT", bin="", cert="CERT", key="KEY", tmp="/tmp").lstrip("/")
            r.update(label=label, command=command, baseline=baseline)
            results.append(r)
            print("%-40s %10.0f req/s  p99 %s ms" % (label, r["rps"], fmt(r["p99_ms"], ".2f")), file=sys.stderr)
        base = next((r for r in results if r["baseline"]), None)
        lines += [
            "### %s" % name,
            "",
            sc["what"] + ", %d s per server after a 2 s warm-up." % a.duration,
            "",
            "| server | %s | p50 ms | p99 ms | vs %s | server CPU | client CPU | per server CPU-second | vs %s |"
            % ((sc.get("unit", "req/s"),) + ((base["label"] if base else "baseline"),) * 2),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            ratio = "%.2fx" % (r["rps"] / base["rps"]) if base and base["rps"] else "-"
            eff = r["rps"] / (r["server_cpu"] / 100.0) if r["server_cpu"] else 0.0
            base_eff = base["rps"] / (base["server_cpu"] / 100.0) if base and base["server_cpu"] else 0.0
            lines.append(
                "| %s | %.0f | %s | %s | %s | %.0f%% | %.0f%% | %.0f | %s |"
                % (
                    r["label"],
                    r["rps"],
                    fmt(r["p50_ms"], ".2f"),
                    fmt(r["p99_ms"], ".2f"),
                    ratio,
                    r["server_cpu"],
                    r["wrk_cpu"],
                    eff,
                    "%.2fx" % (eff / base_eff) if base_eff else "-",
                )
            )
        if sc.get("front"):
            lines += [""] + ["nginx CPU with %s: %.0f%%" % (r["label"], r["front_cpu"]) for r in results]
        if sc.get("ideal"):
            lines += [""] + [
                "%s: %.1f%% of the ideal %d req/s" % (r["label"], 100.0 * r["rps"] / sc["ideal"], sc["ideal"])
                for r in results
            ]
        lines += ["", "Commands:", ""] + ["    " + r["command"] for r in results] + [""]
        report["scenarios"][name] = results
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(HERE, "results", "bench-%s.json" % stamp), "w") as f:
        json.dump(report, f, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
