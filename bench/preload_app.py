"""A WSGI app with a heavy import, for bench/preload_memory.py: about 200 MB
of Python objects (records as dicts of strings, lists, numbers, and two
indexes over them), as a large Django project's models or a loaded NLP table
would leave in memory. Each request looks up a few records chosen by its
path, so the workers touch some of the data, not all of it.

    GET /lookup/<n>   ten records (PRELOAD_BENCH_LOOKUPS) picked by the seed n,
                      summarised
    GET /heap         bytes the import added to the process (RSS growth)
    GET /collect      a full gc.collect() in the worker (as libraries and
                      long-lived caches eventually cause); answers its pid
                      and how many full collections it had run before
"""

import gc
import json
import os
import random

RECORDS_ENV = "PRELOAD_BENCH_RECORDS"
LOOKUPS_PER_REQUEST = int(os.environ.get("PRELOAD_BENCH_LOOKUPS", "10"))


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(count):
    rnd = random.Random(1)
    words = ["w%05d" % i for i in range(5000)]
    by_id = {}
    by_email = {}
    for i in range(count):
        name = " ".join(rnd.choice(words) for _ in range(3))
        record = {
            "id": i,
            "name": name,
            "email": "user%d@example.%s" % (i, rnd.choice(("com", "org", "net"))),
            "tags": [rnd.choice(words) + "-tag" for _ in range(3)],
            "score": rnd.random(),
            "bio": "%s lives in %s and likes %s." % (name, rnd.choice(words) * 4, rnd.choice(words) * 6),
            "history": [rnd.randrange(1 << 20) for _ in range(4)],
        }
        by_id[i] = record
        by_email[record["email"]] = record
    return by_id, by_email


def _full_collections():
    return gc.get_stats()[2]["collections"]


# The count a worker inherits from the master, taken at fork, so /collect
# tells the worker's own.
_full_at_fork = [0]
os.register_at_fork(after_in_child=lambda: _full_at_fork.__setitem__(0, _full_collections()))

_before = _rss()
COUNT = int(os.environ.get(RECORDS_ENV, "170000"))
BY_ID, BY_EMAIL = _build(COUNT)
HEAP = _rss() - _before


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/heap":
        body = json.dumps({"heap": HEAP, "records": COUNT, "pid": os.getpid()}).encode()
    elif path == "/collect":
        full_before = _full_collections() - _full_at_fork[0]
        gc.collect()
        body = json.dumps({"pid": os.getpid(), "full_collections_before": full_before}).encode()
    elif path.startswith("/lookup/"):
        try:
            seed = int(path[len("/lookup/") :])
        except ValueError:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        rnd = random.Random(seed)
        found = []
        for _ in range(LOOKUPS_PER_REQUEST):
            record = BY_ID[rnd.randrange(COUNT)]
            again = BY_EMAIL[record["email"]]
            found.append({"id": again["id"], "name": again["name"], "tags": again["tags"], "score": again["score"]})
        body = json.dumps(found).encode()
    else:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Pid", str(os.getpid()))],
    )
    return [body]
