#!/usr/bin/env python3
"""Two or more server commands against one URL, in alternating rounds.

On a shared or virtual machine throughput drifts by 10 to 30% between
minutes, so two builds measured one after the other can differ by more
than the change between them. This runs each command once per round, in
turn, for several rounds, and prints the median of each (requests per
second, per server CPU-second, p99), so a drift hits every command alike.

    python3 bench/ab.py --url http://127.0.0.1:8931/users/42 \\
        'threads1=.venv/bin/ferrocorn -k gthread --threads 1 -b 127.0.0.1:8931 real_apps:django_wsgi' \\
        'threads4=.venv/bin/ferrocorn -k gthread --threads 4 -b 127.0.0.1:8931 real_apps:django_wsgi'

Each argument is NAME=COMMAND; leading VAR=value words in the command are
set in its environment (PYTHONPATH=/tmp/other-build to try another build).
Commands run from bench/, so bench's apps import. The server's CPU is its
whole process tree's, from /proc. `--pause MS` paces each connection
(paced.lua) so that every server gets the same offered load and the p99
column compares latency at the same rate.
"""

import argparse
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time

from run import process_tree_ticks, wait_settled, wrk_target

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def parse_spec(spec):
    name, sep, command = spec.partition("=")
    if not sep or not command.strip():
        raise SystemExit("expected NAME=COMMAND, got %r" % spec)
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return name, words, env


def wait_up(url, proc, timeout):
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited at start (status %s)" % proc.returncode)
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not answer %s" % url)


def one_run(url, words, env, args):
    proc = subprocess.Popen(
        words,
        cwd=HERE,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_up(url, proc, 60)
        wait_settled(proc)
        wrk = ["wrk", "-t1", "-c%d" % args.connections]
        paced = {"script_args": [args.pause]} if args.pause is not None else {}
        if paced:
            wrk += ["-s", os.path.join(HERE, "paced.lua")]
        tail = wrk_target(url, paced)
        subprocess.run(wrk + ["-d%ds" % args.warmup] + tail, capture_output=True, check=False)
        before, started = process_tree_ticks(proc.pid), time.time()
        out = subprocess.run(
            wrk + ["-d%ds" % args.duration, "--latency"] + tail, capture_output=True, text=True, check=False
        ).stdout
        cpu = (process_tree_ticks(proc.pid) - before) / TICK / (time.time() - started)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not rps or not p99:
        raise SystemExit("could not read wrk's output:\n" + out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return float(rps.group(1)), cpu, float(p99.group(1)) * scale


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6, help="seconds measured per run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--pause", type=int, help="milliseconds each connection waits between requests (paced.lua)")
    ap.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    args = ap.parse_args()
    specs = [parse_spec(s) for s in args.servers]
    runs = {name: [] for name, _, _ in specs}
    for n in range(args.rounds):
        for name, words, env in specs:
            rps, cpu, p99 = one_run(args.url, words, env, args)
            runs[name].append((rps, cpu, p99))
            print(
                "round %d %-12s %8.0f req/s  CPU %3.0f%%  p99 %.2f ms" % (n + 1, name, rps, cpu * 100, p99), flush=True
            )
    first = statistics.median(r[0] for r in runs[specs[0][0]])
    print()
    print("| server | req/s (median) | vs %s | per server CPU-second | p99 ms (median) | runs |" % specs[0][0])
    print("|---|---:|---:|---:|---:|---|")
    for name, _, _ in specs:
        rs = runs[name]
        rps = statistics.median(r[0] for r in rs)
        per_cpu = statistics.median(r[0] / r[1] for r in rs if r[1] > 0) if any(r[1] > 0 for r in rs) else 0
        p99 = statistics.median(r[2] for r in rs)
        print(
            "| %s | %.0f | %.2fx | %.0f | %.2f | %s |"
            % (name, rps, rps / first if first else 0, per_cpu, p99, " ".join("%.0f" % r[0] for r in rs))
        )


if __name__ == "__main__":
    sys.exit(main())
