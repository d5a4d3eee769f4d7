"""Human-readable answers, laid out as Gunicorn's ``gunicornc`` shows them,
with ferrocorn's extra columns where the server sends them; a Gunicorn
server's answers show ``-`` there."""

from __future__ import annotations

import json
from typing import Any


def duration(seconds: float | None) -> str:
    """1h 2m 3s / 4m 5s / 6s, as gunicornc shows uptime."""
    if seconds is None:
        return "unknown"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%dh %dm %ds" % (hours, minutes, secs)
    if minutes:
        return "%dm %ds" % (minutes, secs)
    return "%ds" % secs


def mib(n: int | None) -> str:
    return "-" if n is None else "%.1fM" % (n / 1048576.0)


def beat(seconds: float | None) -> str:
    return "n/a" if seconds is None else "%ss ago" % seconds


def workers(data: dict[str, Any]) -> str:
    rows = data.get("workers", [])
    if not rows:
        return "No workers running"
    lines = [
        "%-10s %-6s %-8s %-9s %-9s %-9s %-9s %-9s %s"
        % ("PID", "AGE", "BOOTED", "REQUESTS", "INFLIGHT", "RSS", "PSS", "USS", "LAST_BEAT"),
        "-" * 90,
    ]
    for w in rows:
        lines.append(
            "%-10s %-6s %-8s %-9s %-9s %-9s %-9s %-9s %s"
            % (
                w.get("pid", "?"),
                w.get("age", "?"),
                "yes" if w.get("booted") else "no",
                w.get("requests", "-"),
                w.get("in_flight", "-"),
                mib(w.get("rss")),
                mib(w.get("pss")),
                mib(w.get("uss")),
                beat(w.get("last_heartbeat")),
            )
        )
    lines += ["", "Total: %s workers" % data.get("count", len(rows))]
    return "\n".join(lines)


def stats(data: dict[str, Any]) -> str:
    lines = [
        "Uptime:           %s" % duration(data.get("uptime")),
        "PID:              %s" % data.get("pid", "unknown"),
        "Workers current:  %s" % data.get("workers_current", 0),
        "Workers target:   %s" % data.get("workers_target", 0),
        "Workers spawned:  %s" % data.get("workers_spawned", 0),
        "Workers killed:   %s" % data.get("workers_killed", 0),
        "Reloads:          %s" % data.get("reloads", 0),
    ]
    if data.get("dirty_arbiter_pid"):
        lines.append("Dirty arbiter:    %s" % data["dirty_arbiter_pid"])
    if "requests" in data:
        by_status = data.get("requests_by_status", {})
        shown = ", ".join("%s %s" % (k, v) for k, v in by_status.items() if v)
        lines.append("Requests:         %s%s" % (data["requests"], " (%s)" % shown if shown else ""))
        lines.append("In flight:        %s" % data.get("in_flight", 0))
        restarts = data.get("restarts", {})
        shown = ", ".join("%s %s" % (k, v) for k, v in restarts.items() if v)
        lines.append("Restarts:         %s" % (shown or "none"))
    return "\n".join(lines)


def listeners(data: dict[str, Any]) -> str:
    rows = data.get("listeners", [])
    if not rows:
        return "No listeners bound"
    lines = ["%-40s %-8s %s" % ("ADDRESS", "TYPE", "FD"), "-" * 55]
    for lnr in rows:
        lines.append("%-40s %-8s %s" % (lnr.get("address", "?"), lnr.get("type", "?"), lnr.get("fd", "?")))
    lines += ["", "Total: %s listeners" % data.get("count", len(rows))]
    return "\n".join(lines)


def config(data: dict[str, Any]) -> str:
    lines = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        lines.append("%s: %s" % (key, value))
    return "\n".join(lines)


def help_(data: dict[str, Any]) -> str:
    commands = data.get("commands", {})
    width = max((len(c) for c in commands), default=0)
    lines = ["Available commands:", ""]
    for cmd, desc in sorted(commands.items()):
        lines.append("  %-*s %s" % (width + 2, cmd, desc))
    lines += ["", "ferrocornc only:", "", "  %-*s %s" % (width + 2, "top [--once]", "Live view of the workers")]
    return "\n".join(lines)


def all_(data: dict[str, Any]) -> str:
    arbiter = data.get("arbiter") or {}
    lines = ["ARBITER (master)", "  PID: %s" % arbiter.get("pid", "?"), ""]
    web = data.get("web_workers", [])
    lines.append("WEB WORKERS (%s)" % data.get("web_worker_count", 0))
    if web:
        lines.append("  %-10s %-6s %-8s %s" % ("PID", "AGE", "BOOTED", "LAST_BEAT"))
        lines.append("  " + "-" * 38)
        for w in web:
            lines.append(
                "  %-10s %-6s %-8s %s"
                % (
                    w.get("pid", "?"),
                    w.get("age", "?"),
                    "yes" if w.get("booted") else "no",
                    beat(w.get("last_heartbeat")),
                )
            )
    else:
        lines.append("  (none)")
    lines.append("")
    dirty = data.get("dirty_arbiter")
    lines.append("DIRTY ARBITER")
    lines.append("  PID: %s" % dirty.get("pid", "?") if dirty else "  (not running)")
    if dirty:
        lines += ["", "DIRTY WORKERS (%s)" % data.get("dirty_worker_count", 0)]
        lines += dirty_worker_rows(data.get("dirty_workers", []))
    return "\n".join(lines)


def dirty_worker_rows(workers: list[dict[str, Any]]) -> list[str]:
    """One line per dirty worker (its apps comma-separated)."""
    if not workers:
        return ["  (none)"]
    rows = ["  %-10s %-6s %-10s %s" % ("PID", "AGE", "LAST_BEAT", "APPS"), "  " + "-" * 50]
    for w in workers:
        rows.append(
            "  %-10s %-6s %-10s %s"
            % (w.get("pid", "?"), w.get("age", "?"), beat(w.get("last_heartbeat")), ", ".join(w.get("apps") or []))
        )
    return rows


def dirty(data: dict[str, Any]) -> str:
    if not data.get("enabled"):
        return "Dirty arbiter not running"
    lines = ["Dirty arbiter PID: %s" % data.get("pid"), "", "DIRTY WORKERS"]
    lines += dirty_worker_rows(data.get("workers", []))
    lines += ["", "DIRTY APPS"]
    for a in data.get("apps", []):
        limit = a.get("worker_count")
        lines.append(
            "  %s  workers %s/%s  pids %s"
            % (
                a.get("import_path"),
                a.get("current_workers", 0),
                "all" if limit is None else limit,
                ", ".join(str(p) for p in a.get("worker_pids", [])) or "-",
            )
        )
    return "\n".join(lines)


FORMATS = {
    "show workers": workers,
    "show stats": stats,
    "show listeners": listeners,
    "show config": config,
    "show all": all_,
    "show dirty": dirty,
    "help": help_,
}


def render(command: str, data: Any) -> str:
    """The answer to `command` for a person; JSON for the others, as
    gunicornc does."""
    words = command.lower().split()
    key = " ".join(words[:2]) if words[:1] == ["show"] else " ".join(words[:1])
    fmt = FORMATS.get(key)
    if fmt is not None:
        return fmt(data)
    return json.dumps(data, indent=2) if data else "OK"
