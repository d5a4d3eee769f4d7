"""The control socket: Gunicorn 27's protocol and defaults, every ferrocornc
verb against a running server (human and JSON output), Gunicorn's own
gunicornc against ferrocorn, and ferrocornc against a real Gunicorn."""

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

from helpers import BIN, children, ctl, ctl_json, frame, read_frame, server_env, wait_for, worker_pids


def wait_socket(path):
    wait_for(lambda: os.path.exists(path), what="the control socket %s" % path)
    return path


def test_default_path_mode_and_removal(server):
    s = server("ops_app:app")
    path = wait_socket(s.default_control_socket)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert "Control socket listening at %s" % path in s.log()
    s.signal(signal.SIGTERM)
    assert s.wait_exit() == 0
    assert not os.path.exists(path)


def test_relative_path_and_mode(server, tmp_path):
    s = server("--control-socket", "run/app.ctl", "--control-socket-mode", "0660", "ops_app:app")
    path = wait_socket(str(tmp_path / "run" / "app.ctl"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    # a directory made for it is the owner's only, as Gunicorn makes it
    assert stat.S_IMODE(os.stat(str(tmp_path / "run")).st_mode) == 0o700
    assert ctl_json(path, "show", "stats")["pid"] == s.pid


def test_a_live_masters_socket_is_never_taken_over(server, tmp_path):
    """Two servers given one control socket path (Gunicorn's default is
    one per user): the second leaves the first's socket alone and listens
    beside it; its exit removes only its own; a stale socket (its master
    killed) is taken over."""
    path = str(tmp_path / "shared.ctl")
    first = server("--control-socket", path, "ops_app:app")
    wait_socket(path)
    second = server("--control-socket", path, "ops_app:app")
    own = str(tmp_path / ("shared.%d.ctl" % second.pid))
    wait_socket(own)
    line = "Control socket %s is in use by a running master (pid %d); this one listens at %s" % (path, first.pid, own)
    assert line in second.log()
    assert ctl_json(path, "show", "stats")["pid"] == first.pid
    assert ctl_json(own, "show", "stats")["pid"] == second.pid
    # a reload keeps the same socket, and says nothing more
    second.signal(signal.SIGHUP)
    wait_for(lambda: "Handling signal: hup" in second.log())
    assert ctl_json(own, "show", "stats")["pid"] == second.pid
    second.signal(signal.SIGTERM)
    assert second.wait_exit() == 0
    assert not os.path.exists(own)
    assert ctl_json(path, "show", "stats")["pid"] == first.pid
    assert second.log().count("is in use by a running master") == 1
    first.proc.kill()
    first.wait_exit()
    assert os.path.exists(path)  # left behind by the killed master
    third = server("--control-socket", path, "ops_app:app")
    wait_for(lambda: ctl_json(path, "show", "stats")["pid"] == third.pid, what="the stale socket taken over")
    assert "in use by a running master" not in third.log()


def test_disabled(server):
    s = server("--no-control-socket", "ops_app:app")
    s.wait_workers(1)
    assert s.request()[0] == 200
    assert not os.path.exists(s.default_control_socket)
    assert "Control socket listening" not in s.log()


def test_show_verbs(server):
    s = server("-w", "2", "ops_app:app")
    path = wait_socket(s.default_control_socket)
    workers = s.wait_workers(2)
    for _ in range(3):
        s.request()

    data = ctl_json(path, "show", "workers")
    assert data["count"] == 2
    assert sorted(w["pid"] for w in data["workers"]) == workers
    assert [w["age"] for w in data["workers"]] == [1, 2]
    for w in data["workers"]:
        assert w["booted"] is True and w["aborted"] is False and w["retiring"] is False
        assert 0 <= w["last_heartbeat"] < 30
        assert w["rss"] > 1 << 20 and w["in_flight"] == 0
    assert sum(w["requests"] for w in data["workers"]) == 3
    human = ctl(path, "show", "workers").stdout
    assert human.splitlines()[0].split() == [
        "PID",
        "AGE",
        "BOOTED",
        "REQUESTS",
        "INFLIGHT",
        "RSS",
        "PSS",
        "USS",
        "LAST_BEAT",
    ]
    assert "Total: 2 workers" in human

    stats = ctl_json(path, "show", "stats")
    assert stats["pid"] == s.pid and stats["workers_current"] == 2 and stats["workers_target"] == 2
    assert stats["workers_spawned"] == 2 and stats["reloads"] == 0 and stats["dirty_arbiter_pid"] is None
    assert stats["requests"] == 3 and stats["requests_by_status"]["2xx"] == 3
    assert "Workers target:   2" in ctl(path, "show", "stats").stdout

    config = ctl_json(path, "show", "config")
    assert config["workers"] == 2 and config["worker_class"] == "sync"
    assert config["bind"] == ["127.0.0.1:%d" % s.port]
    assert config["control_socket"] == path and config["control_socket_disable"] is False
    assert config["proc_name"] == "ops_app:app" and config["metrics_bind"] is None
    assert "workers: 2" in ctl(path, "show", "config").stdout.splitlines()

    listeners = ctl_json(path, "show", "listeners")
    assert listeners["count"] == 1
    assert listeners["listeners"][0]["address"] == "http://127.0.0.1:%d" % s.port
    assert listeners["listeners"][0]["type"] == "tcp"
    assert "http://127.0.0.1:%d" % s.port in ctl(path, "show", "listeners").stdout

    everything = ctl_json(path, "show", "all")
    assert everything["arbiter"] == {"pid": s.pid, "type": "arbiter", "role": "master"}
    assert everything["web_worker_count"] == 2 and everything["dirty_arbiter"] is None
    assert "WEB WORKERS (2)" in ctl(path, "show", "all").stdout

    assert ctl_json(path, "show", "dirty") == {"enabled": False, "pid": None, "workers": [], "apps": []}
    assert ctl(path, "show", "dirty").stdout.strip() == "Dirty arbiter not running"
    assert ctl_json(path, "dirty", "add") == {"success": False, "error": "Dirty arbiter not running"}

    commands = ctl_json(path, "help")["commands"]
    assert "worker kill <PID>" in commands and "shutdown [graceful|quick]" in commands
    assert "top [--once]" in ctl(path, "help").stdout


def test_worker_add_remove_kill_act_like_ttin_ttou(server, tmp_path):
    changes = tmp_path / "changes"
    conf = tmp_path / "hooks.py"
    conf.write_text(
        "def nworkers_changed(server, new, old):\n    open(%r, 'a').write('%%s %%s\\n' %% (old, new))\n" % str(changes)
    )
    s = server("-c", str(conf), "-w", "1", "ops_app:app")
    path = wait_socket(s.default_control_socket)
    first = s.wait_workers(1)

    assert ctl_json(path, "worker", "add", "2") == {"added": 2, "previous": 1, "total": 3}
    s.wait_workers(3)
    assert ctl_json(path, "worker", "remove") == {"removed": 1, "previous": 3, "total": 2}
    s.wait_workers(2)
    # never below one
    assert ctl_json(path, "worker", "remove", "5") == {"removed": 1, "previous": 2, "total": 1}
    s.wait_workers(1)
    assert changes.read_text().split("\n")[:4] == ["None 1", "1 3", "3 2", "2 1"]
    # the oldest went first, as with TTOU
    assert s.workers() != first

    victim = s.workers()[0]
    assert ctl_json(path, "worker", "kill", str(victim)) == {"success": True, "killed": victim}
    s.wait_workers(1, exclude=[victim])
    assert ctl_json(path, "worker", "kill", "1") == {"success": False, "error": "Worker 1 not found"}
    restarts = ctl_json(path, "show", "stats")["restarts"]
    assert restarts["terminated"] == 1 and restarts["crash"] == 0
    human = ctl(path, "worker", "add").stdout
    assert json.loads(human) == {"added": 1, "previous": 1, "total": 2}


def test_reload_and_reopen_take_the_signal_path(server):
    s = server("-w", "2", "ops_app:app")
    path = wait_socket(s.default_control_socket)
    old = s.wait_workers(2)
    assert ctl_json(path, "reload") == {"status": "reloading"}
    wait_for(lambda: (lambda w: len(w) == 2 and not set(w) & set(old))(s.workers()), what="a new generation")
    assert "Handling signal: hup" in s.log()
    assert ctl_json(path, "show", "stats")["reloads"] == 1
    assert ctl_json(path, "reopen") == {"status": "reopening"}
    wait_for(lambda: "Handling signal: usr1" in s.log(), what="USR1")


def test_shutdown_graceful(server):
    s = server("ops_app:app")
    path = wait_socket(s.default_control_socket)
    r = ctl(path, "shutdown")
    assert r.returncode == 0 and json.loads(r.stdout) == {"status": "shutting_down", "mode": "graceful"}
    assert s.wait_exit() == 0
    assert "Handling signal: term" in s.log()
    assert not os.path.exists(path)


def test_shutdown_quick(server):
    s = server("ops_app:app")
    path = wait_socket(s.default_control_socket)
    assert ctl_json(path, "shutdown", "quick") == {"status": "shutting_down", "mode": "quick"}
    assert s.wait_exit() == 0
    assert "Handling signal: int" in s.log()


def test_top(server):
    s = server("-w", "2", "ops_app:app")
    path = wait_socket(s.default_control_socket)
    workers = s.wait_workers(2)
    s.request()
    r = ctl(path, "top", "--once")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ferrocorn master %d  up " % s.pid)
    assert "workers 2/2" in lines[0] and "requests 1" in lines[0]
    assert lines[3].split() == ["PID", "AGE", "REQUESTS", "INFLIGHT", "RSS", "PSS", "USS", "LAST_BEAT", "STATE"]
    rows = {int(line.split()[0]): line.split() for line in lines[4:]}
    assert sorted(rows) == workers
    # RSS, PSS and USS in MiB; a worker's unique pages are fewer than its
    # proportional share, which is at most its resident set.
    for row in rows.values():
        assert row[-1] == "serving", row
        rss, pss, uss = (float(v.rstrip("M")) for v in row[4:7])
        assert 0 < uss <= pss <= rss, row
    snap = ctl_json(path, "top", "--once")
    assert snap["stats"]["pid"] == s.pid
    assert sorted(w["pid"] for w in snap["workers"]) == workers
    # the live view refreshes until interrupted
    live = subprocess.Popen(
        [os.path.join(BIN, "ferrocornc"), "-s", path, "top", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        assert live.poll() is None
    finally:
        live.send_signal(signal.SIGINT)
        out, _ = live.communicate(timeout=10)
    assert live.returncode == 0
    assert out.count("ferrocorn master %d" % s.pid) >= 2
    assert "/s)" in out  # the rate, from the second refresh on


def test_errors(server, tmp_path):
    s = server("ops_app:app")
    path = wait_socket(s.default_control_socket)
    r = ctl(path, "fly")
    assert r.returncode == 1 and r.stderr.strip() == "Error: Invalid argument: Unknown command: fly"
    r = ctl(path, "worker", "add", "two")
    assert "invalid literal for int() with base 10: 'two'" in r.stderr
    r = ctl(str(tmp_path / "nothing.ctl"), "show", "workers")
    assert r.returncode == 1 and "Failed to connect" in r.stderr
    r = ctl(path, "-v")
    assert r.stdout.startswith("ferrocornc (ferrocorn ")


def test_protocol_edges(server):
    s = server("ops_app:app")
    path = wait_socket(s.default_control_socket)
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    c.connect(path)
    # pipelined requests are answered in order; ids are echoed as sent
    c.sendall(
        frame({"id": "a", "command": "help"})
        + frame({"id": 2, "command": "worker", "args": ["nope"]})
        + frame({"command": ""})
    )
    first, second, third = read_frame(c), read_frame(c), read_frame(c)
    assert first["id"] == "a" and first["status"] == "ok" and "commands" in first["data"]
    assert second == {"id": 2, "status": "error", "error": "Invalid argument: Unknown worker action: nope"}
    assert third == {"id": 0, "status": "error", "error": "Empty command"}
    # malformed JSON ends the connection, as with Gunicorn
    c.sendall(struct.pack(">I", 3) + b"{{{")
    assert read_frame(c) is None
    c.close()
    # a message over the limit too
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    c.connect(path)
    c.sendall(struct.pack(">I", 64 << 20))
    assert read_frame(c) is None
    c.close()
    assert s.request()[0] == 200


def gunicornc(path, command, as_json=False):
    return ctl(path, *command.split(), tool="gunicornc", as_json=as_json)


def test_gunicornc_works_against_ferrocorn(server):
    s = server("-w", "2", "ops_app:app")
    path = wait_socket(s.default_control_socket)
    workers = s.wait_workers(2)
    out = gunicornc(path, "show workers").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "AGE", "BOOTED", "LAST_BEAT"]
    rows = {int(line.split()[0]): line.split()[1:] for line in lines[2:4]}
    ages = {w["pid"]: w["age"] for w in ctl_json(path, "show", "workers")["workers"]}
    assert sorted(rows) == workers and sorted(ages.values()) == [1, 2]
    for pid, (age, booted, beat, ago) in rows.items():
        assert (int(age), booted, ago) == (ages[pid], "yes", "ago")
        assert beat.endswith("s") and 0 <= float(beat[:-1]) < 30
    assert "Total: 2 workers" in out
    assert "PID:              %d" % s.pid in gunicornc(path, "show stats").stdout
    assert "workers: 2" in gunicornc(path, "show config").stdout
    assert "http://127.0.0.1:%d" % s.port in gunicornc(path, "show listeners").stdout
    assert "WEB WORKERS (2)" in gunicornc(path, "show all").stdout
    assert "Dirty arbiter not running" in gunicornc(path, "show dirty").stdout
    assert "worker add [N]" in gunicornc(path, "help").stdout
    assert json.loads(gunicornc(path, "show stats", as_json=True).stdout)["workers_target"] == 2
    assert json.loads(gunicornc(path, "worker add 1").stdout) == {"added": 1, "previous": 2, "total": 3}
    s.wait_workers(3)
    assert json.loads(gunicornc(path, "worker remove 1").stdout)["total"] == 2
    s.wait_workers(2)
    r = gunicornc(path, "bogus")
    assert r.returncode == 1 and "Unknown command: bogus" in r.stderr
    assert json.loads(gunicornc(path, "shutdown").stdout)["status"] == "shutting_down"
    assert s.wait_exit() == 0


def test_ferrocornc_works_against_gunicorn(tmp_path):
    """The same client talks to a real Gunicorn 27 master; the columns it
    does not send show as '-'."""
    port_sock = socket.socket()
    port_sock.bind(("127.0.0.1", 0))
    port = port_sock.getsockname()[1]
    port_sock.close()
    path = str(tmp_path / "gunicorn.ctl")
    log = open(str(tmp_path / "gunicorn.log"), "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "1",
            "-b",
            "127.0.0.1:%d" % port,
            "--control-socket",
            path,
            "ops_app:app",
        ],
        stdout=log,
        stderr=log,
        env=server_env(),
        cwd=str(tmp_path),
    )
    try:
        wait_socket(path)
        pids = wait_for(lambda: worker_pids(path) or None, what="gunicorn's worker")
        out = ctl(path, "show", "workers").stdout
        row = next(line for line in out.splitlines() if line.startswith(str(pids[0]))).split()
        assert row[3:6] == ["-", "-", "-"]
        assert "Workers target:   1" in ctl(path, "show", "stats").stdout
        top = ctl(path, "top", "--once").stdout.splitlines()
        assert top[0].startswith("ferrocorn master %d  up " % proc.pid)
        # Gunicorn sends no uptime (the age is its spawn number) and its
        # master cannot tell whether a worker booted; no memory figures
        row = top[4].split()
        assert row[:7] + row[8:] == [str(pids[0]), "#1", "-", "-", "-", "-", "-", "-"]
        assert row[7].endswith("s") and 0 <= float(row[7][:-1]) < 30, row
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)
        log.close()
