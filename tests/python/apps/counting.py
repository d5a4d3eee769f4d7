"""Records which process imported it, to tell --preload from per-worker imports."""

import os

with open(os.environ["IMPORT_MARKER"], "a") as f:
    f.write("%d\n" % os.getpid())


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
