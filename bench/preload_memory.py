#!/usr/bin/env python3
"""Memory of a --preload'ed app after fork: how much of the master's heap
stays shared once the workers have served for a while. The app
(bench/preload_app.py) builds about 200 MB of Python objects at import;
each server runs it with --preload and 4 workers, then serves 20,000
requests (one connection each, so they spread over the workers), each
looking up ten records. Then the PSS and USS of the master and every
worker are read from /proc/PID/smaps_rollup; and again once every worker
has run one full gc.collect() (which a library, or enough long-lived
objects made by the worker, eventually causes).

    python3 bench/preload_memory.py                          # bench/.venv's servers
    python3 bench/preload_memory.py --python /tmp/preload-rel/bin/python \\
        --gunicorn-python /work/main/bench/.venv/bin/python

Rows: Gunicorn 27.0.1 as it is; Gunicorn with gc.freeze() in a pre_fork
hook (what a Gunicorn user can do by hand, to tell the freeze apart from
the rest of the server); ferrocorn with --no-preload-freeze; ferrocorn as
it starts by default (the heap frozen before fork); with
--immortal-experiment, ferrocorn with the heap made immortal by a hook
(CPython 3.12/3.13), to measure what reference counting costs; with
--memory-merge, ferrocorn with --memory-merge (the kernel's same-page
merging, KSM): the script turns the host's KSM scanner on for that row
(root only) with a fast scan rate, and puts both back after.
"""

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_PYTHON = os.path.join(HERE, ".venv", "bin", "python")
MIB = 1 << 20

# Gunicorn has no switch for it: a config file freezes in the hook that runs
# in the master right before each fork.
GUNICORN_FREEZE_CONF = """\
import gc


def pre_fork(server, worker):
    if gc.get_freeze_count() == 0:
        gc.collect()
    gc.freeze()
"""


# The experiment behind docs/operations.md's "what it would take": CPython
# 3.12 and 3.13 (64-bit, with the GIL) skip reference counting on objects
# whose count is _Py_IMMORTAL_REFCNT, so a heap made immortal before fork
# is never written by Py_INCREF/Py_DECREF. No public API does this: the
# hook writes the count itself, for every tracked object and the objects
# they refer to directly. Measurement only; nothing frees those objects.
IMMORTAL_CONF = """\
import ctypes
import gc
import sys

IMMORTAL = 0xFFFFFFFF
assert sys.version_info[:2] in ((3, 12), (3, 13)) and sys.maxsize > 2**32


def when_ready(server):
    gc.collect()
    for o in gc.get_objects():
        ctypes.c_ssize_t.from_address(id(o)).value = IMMORTAL
        for r in gc.get_referents(o):
            ctypes.c_ssize_t.from_address(id(r)).value = IMMORTAL
    gc.freeze()
"""


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return sorted(found)


def rollup(pid):
    """{'rss','pss','uss'} in bytes from /proc/PID/smaps_rollup."""
    fields = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0]) * 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


