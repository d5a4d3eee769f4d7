"""WSGI app for the green worker tests (-k gevent, -k eventlet). Its waits
go through the standard library, which the worker has patched, so a request
that waits lets the others run.

- /                  "hello"
- /sleep?s=SECONDS   time.sleep, then "slept"
- /fetch?port=PORT   urllib.request GET of http://127.0.0.1:PORT/ (a slow
                     local server in the test), answers with its body
- /echo              the request body, read through wsgi.input
- /stream?n=N        N chunks of 64 KiB, yielded (a slow reader parks the
                     greenlet on the socket)
- /patched           JSON: which standard modules are patched, environ flags
- /file?mb=N         an N MiB file through wsgi.file_wrapper (sendfile)
"""

import json
import os
import tempfile
import time
import urllib.request
from urllib.parse import parse_qs


def _arg(environ, name, default):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def _patched():
    out = {}
    try:
        from gevent import monkey

        out["gevent_socket"] = monkey.is_module_patched("socket")
        out["gevent_time"] = monkey.is_module_patched("time")
    except ImportError:
        pass
    try:
        from eventlet import patcher

        out["eventlet_socket"] = patcher.is_monkey_patched("socket")
    except ImportError:
        pass
    return out


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(_arg(environ, "s", "0.1")))
        body = b"slept"
    elif path == "/fetch":
        port = int(_arg(environ, "port", "0"))
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=30) as r:
            body = r.read()
    elif path == "/echo":
        body = environ["wsgi.input"].read()
    elif path == "/stream":
        n = int(_arg(environ, "n", "16"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(n))
    elif path == "/file":
        size = int(_arg(environ, "mb", "1")) << 20
        f = tempfile.TemporaryFile()
        f.write(b"f" * size)
        f.seek(0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f)
    elif path == "/patched":
        info = _patched()
        info["multithread"] = environ["wsgi.multithread"]
        info["pid"] = os.getpid()
        body = json.dumps(info).encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
