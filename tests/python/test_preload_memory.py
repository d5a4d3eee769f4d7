"""--preload and the memory the workers share: the master freezes its heap
(gc.freeze()) before forking unless --no-preload-freeze says not to, so a
full collection in a worker leaves the shared pages alone; and the master
shows each worker's PSS and USS (from /proc/PID/smaps_rollup) on the
control socket and the metrics endpoint.

The app (apps/preload_heavy.py) builds about 40 MB of dicts and lists at
import and tells a worker's gc state at /gc."""

import json
import os
import re
import signal

import pytest
from helpers import ctl, ctl_json, metrics_args, scrape, wait_for, wait_metrics

MIB = 1 << 20
# The app's records are three containers each (a dict and two lists).
APP_CONTAINERS = 3 * 60_000


def gc_state(s):
    status, _, body = s.request(path="/gc", headers={"Connection": "close"})
    assert status == 200
    return json.loads(body)


def control_socket(s, name):
    path = os.path.join(s.cwd, name)
    wait_for(lambda: os.path.exists(path), what="the control socket %s" % path)
    return path


def test_preload_freezes_the_heap_the_workers_inherit(server):
    s = server("--preload", "preload_heavy:app")
    state = gc_state(s)
    # Every container of the app (and the interpreter's own) is frozen.
    assert state["freeze_count"] > APP_CONTAINERS, state
    # A replacement worker inherits the same frozen heap; the master froze
    # once, at its first fork.
    os.kill(state["pid"], signal.SIGKILL)
    s.wait_workers(1, exclude=[state["pid"]])
    s.wait_booted()
    again = wait_for(lambda: (lambda st: st if st["pid"] != state["pid"] else None)(gc_state(s)), what="the new worker")
    assert again["freeze_count"] > APP_CONTAINERS, again
    said = re.findall(r"Froze the preloaded heap before forking: (\d+) objects", s.log())
    assert len(said) == 1 and int(said[0]) > APP_CONTAINERS, said
    # Workers keep the interpreter's collection thresholds: with the heap
    # frozen, their collections never walk it (bench/preload_memory.py
    # found no gain in changing them).
    assert state["threshold"] == [700, 10, 10]


@pytest.mark.parametrize(
    "args",
    [("--preload", "--no-preload-freeze"), ()],
    ids=["preload-without-freeze", "no-preload"],
)
def test_nothing_frozen_when_off_or_without_preload(server, args):
    s = server(*args, "-w", "2", "preload_heavy:app")
    assert gc_state(s)["freeze_count"] == 0
    assert "Froze the preloaded heap" not in s.log()


def worker_after_full_collection(s, sock):
    """The one worker's `show workers` entry once it ran gc.collect()."""
    status, _, body = s.request(path="/collect", headers={"Connection": "close"})
    assert status == 200
    (w,) = ctl_json(sock, "show", "workers")["workers"]
    assert w["pid"] == int(body)
    return w


def test_a_full_collection_in_a_worker_keeps_the_frozen_heap_shared(server):
    """The same app on two servers side by side, heap frozen and not: after
    one full collection in the worker, the unfrozen one has copied the
    pages of the app's containers (the collector writes to every object it
    examines); the frozen one has not."""
    frozen = server("--preload", "--control-socket", "f.sock", "preload_heavy:app")
    unfrozen = server("--preload", "--no-preload-freeze", "--control-socket", "u.sock", "preload_heavy:app")
    kept = worker_after_full_collection(frozen, control_socket(frozen, "f.sock"))
    copied = worker_after_full_collection(unfrozen, control_socket(unfrozen, "u.sock"))
    # Measured: about 2.5 MiB frozen, 27 MiB unfrozen.
    assert kept["uss"] < 10 * MIB, kept
    assert copied["uss"] > kept["uss"] + 12 * MIB, (kept, copied)


def test_pss_and_uss_per_worker_on_the_control_socket_and_metrics(server):
    margs, port = metrics_args()
    s = server("--preload", "-w", "2", "--control-socket", "c.sock", *margs, "preload_heavy:app")
    sock = control_socket(s, "c.sock")
    wait_metrics(port)
    pids = s.wait_workers(2)
    s.request(headers={"Connection": "close"})

    data = ctl_json(sock, "show", "workers")
    assert sorted(w["pid"] for w in data["workers"]) == pids
    for w in data["workers"]:
        assert 0 < w["uss"] <= w["pss"] <= w["rss"], w
        # The preloaded 40 MB are shared three ways (master, two workers):
        # a worker's proportional share is well under its resident size.
        assert w["pss"] < 0.7 * w["rss"], w
    human = ctl(sock, "show", "workers").stdout.splitlines()
    assert human[0].split()[5:8] == ["RSS", "PSS", "USS"]
    for line in human[2:4]:
        rss, pss, uss = line.split()[5:8]
        assert all(v.endswith("M") for v in (rss, pss, uss)), line
        assert float(uss[:-1]) <= float(pss[:-1]) <= float(rss[:-1]), line

    page = scrape(port)
    for pid in pids:
        pss = page['ferrocorn_worker_pss_bytes{pid="%d"}' % pid]
        uss = page['ferrocorn_worker_uss_bytes{pid="%d"}' % pid]
        rss = page['ferrocorn_worker_rss_bytes{pid="%d"}' % pid]
        assert 0 < uss <= pss < 0.7 * rss, (pid, uss, pss, rss)
