"""``ferrocornc top``: the workers of a running master, refreshed every
second: pid, age, requests, in-flight, memory (RSS, and PSS and USS where
the master can read them) and last heartbeat, with the
master's totals and the request rate over the last interval."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from ferrocorn.ctl.client import ControlClient
from ferrocorn.ctl.formats import duration, mib

CLEAR = "\x1b[H\x1b[2J"


def snapshot(client: ControlClient) -> dict[str, Any]:
    snap = {"stats": client.send("show stats"), "workers": client.send("show workers").get("workers", [])}
    if snap["stats"].get("dirty_arbiter_pid"):
        snap["dirty"] = client.send("show dirty")
    return snap


def state(w: dict[str, Any]) -> str:
    # Gunicorn's master never learns that a worker booted (the flag is set
    # in the worker's own copy), so without ferrocorn's fields it is unknown.
    if "retiring" not in w:
        return "-"
    if w["retiring"]:
        return "retiring"
    return "serving" if w.get("booted") else "booting"


def render(snap: dict[str, Any], rate: float | None = None) -> str:
    stats, workers = snap["stats"], snap["workers"]
    requests = stats.get("requests")
    head = "ferrocorn master %s  up %s  workers %s/%s" % (
        stats.get("pid", "?"),
        duration(stats.get("uptime")),
        stats.get("workers_current", len(workers)),
        stats.get("workers_target", "?"),
    )
    if requests is not None:
        head += "  requests %s" % requests
        if rate is not None:
            head += " (%.1f/s)" % rate
        head += "  in flight %s" % stats.get("in_flight", 0)
    restarts = ", ".join("%s %s" % (k, v) for k, v in (stats.get("restarts") or {}).items() if v)
    lines = [head, "restarts: %s" % (restarts or "none"), ""]
    lines.append(
        "%-8s %-10s %-9s %-9s %-9s %-9s %-9s %-10s %s"
        % ("PID", "AGE", "REQUESTS", "INFLIGHT", "RSS", "PSS", "USS", "LAST_BEAT", "STATE")
    )
    for w in workers:
        uptime = w.get("uptime")
        hb = w.get("last_heartbeat")
        lines.append(
            "%-8s %-10s %-9s %-9s %-9s %-9s %-9s %-10s %s"
            % (
                w.get("pid", "?"),
                duration(uptime) if uptime is not None else "#%s" % w.get("age", "?"),
                w.get("requests", "-"),
                w.get("in_flight", "-"),
                mib(w.get("rss")),
                mib(w.get("pss")),
                mib(w.get("uss")),
                "-" if hb is None else "%.1fs" % hb,
                state(w),
            )
        )
    dirty = snap.get("dirty")
    if dirty and dirty.get("enabled"):
        lines += ["", "dirty arbiter %s  queued %s" % (dirty.get("pid", "?"), dirty.get("queued", 0))]
        lines.append("%-8s %-6s %-9s %-9s %-10s %s" % ("PID", "AGE", "CALLS", "INFLIGHT", "LAST_BEAT", "APPS"))
        for w in dirty.get("workers", []):
            hb = w.get("last_heartbeat")
            lines.append(
                "%-8s %-6s %-9s %-9s %-10s %s"
                % (
                    w.get("pid", "?"),
                    w.get("age", "?"),
                    w.get("calls", "-"),
                    w.get("in_flight", "-"),
                    "-" if hb is None else "%.1fs" % hb,
                    ",".join(w.get("apps", [])),
                )
            )
    return "\n".join(lines)


def run(
    client: ControlClient, once: bool = False, interval: float = 1.0, as_json: bool = False, out: TextIO | None = None
) -> int:
    out = out or sys.stdout
    if once:
        snap = snapshot(client)
        out.write((json.dumps(snap, indent=2) if as_json else render(snap)) + "\n")
        return 0
    clear = out.isatty()
    last = None
    while True:
        snap = snapshot(client)
        now = time.monotonic()
        rate = None
        total = snap["stats"].get("requests")
        if last is not None and total is not None and now > last[0]:
            rate = max(0, total - last[1]) / (now - last[0])
        last = (now, total)
        text = json.dumps(snap) if as_json else render(snap, rate)
        out.write((CLEAR if clear and not as_json else "") + text + "\n")
        out.flush()
        time.sleep(interval)
