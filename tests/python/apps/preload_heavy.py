"""A WSGI app whose import leaves about 40 MB of Python containers behind,
for the --preload memory tests (tests/python/test_preload_memory.py).

- /gc       JSON: this process's gc.get_freeze_count(), gc.get_threshold()
            and pid
- /collect  runs a full gc.collect() in the worker, answers the pid
- /touch    reads every record (so their reference counts are written,
            and restored), answers the pid
- anything  else looks up a few records and answers the pid
"""

import gc
import json
import os

# Records as dicts holding lists and strings, built alternately so the
# containers (which the collector walks) sit on most of the heap's pages.
N = 60_000
TABLE = {
    i: {"id": i, "name": "record-%d" % i, "tags": ["t%d" % (i % 97), "u%d" % (i % 89)], "vals": [i, i + 1, i + 2]}
    for i in range(N)
}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/gc":
        body = json.dumps(
            {"freeze_count": gc.get_freeze_count(), "threshold": list(gc.get_threshold()), "pid": os.getpid()}
        ).encode()
    elif path == "/collect":
        gc.collect()
        body = str(os.getpid()).encode()
    elif path == "/touch":
        for record in TABLE.values():
            record["tags"][0], record["vals"][0], record["name"]
        body = str(os.getpid()).encode()
    else:
        for i in range(0, N, N // 10):
            TABLE[i]["tags"][0]
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
