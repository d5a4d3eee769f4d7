"""Three ferrocorn hosts behind HAProxy, for real, on one machine.

Each "host" is a network namespace the test makes, joined to the test's own
namespace by a veth pair on a bridge over a private /24; every host runs
ferrocorn on 0.0.0.0:8000 with its probes on 0.0.0.0:9100, as on three
machines. HAProxy (Debian's) runs docs/deployment/haproxy.cfg itself, with
only its listening address and the hosts' addresses changed: the PROXY
protocol to each host, health checks on /readyz. A bounded load generator
(loadgen.py) sends requests through HAProxy while the test

- rolls an upgrade across the hosts, one at a time (USR2, WINCH, TERM of
  the old master, then the host back in HAProxy's rotation before the
  next): not one request may fail;
- kills one host's master and workers with SIGKILL, as a host that dies:
  HAProxy takes it out, and only requests that were in flight on it may
  fail. They are counted, printed and bounded.

Everything the test makes (namespaces, links, processes) is removed at the
end, whatever happened. It needs root (network namespaces) and haproxy.
"""

import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import HERE, children, pid_alive, read_all, read_pid, server_env, wait_for
from loadgen import LoadGen

DOCS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "deployment")
HOSTS = 3
APP_PORT, PROBE_PORT = 8000, 9100
# Every request pauses this long in the app, so that requests are in
# flight on a host when it is upgraded or killed.
APP_PAUSE_MS = "20"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def missing_capability():
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    if not shutil.which("haproxy"):
        return "haproxy not installed (make ci-deps installs it)"
    probe = "ferrocorn-probe-%d" % os.getpid()
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return "cannot create a network namespace: %s" % made.stderr.strip()
    ip("netns", "del", probe, check=False)
    return None


def free_subnet():
    """A 10.213.N.0/24 no interface or route of this machine uses."""
    used = ip("-o", "addr").stdout + ip("route").stdout
    for n in range(os.getpid() % 200, 256):
        if "10.213.%d." % n not in used:
            return "10.213.%d" % n
    raise AssertionError("no free 10.213.N.0/24 subnet")


class Net:
    """The bridge in the test's namespace (the balancer's side, .1) and one
    namespace per host (.11, .12, ...)."""

    def __init__(self):
        self.tag = os.getpid()
        self.subnet = free_subnet()
        self.bridge = "fcb%d" % self.tag
        self.balancer_ip = self.subnet + ".1"
        self.namespaces = []
        self.addresses = []

    def create(self):
        tag = self.tag
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", self.balancer_ip + "/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(1, HOSTS + 1):
            ns, outside = "ferrocorn-test-%d-host%d" % (tag, i), "fcv%dh%d" % (tag, i)
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", outside, "master", self.bridge)
            ip("link", "set", outside, "up")
            address = "%s.%d" % (self.subnet, 10 + i)
            ip("-n", ns, "addr", "add", address + "/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            self.addresses.append(address)

    def remove(self):
        """Ends every process left in the namespaces (each by its pid),
        then removes the namespaces (their veth ends go with them, and the
        peers with those) and the bridge."""
        for ns in self.namespaces:
            pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in pids:
                wait_for(lambda pid=pid: not pid_alive(pid), timeout=10, what="pid %d to go" % pid)
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)
        left = ip("netns", "list").stdout
        assert not any(ns in left for ns in self.namespaces), left
        assert ip("link", "show", self.bridge, check=False).returncode != 0, "the bridge is still there"


