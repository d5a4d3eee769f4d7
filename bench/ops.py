#!/usr/bin/env python3
"""Failed requests during operations under load: ferrocorn beside Gunicorn.

    python3 bench/ops.py                                  # every operation, sync, gthread and asgi
    python3 bench/ops.py --op hup --worker gthread --duration 10
    python3 bench/ops.py --ferrocorn /path/to/venv/bin/ferrocorn --markdown ops.md

For each operation and worker type, each server (same worker type, same
worker count, same app: bench/apps.py:hello, or asgi_hello) runs under wrk for the whole
duration (20 s by default, wrk --timeout 10s so only a request that never
finishes counts as a timeout); the operation happens during the run, at the
moments it lists. A failed request is what wrk counts as a socket error
(connect, read, write, timeout) or a non-2xx/3xx answer. Each server's
error log is kept so worker boots can be counted (recycling rows) and read
afterwards.

Adding an operation is adding one `Operation` to OPERATIONS: its server
options and a list of (seconds into the run, action) steps. An action gets
the `Run` (master pid through the pidfile, workers, signals, waiting for log
lines). Servers always run with --pid and are stopped through it, so an
operation that replaces the master (USR2 + WINCH + TERM: a new master writes
<pidfile>.2, then takes over the pidfile when the old one exits) needs no
change here (`usr2_upgrade`).
"""

import argparse
import dataclasses
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import BIN, free_port, machine, parse_wrk, wait_listening  # noqa: E402

WORKERS = 2
WORKER_ARGS = {
    "sync": ["-k", "sync", "-w", str(WORKERS)],
    "gthread": ["-k", "gthread", "--threads", "4", "-w", str(WORKERS)],
    "asgi": ["-k", "asgi", "-w", str(WORKERS)],
}
APPS = {"sync": "apps:hello", "gthread": "apps:hello", "asgi": "apps:asgi_hello"}
WRK = ["wrk", "-t2", "-c32", "--timeout", "10s"]


@dataclasses.dataclass(eq=False)
class Run:
    """One server under load: what an operation's steps act on."""

    proc: subprocess.Popen
    pidfile: str
    log_path: str
    port: int
    # what the steps observed, shown beside the row
    notes: list = dataclasses.field(default_factory=list)

    def master(self):
        """The current master (the pidfile names it; a USR2 upgrade moves it)."""
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return self.proc.pid

    def workers(self, master=None):
        master = master or self.master()
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == master and fields[0] != "Z":
                    out.append(int(entry))
        return sorted(out)

    def signal(self, sig, pid=None):
        os.kill(pid or self.master(), sig)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, text, count=1, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return True
            time.sleep(0.05)
        return False


# -- operations --------------------------------------------------------------


class Operation:
    def __init__(self, key, title, steps, server_args=(), expect_zero=True):
        self.key = key
        self.title = title
        self.steps = steps
        self.server_args = list(server_args)
        # SIGKILL loses the requests the killed worker was running: not a
        # row where zero is the target.
        self.expect_zero = expect_zero


def hup(run):
    run.signal(signal.SIGHUP)


def ttin(run):
    run.signal(signal.SIGTTIN)


def ttou(run):
    run.signal(signal.SIGTTOU)


