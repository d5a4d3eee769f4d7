"""--max-worker-memory: a worker whose RSS passes the limit is recycled
gracefully (a new pid takes its place, requests keep being answered), the
master says which pid and why, and the restart is counted as max_memory."""

import re
import threading
import time

import pytest
from helpers import metrics_args, pid_alive, wait_for, wait_metric, wait_metrics

# A fresh worker of the test app is ~20 MiB; 60 MiB leaves room, and one
# 80 MiB allocation crosses it.
LIMIT = "60"


@pytest.mark.parametrize("kind,app", [("sync", "ops_app:app"), ("gthread", "ops_app:app"), ("asgi", "ops_app:asgi")])
def test_a_worker_over_the_limit_is_recycled(server, kind, app):
    margs, port = metrics_args()
    s = server("-k", kind, "-w", "2", "--max-worker-memory", LIMIT, *margs, app)
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


def test_off_by_default(server):
    s = server("ops_app:app")
    pid = int(s.request(path="/grow?mb=80")[2])
    time.sleep(2.5)
    assert pid_alive(pid)
    assert "max-worker-memory" not in s.log()
