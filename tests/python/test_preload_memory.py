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


def ksm_stat(pid):
    """/proc/PID/ksm_stat as a dict ("ksm_merge_any: yes" and "ksm_rmap_items 0" lines)."""
    with open("/proc/%d/ksm_stat" % pid) as f:
        return {line.split()[0].rstrip(":"): line.split()[-1] for line in f if line.strip()}


KSM = "/sys/kernel/mm/ksm/"


def test_memory_merge_marks_the_master_and_every_worker(server):
    if not os.path.exists("/proc/self/ksm_stat") or "ksm_merge_any" not in ksm_stat(os.getpid()):
        pytest.skip("this kernel has no per-process KSM (Linux 6.4+ with CONFIG_KSM)")
    s = server("--preload", "--memory-merge", "-w", "2", "preload_heavy:app")
    workers = s.wait_workers(2)
    for pid in [s.pid] + list(workers):
        assert ksm_stat(pid)["ksm_merge_any"] == "yes", pid
    with open(KSM + "run") as f:
        running = f.read().strip() == "1"
    said = "Memory merging (KSM) on" if running else "the kernel's page merging is off on this host"
    assert said in s.log()
    # Smart scan (Linux 6.7+) can keep a lone worker's copies from ever
    # merging: the master says so when it is on, and only then.
    smart = False
    if os.path.exists(KSM + "smart_scan"):
        with open(KSM + "smart_scan") as f:
            smart = f.read().strip() == "1"
    assert ("the kernel's smart scan is on" in s.log()) == smart
    plain = server("--preload", "preload_heavy:app")
    (worker,) = plain.wait_workers(1)
    assert ksm_stat(worker)["ksm_merge_any"] == "no"


def worker_uss(pid):
    fields = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[key] = int(rest.split()[0]) * 1024
    return fields["Private_Clean"] + fields["Private_Dirty"]


@pytest.fixture
def ksm_scanning():
    """The host's KSM scanner on and fast for the test, put back after
    (it is one switch for the whole machine: root only). Smart scan goes
    off for it: with it on, a lone worker's late copies may never be
    compared with the master's pages (see src/arbiter/merge.rs)."""
    if os.geteuid() != 0 or not os.access(KSM + "run", os.W_OK):
        pytest.skip("turning the host's KSM scanner on needs root")
    wanted = [("pages_to_scan", "5000"), ("smart_scan", "0"), ("run", "1")]
    saved = {}
    for key, value in wanted:
        if not os.path.exists(KSM + key):
            continue  # no smart scan before Linux 6.7
        with open(KSM + key) as f:
            saved[key] = f.read().strip()
        with open(KSM + key, "w") as f:
            f.write(value)
    yield
    for key, _ in reversed(wanted):
        if key in saved:
            with open(KSM + key, "w") as f:
                f.write(saved[key])


def test_memory_merge_gives_back_the_pages_reference_counting_copied(server, ksm_scanning):
    """A worker that read every preloaded record has written every record's
    reference count, so it holds its own copy of most of the heap; the
    counts are back once the request is over, and with --memory-merge the
    kernel merges those copies back into the master's pages. Side by side,
    the same app without it keeps its copy."""
    merged = server("--preload", "--memory-merge", "preload_heavy:app")
    plain = server("--preload", "preload_heavy:app")
    pids = {}
    for name, s in (("merged", merged), ("plain", plain)):
        status, _, body = s.request(path="/touch", headers={"Connection": "close"})
        assert status == 200
        pids[name] = int(body)
    copied = worker_uss(pids["plain"])
    assert copied > 20 * MIB, copied
    wait_for(lambda: worker_uss(pids["merged"]) < copied / 4, timeout=60, what="the merged worker's pages")
    assert worker_uss(pids["plain"]) > 20 * MIB