def established_connections(pid, port):
    """Client connections to `port` the process `pid` holds open."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def kill_a_worker(run):
    workers = run.workers()
    if workers:
        held = established_connections(workers[0], run.port)
        os.kill(workers[0], signal.SIGKILL)
        run.notes.append("the killed worker held %d connections" % held)


def usr2_upgrade(run):
    """Gunicorn's documented upgrade: USR2 (a new master starts, writes
    <pidfile>.2), WINCH to the old master (its workers stop; Gunicorn only
    honours WINCH when daemonized, hence --daemon for both servers in its
    row), then TERM to it."""
    old = run.master()
    run.signal(signal.SIGUSR2, old)
    deadline = time.time() + 15
    while time.time() < deadline and not os.path.exists(run.pidfile + ".2"):
        time.sleep(0.05)
    time.sleep(2)  # the new master's workers boot
    run.signal(signal.SIGWINCH, old)
    time.sleep(2)
    run.signal(signal.SIGTERM, old)
    # The row only counts if the upgrade happened: the new master took the
    # pid file over.
    deadline = time.time() + 10
    while time.time() < deadline and run.master() == old:
        time.sleep(0.05)
    run.notes.append("new master promoted" if run.master() != old else "NOT upgraded")


OPERATIONS = [
    Operation("none", "nothing (baseline)", []),
    Operation("hup", "HUP (reload) at 5 s and 12 s", [(5, hup), (12, hup)]),
    Operation("ttin-ttou", "TTIN + TTOU at 4/8 s and 12/16 s", [(4, ttin), (8, ttou), (12, ttin), (16, ttou)]),
    Operation(
        "max-requests",
        "max-requests recycling (--max-requests 2000 --max-requests-jitter 400)",
        [],
        ["--max-requests", "2000", "--max-requests-jitter", "400"],
    ),
    Operation("usr2", "USR2 + WINCH + TERM (re-exec upgrade) from 5 s", [(5, usr2_upgrade)], ["--daemon"]),
    Operation("sigkill", "SIGKILL of one worker at 10 s", [(10, kill_a_worker)], expect_zero=False),
]


# -- one measured run ----------------------------------------------------------


def server_command(name, binary, worker, op, port, pidfile, log_path):
    # The error log goes to a file, not stderr, so a daemonized master's is
    # kept too.
    cmd = (
        [binary]
        + WORKER_ARGS[worker]
        + op.server_args
        + ["-b", "127.0.0.1:%d" % port, "--pid", pidfile, "--error-logfile", log_path]
    )
    if name == "gunicorn":
        cmd.append("--no-control-socket")
    return cmd + [APPS[worker]]


def measure(name, binary, worker, op, duration, workdir):
    port = free_port()
    pidfile = os.path.join(workdir, "%s-%s-%s.pid" % (name, worker, op.key))
    log_path = os.path.join(workdir, "%s-%s-%s.log" % (name, worker, op.key))
    cmd = server_command(name, binary, worker, op, port, pidfile, log_path)
    env = dict(os.environ, PYTHONPATH=HERE)
    open(log_path, "wb").close()
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = Run(proc, pidfile, log_path, port)
    masters = {proc.pid}
    try:
        wait_listening(port, proc, ok_exits=(0,))  # --daemon rows: the launcher exits 0
        # every first-generation worker booted, so only later boots count
        run.wait_log("Booting worker", count=WORKERS)
        boots_before = run.log().count("Booting worker")
        wrk = subprocess.Popen(
            WRK + ["-d%ds" % duration, "http://127.0.0.1:%d/" % port],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started = time.time()
        for at, action in op.steps:
            pause = started + at - time.time()
            if pause > 0:
                time.sleep(pause)
            action(run)
            masters.add(run.master())
        out, _ = wrk.communicate(timeout=duration + 60)
        result = parse_wrk(out)
        total = re.search(r"(\d+) requests in", out)
        result["requests"] = int(total.group(1)) if total else 0
        errors = {k: int(v) for k, v in re.findall(r"(connect|read|write|timeout) (\d+)", result["errors"])}
        result["socket_errors"] = errors
        result["failed"] = sum(errors.values()) + result["non2xx"]
        result["worker_boots"] = run.log().count("Booting worker") - boots_before
        result["command"] = " ".join(cmd)
        result["notes"] = run.notes
        return result
    finally:
        masters.add(run.master())
        stop(masters, proc)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(masters, proc):
    """TERM to every master this run had, by pid; KILL after 40 s."""
    for pid in masters:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 40
    while time.time() < deadline:
        proc.poll()
        if not any(alive(pid) for pid in masters):
            break
        time.sleep(0.1)
    for pid in masters:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def row_text(r):
    if r is None:
        return "-"
    detail = ", ".join("%s %d" % (k, v) for k, v in r["socket_errors"].items() if v)
    if r["non2xx"]:
        detail = (detail + ", " if detail else "") + "non-2xx %d" % r["non2xx"]
    for note in r.get("notes", []):
        detail = (detail + "; " if detail else "") + note
    return "**%d** of %d%s" % (r["failed"], r["requests"], " (%s)" % detail if detail else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferrocorn", default=os.path.join(BIN, "ferrocorn"))
    ap.add_argument("--gunicorn", default=os.path.join(BIN, "gunicorn"))
    ap.add_argument("--op", action="append", choices=[o.key for o in OPERATIONS])
    ap.add_argument("--worker", action="append", choices=sorted(WORKER_ARGS))
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()
    ops = [o for o in OPERATIONS if not args.op or o.key in args.op]
    last = max((at for o in ops for at, _ in o.steps), default=0)
    if args.duration <= last + 2:
        ap.error("--duration must be more than %d s: the last step is at %d s" % (last + 2, last))
    workers = args.worker or ["sync", "gthread", "asgi"]
    servers = [("ferrocorn", args.ferrocorn), ("gunicorn", args.gunicorn)]
    results = []
    with tempfile.TemporaryDirectory(prefix="ferrocorn-ops-") as workdir:
        for worker in workers:
            for op in ops:
                row = {"operation": op.title, "key": op.key, "worker": worker, "expect_zero": op.expect_zero}
                for name, binary in servers:
                    r = measure(name, binary, worker, op, args.duration, workdir)
                    row[name] = r
                    print(
                        "%-9s %-8s %-14s %s  (%d worker boots)"
                        % (name, worker, op.key, row_text(r), r["worker_boots"]),
                        flush=True,
                    )
                results.append(row)
    info = machine()
    lines = [
        "Machine: %s, %s cores, Linux %s, Python %s, %s; %s."
        % (info["cpu"], info["cores"], info["kernel"], info["python"], info["wrk"], info["date"]),
        "Load: `%s -d%ds` on loopback; %d workers, app `bench/apps.py:hello` (`asgi_hello` for asgi)."
        % (" ".join(WRK), args.duration, WORKERS),
        "",
        "| operation | worker | ferrocorn: failed of requests | gunicorn 27.0.1: failed of requests |",
        "|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            "| %s | %s | %s | %s |"
            % (row["operation"], row["worker"], row_text(row["ferrocorn"]), row_text(row["gunicorn"]))
        )
    lines.append("")
    lines.append("Commands:")
    lines.append("")
    seen = set()
    for row in results:
        for name, _ in servers:
            cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", row[name]["command"])
            cmd = re.sub(r"^\S*/", "", cmd)  # the binary by name, not where this run had it
            cmd = re.sub(r"--pid \S+", "--pid PIDFILE", cmd)
            cmd = re.sub(r"--error-logfile \S+", "--error-logfile LOGFILE", cmd)
            if cmd not in seen:
                seen.add(cmd)
                lines.append("    " + cmd)
    table = "\n".join(lines)
    print()
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(HERE, "results", "ops-%s.json" % stamp), "w") as f:
        json.dump({"machine": info, "results": results}, f, indent=1)
    failed = [r for r in results if r["expect_zero"] and r["ferrocorn"]["failed"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
