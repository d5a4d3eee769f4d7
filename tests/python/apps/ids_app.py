"""Reports the identity a worker runs as. Loaded with --preload, so
everything a worker needs is imported while the master is still root (a
worker that has switched user may not be allowed to read the interpreter's
own directories on a test machine)."""

import json
import os
import signal  # noqa: F401  (used by the worker's signal handling)
import time  # noqa: F401


def app(environ, start_response):
    body = json.dumps(
        {
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "gid": os.getgid(),
            "groups": sorted(os.getgroups()),
            "umask": _umask(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
