#!/usr/bin/env python3
"""Dirty arbiter calls per second and latency: 64 concurrent HTTP requests,
each making one trivial `execute()` (a dirty app method returning its
argument), ferrocorn against Gunicorn 27.0.1, with the sync client (gthread
workers) and the async client (asgi workers). wrk drives the load; both
servers get the same worker, thread and dirty worker counts.

    python3 bench/dirty.py                        # bench/.venv's servers
    python3 bench/dirty.py --python .venv/bin/python --duration 10

The app is bench/dirty_app.py (each server uses its own client API).
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = [
    ("sync client (gthread)", ("-k", "gthread", "--threads", "32"), "dirty_app:app"),
    ("async client (asgi)", ("-k", "asgi"), "dirty_app:asgi"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if c.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not answer a dirty call")


def run_wrk(port, duration, connections):
    out = subprocess.run(
        ["wrk", "-t2", "-c%d" % connections, "-d%ds" % duration, "--latency", "http://127.0.0.1:%d/" % port],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


def measure(python, program, worker_args, app, args):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""), DIRTY_API=program)
    cmd = [python, "-m", program, "-b", "127.0.0.1:%d" % port, "-w", str(args.workers), *worker_args]
    cmd += ["--dirty-app", "dirty_app:Echo", "--dirty-workers", str(args.dirty_workers)]
    cmd += ["--dirty-threads", str(args.dirty_threads), "-n", "bench-%s" % program, "--log-level", "warning"]
    if program == "ferrocorn":
        cmd.append("--no-control-socket")
    proc = subprocess.Popen(cmd + [app], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(port, proc)
        run_wrk(port, 2, args.connections)  # warm-up
        return run_wrk(port, args.duration, args.connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=os.path.join(HERE, ".venv", "bin", "python"))
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dirty-workers", type=int, default=2)
    p.add_argument("--dirty-threads", type=int, default=4)
    args = p.parse_args()
    print("| client | server | calls/s | p99 ms | errors |")
    print("|---|---|---:|---:|---:|")
    for name, worker_args, app in CASES:
        for program in ("ferrocorn", "gunicorn"):
            rps, p99, errors = measure(args.python, program, worker_args, app, args)
            print("| %s | %s | %.0f | %.1f | %d |" % (name, program, rps, p99, errors))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
