"""--max-worker-memory: a worker whose RSS passes the limit is recycled
gracefully (a new pid takes its place, requests keep being answered), the
master says which pid and why, and the restart is counted as max_memory."""

import re
import threading
import time

import pytest
from helpers import WORKER_KINDS, metrics_args, pid_alive, start_kind, wait_for, wait_metric, wait_metrics

# A fresh worker of the test app is ~20 MiB; 60 MiB leaves room, and one
# 80 MiB allocation crosses it.
LIMIT = "60"


@pytest.mark.parametrize("kind", sorted(WORKER_KINDS))
def test_a_worker_over_the_limit_is_recycled(server, kind):
    margs, port = metrics_args()
    s = start_kind(server, kind, "-w", "2", "--max-worker-memory", LIMIT, *margs)
    wait_metrics(port)
    before = s.wait_workers(2)

    failures = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                if s.request(headers={"Connection": "close"})[0] != 200:
                    failures.append("status")
            except OSError as e:
                failures.append(e)
            time.sleep(0.01)

    t = threading.Thread(target=load)
    t.start()
    try:
        status, _, body = s.request(path="/grow?mb=80", headers={"Connection": "close"})
        assert status == 200
        grown = int(body)
        assert grown in before
        wait_for(lambda: not pid_alive(grown), timeout=15, what="the grown worker to be recycled")
        after = s.wait_workers(2, exclude=[grown])
    finally:
        stop.set()
        t.join()
    assert failures == []
    # the other worker was left alone
    assert next(p for p in before if p != grown) in after
    log = s.log()
    line = re.search(
        r"Worker \(pid:%d\) uses (\d+) MiB, over --max-worker-memory %s MiB after \d+ requests: recycling it"
        % (grown, LIMIT),
        log,
    )
    assert line, log
    assert int(line.group(1)) > int(LIMIT)
    page = wait_metric(port, 'ferrocorn_worker_restarts_total{cause="max_memory"}', lambda v: v == 1)
    assert page['ferrocorn_worker_restarts_total{cause="crash"}'] == 0


# How long the guard may take to act on a worker over the limit: it reads
# /proc at most once a second (CHECK_EVERY in src/arbiter/memory.rs), the
# master's loop turns at least once a second, and a worker found over the
# limit waits a random 0..2 s more (JITTER_MS); 2 s to spare.
GUARD_BOUND = 1 + 1 + 2 + 2


def test_fires_with_the_limit_and_never_without(server):
    """The same growth on two servers side by side, with and without
    --max-worker-memory: the guard recycles the limited one within its
    bound; the other (the default: off) keeps its worker past that bound."""
    unlimited = server("ops_app:app")
    limited = server("--max-worker-memory", LIMIT, "ops_app:app")
    kept = int(unlimited.request(path="/grow?mb=80")[2])
    grown_at = time.monotonic()
    recycled = int(limited.request(path="/grow?mb=80")[2])
    wait_for(lambda: "Worker (pid:%d) uses" % recycled in limited.log(), timeout=GUARD_BOUND, what="the guard to fire")
    time.sleep(max(0.0, GUARD_BOUND - (time.monotonic() - grown_at)))
    assert pid_alive(kept) and unlimited.workers() == [kept]
    assert "max-worker-memory" not in unlimited.log()