class Host:
    """ferrocorn on one host, started as a deploy would: the app on
    APP_PORT behind the PROXY protocol, the probes on PROBE_PORT."""

    def __init__(self, net, index, tmp_path):
        self.name = "web%d" % (index + 1)
        self.ns = net.namespaces[index]
        self.address = net.addresses[index]
        directory = tmp_path / self.name
        directory.mkdir()
        self.pidfile = str(directory / "ferrocorn.pid")
        self.access_log = str(directory / "access.json")
        self.error_log = str(directory / "error.log")
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "ferrocorn"]
        argv += ["-k", "gthread", "--threads", "2", "-w", "2"]
        argv += ["--bind", "0.0.0.0:%d" % APP_PORT, "--metrics-bind", "0.0.0.0:%d" % PROBE_PORT]
        argv += ["--proxy-protocol", "v2", "--proxy-allow-from", net.balancer_ip]
        argv += ["--forwarded-allow-ips", net.balancer_ip, "--graceful-timeout", "30"]
        argv += ["--pid", self.pidfile, "--access-logfile", self.access_log, "--access-log-json"]
        argv += ["--error-logfile", self.error_log, "ops_app:app"]
        env = server_env({"OPS_SLEEP_MS": APP_PAUSE_MS})
        # `ip netns exec` enters the namespace and execs the command: the
        # pid is the master's.
        self.proc = subprocess.Popen(argv, env=env, cwd=str(directory), stdout=subprocess.DEVNULL)
        self.master = self.proc.pid

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def readyz(self):
        """The status /readyz answers, or None when nothing answers."""
        try:
            with socket.create_connection((self.address, PROBE_PORT), timeout=2) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                head = s.recv(64)
        except OSError:
            return None
        return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None

    def wait_ready(self):
        def ready():
            if not pid_alive(self.master):
                raise AssertionError("%s's master exited:\n%s" % (self.name, self.log()))
            return self.readyz() == 200

        wait_for(ready, timeout=30, what="%s to be ready" % self.name)

    def upgrade(self, load):
        """USR2, WINCH and TERM on the old master (Gunicorn's procedure):
        returns once the new master alone serves and was promoted."""
        old, old_workers = self.master, children(self.master)
        os.kill(old, signal.SIGUSR2)
        new = wait_for(lambda: read_pid(self.pidfile + ".2"), what="%s's new master" % self.name)
        wait_for(lambda: len(children(new)) == 2, what="%s's new workers" % self.name)
        new_workers = children(new)
        wait_for(
            lambda: set(load.result().pids) & set(new_workers), timeout=15, what="%s's new workers to serve" % self.name
        )
        os.kill(old, signal.SIGWINCH)
        wait_for(lambda: not any(pid_alive(p) for p in old_workers), what="%s's old workers to stop" % self.name)
        os.kill(old, signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0
        wait_for(lambda: read_pid(self.pidfile) == new, what="%s's new master promoted" % self.name)
        self.master = new
        return new_workers

    def kill(self):
        """SIGKILL to the master and its workers together, as when the
        machine dies; returns once none of them is left."""
        victims = [self.master, *children(self.master)]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: not any(pid_alive(p) for p in victims), interval=0.001, what="%s's processes to die" % self.name
        )
        return victims