def get(port, path, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.getheader("X-Pid"), r.read()
    finally:
        conn.close()


def wait_up(port, proc, workers, timeout=120):
    """Until the app answers and the master has all its workers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited at start (%s)" % proc.returncode)
        try:
            status, _, body = get(port, "/heap", timeout=5)
            if status == 200 and len(children(proc.pid)) == workers:
                return json.loads(body)
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not come up")


def load(port, total, threads):
    """`total` requests from `threads` clients; requests served per pid."""
    served = {}
    seeds = {}
    errors = []
    lock = threading.Lock()

    def client(start):
        for n in range(start, total, threads):
            try:
                status, pid, _ = get(port, "/lookup/%d" % n)
            except OSError as e:
                errors.append(e)
                continue
            if status != 200:
                errors.append(status)
                continue
            with lock:
                served[pid] = served.get(pid, 0) + 1
                seeds.setdefault(pid, []).append(n)

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise SystemExit("%d requests failed, first: %r" % (len(errors), errors[0]))
    return served, seeds


def touched_share(seeds, records, lookups):
    """The mean share of the records each worker looked up (the app picks
    them from the request's seed the same way)."""
    import random

    shares = []
    for mine in seeds.values():
        seen = set()
        for seed in mine:
            rnd = random.Random(seed)
            seen.update(rnd.randrange(records) for _ in range(lookups))
        shares.append(len(seen) / records)
    return sum(shares) / len(shares)


def collect_everywhere(port, workers):
    """Asks /collect until every worker has answered it once; the full
    collections the workers had run by themselves before."""
    done = {}
    deadline = time.time() + 60
    while len(done) < workers and time.time() < deadline:
        status, _, body = get(port, "/collect")
        if status == 200:
            answer = json.loads(body)
            done.setdefault(answer["pid"], answer["full_collections_before"])
    if len(done) < workers:
        raise SystemExit("only %d workers ran gc.collect()" % len(done))
    return sum(done.values())


def tree_memory(master_pid):
    master = rollup(master_pid)
    workers = [rollup(pid) for pid in children(master_pid)]
    uss = [w["uss"] for w in workers]
    return {
        "pss_total": master["pss"] + sum(w["pss"] for w in workers),
        "uss_total": master["uss"] + sum(uss),
        "master_uss": master["uss"],
        "worker_uss_mean": sum(uss) / len(uss),
        "worker_uss_max": max(uss),
    }


KSM = "/sys/kernel/mm/ksm/"


class KsmOn:
    """The host's KSM scanner on, scanning fast and without smart scan
    (which can keep a worker's late copies from ever meeting the master's
    pages), for one measurement."""

    SETTINGS = (("pages_to_scan", "5000"), ("smart_scan", "0"), ("run", "1"))

    def __enter__(self):
        self.saved = {}
        for key, value in self.SETTINGS:
            if not os.path.exists(KSM + key):
                continue  # no smart scan before Linux 6.7
            with open(KSM + key) as f:
                self.saved[key] = f.read().strip()
            with open(KSM + key, "w") as f:
                f.write(value)
        return self

    def __exit__(self, *exc):
        for key, _ in reversed(self.SETTINGS):
            if key in self.saved:
                with open(KSM + key, "w") as f:
                    f.write(self.saved[key])


def measure(name, argv, env, args, port):
    proc = subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        app = wait_up(port, proc, args.workers)
        started = time.time()
        served, seeds = load(port, args.requests, args.clients)
        took = time.time() - started
        # Let the workers settle (a collection that was due, a freed arena).
        time.sleep(2)
        after_requests = tree_memory(proc.pid)
        full_collections = collect_everywhere(port, args.workers)
        time.sleep(1)
        after_collect = tree_memory(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "server": name,
        "heap": app["heap"],
        "after_requests": after_requests,
        "after_collect": after_collect,
        "served": sorted(served.values()),
        "touched": touched_share(seeds, app["records"], args.lookups),
        "full_collections": full_collections,
        "seconds": took,
    }


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "%s, %d cores, Linux %s, Python %s" % (cpu, os.cpu_count(), platform.release(), platform.python_version())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=BENCH_PYTHON, help="the Python with ferrocorn installed")
    ap.add_argument("--gunicorn-python", default=None, help="the Python with gunicorn (default: --python)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    ap.add_argument("--records", type=int, default=None, help="records the app builds (default: the app's, ~200 MB)")
    ap.add_argument("--lookups", type=int, default=10, help="records each request looks up")
    ap.add_argument(
        "--immortal-experiment",
        action="store_true",
        help="add a row: ferrocorn with the heap made immortal by a hook (CPython 3.12/3.13 only)",
    )
    ap.add_argument(
        "--memory-merge",
        action="store_true",
        help="add a row: ferrocorn --memory-merge, with the host's KSM scanner on meanwhile (root)",
    )
    ap.add_argument("--only", action="append", help="run only the rows whose name contains this (repeatable)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    gpy = args.gunicorn_python or args.python

    env = dict(os.environ)
    env.pop("GUNICORN_CMD_ARGS", None)
    if args.records:
        env["PRELOAD_BENCH_RECORDS"] = str(args.records)
    env["PRELOAD_BENCH_LOOKUPS"] = str(args.lookups)
    conf = tempfile.NamedTemporaryFile("w", suffix=".py", prefix="freeze_conf_", delete=False)
    conf.write(GUNICORN_FREEZE_CONF)
    conf.close()
    immortal = tempfile.NamedTemporaryFile("w", suffix=".py", prefix="immortal_conf_", delete=False)
    immortal.write(IMMORTAL_CONF)
    immortal.close()
    common = ["--preload", "-w", str(args.workers), "--log-level", "warning"]
    servers = [
        ("gunicorn --preload", [gpy, "-m", "gunicorn"] + common),
        ("gunicorn --preload + gc.freeze() hook", [gpy, "-m", "gunicorn", "-c", conf.name] + common),
        ("ferrocorn --preload --no-preload-freeze", [args.python, "-m", "ferrocorn", "--no-preload-freeze"] + common),
        ("ferrocorn --preload", [args.python, "-m", "ferrocorn"] + common),
    ]
    if args.immortal_experiment:
        servers.append(
            (
                "ferrocorn --preload, heap made immortal (experiment)",
                [args.python, "-m", "ferrocorn", "-c", immortal.name] + common,
            )
        )
    if args.memory_merge:
        servers.append(
            ("ferrocorn --preload --memory-merge (KSM on)", [args.python, "-m", "ferrocorn", "--memory-merge"] + common)
        )
    rows = []
    try:
        for name, argv in servers:
            if args.only and not any(o in name for o in args.only):
                continue
            port = free_port()
            argv = argv + ["-b", "127.0.0.1:%d" % port, "preload_app:app"]
            if "--memory-merge" in argv:
                with KsmOn():
                    row = measure(name, argv, env, args, port)
            else:
                row = measure(name, argv, env, args, port)
            rows.append(row)
            print("measured %s in %.1f s" % (name, row["seconds"]), file=sys.stderr)
    finally:
        os.unlink(conf.name)
        os.unlink(immortal.name)

    print("%s; %d workers, %d requests of %d lookups" % (machine(), args.workers, args.requests, args.lookups))
    print()
    print(
        "| server | preloaded heap | total PSS | total USS | master USS | worker USS mean (max) | worker USS / heap "
        "| records looked up per worker | total PSS after gc.collect() | worker USS after gc.collect() |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        a, c = r["after_requests"], r["after_collect"]
        print(
            "| %s | %.0f MiB | %.0f MiB | %.0f MiB | %.0f MiB | %.0f (%.0f) MiB | %.0f%% | %.0f%% | %.0f MiB | %.0f MiB |"
            % (
                r["server"],
                r["heap"] / MIB,
                a["pss_total"] / MIB,
                a["uss_total"] / MIB,
                a["master_uss"] / MIB,
                a["worker_uss_mean"] / MIB,
                a["worker_uss_max"] / MIB,
                100.0 * a["worker_uss_mean"] / r["heap"],
                100.0 * r["touched"],
                c["pss_total"] / MIB,
                c["worker_uss_mean"] / MIB,
            )
        )
    print()
    print(
        "full collections the workers ran by themselves during the requests: "
        + ", ".join("%s %d" % (r["server"], r["full_collections"]) for r in rows)
    )
    print(
        "requests per worker (fewest-most): "
        + ", ".join("%s %d-%d" % (r["server"], r["served"][0], r["served"][-1]) for r in rows)
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