class Balancer:
    """HAProxy running docs/deployment/haproxy.cfg, listening on loopback
    and pointing at the test's hosts, with an admin socket to read what it
    thinks of each server."""

    def __init__(self, net, tmp_path):
        with open(os.path.join(DOCS, "haproxy.cfg")) as f:
            config = f.read()
        self.port = free_port()
        self.stats = str(tmp_path / "haproxy.sock")
        config, binds = re.subn(r"(?m)^(\s*)bind :80$", r"\g<1>bind 127.0.0.1:%d" % self.port, config)
        servers = iter(net.addresses)
        config, listed = re.subn(
            r"(?m)^(\s*server web\d) \S+:%d$" % APP_PORT, lambda m: "%s %s:%d" % (m[1], next(servers), APP_PORT), config
        )
        config, globals_ = re.subn(
            r"(?m)^global$", "global\n    stats socket %s mode 600 level admin" % self.stats, config
        )
        # the documented file must still have the shape this test edits
        assert (binds, listed, globals_) == (1, HOSTS, 1), (binds, listed, globals_)
        path = tmp_path / "haproxy.cfg"
        path.write_text(config)
        self.log_path = tmp_path / "haproxy.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=self._log, stderr=subprocess.STDOUT)

    def _stat(self):
        """The backend's servers' rows of HAProxy's `show stat`."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.stats)
                s.sendall(b"show stat\n")
                data = read_all(s)
        except OSError:
            return []
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return [r for r in rows if r["pxname"] == "ferrocorn" and r["svname"].startswith("web")]

    def states(self):
        """{server name: status}, as HAProxy's stats say ("UP", "DOWN",
        "UP 1/2" while going down...)."""
        return {r["svname"]: r["status"] for r in self._stat()}

    def rescues(self):
        """{server name: {counter: n}} of what HAProxy had to do about
        each server's failures: connection errors, response errors, retries
        and redispatches to another server."""
        names = ("econ", "eresp", "wretr", "wredis")
        return {r["svname"]: {n: int(r[n] or 0) for n in names} for r in self._stat()}

    def wait_state(self, name, state, timeout=20):
        wait_for(lambda: self.states().get(name) == state, timeout=timeout, what="HAProxy to see %s %s" % (name, state))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def net():
    why = missing_capability()
    if why:
        pytest.skip(why)
    made = Net()
    try:
        made.create()
        yield made
    finally:
        made.remove()


def test_rolling_upgrade_and_a_dead_host_behind_haproxy(net, tmp_path):
    hosts = [Host(net, i, tmp_path) for i in range(HOSTS)]
    balancer = None
    try:
        for h in hosts:
            h.wait_ready()
        balancer = Balancer(net, tmp_path)
        for h in hosts:
            balancer.wait_state(h.name, "UP")
        # Clients that keep their connection to HAProxy and clients that
        # open one per request; bounded in time and count.
        load = LoadGen(port=balancer.port, keepalive=3, fresh=3, duration=50, max_requests=200000, timeout=10)
        with load:
            load.wait_ok(50)
            # every host serves: leastconn spreads the clients over them
            wait_for(
                lambda: all(set(load.result().pids) & set(children(h.master)) for h in hosts),
                what="every host to serve",
            )

            # -- the rolling upgrade: one host at a time ----------------------
            for h in hosts:
                h.upgrade(load)
                # the new master answers the probes (the old one left the
                # address at WINCH), and HAProxy has the host in rotation
                h.wait_ready()
                balancer.wait_state(h.name, "UP")
                load.wait_ok(50)
            upgraded = load.result()
            rescued = balancer.rescues()
            print("rolling upgrade through HAProxy:", upgraded.summary(), rescued)
            assert not upgraded.failures, "%s\n%s" % (upgraded.summary(), upgraded.failures[:10])
            # ...and none was saved by HAProxy's retries either: no host
            # refused, reset or dropped a request during its upgrade
            assert all(not any(c.values()) for c in rescued.values()), rescued

            # -- a host dies ---------------------------------------------------
            dead = hosts[1]
            killed_at = time.monotonic()
            victims = dead.kill()
            gone_at = time.monotonic()
            balancer.wait_state(dead.name, "DOWN")
            down_at = time.monotonic()
            after_down = load.ok
            load.wait_ok(200)
        res = load.result()

        failed = res.failures[len(upgraded.failures) :]
        rescued = balancer.rescues()
        print(
            "SIGKILL of %s (pids %s): %d failed request(s), HAProxy marked it DOWN %.1f s after the kill, "
            "and on it: %s; whole run: %s"
            % (dead.name, victims, len(failed), down_at - killed_at, rescued[dead.name], res.summary())
        )
        for f in failed:
            print("  failed: %r (started %.3f s after the kill)" % (f, f.started - killed_at))
        # Only requests that were in flight on the dead host may fail: each
        # of them began before its processes were gone, and each client has
        # at most one request in flight.
        assert len(failed) <= load.keepalive + load.fresh, res.summary()
        late = [f for f in failed if f.started > gone_at]
        assert not late, "requests sent after the host was dead failed: %s" % late
        # the load did reach the dead host before HAProxy took it out (what
        # failed there was retried on another host or counted above)
        assert rescued[dead.name]["wretr"] + rescued[dead.name]["wredis"] + len(failed) > 0, rescued
        # the others kept serving: nothing answered from the dead host after
        # HAProxy took it out, and the load went on
        assert load.ok - after_down >= 200
        survivors = set().union(*(children(h.master) for h in hosts if h is not dead))
        assert set(res.pids) & survivors
        assert balancer.states() == {h.name: ("DOWN" if h is dead else "UP") for h in hosts}

        # The PROXY protocol carried the client's address through HAProxy:
        # the hosts log the load generator's address, not the balancer's.
        with open(hosts[0].access_log) as f:
            first = json.loads(f.readline())
        assert first["client.address"] == "127.0.0.1", first
    finally:
        if balancer is not None:
            balancer.stop()
        # each host's current master (an upgraded one is not the test's
        # child) stops gracefully; the net fixture kills what is left
        for h in hosts:
            if pid_alive(h.master):
                os.kill(h.master, signal.SIGTERM)
        for h in hosts:
            wait_for(lambda h=h: not pid_alive(h.master), timeout=40, what="%s to stop" % h.name)
            if h.proc.poll() is None:
                h.proc.wait(timeout=10)
