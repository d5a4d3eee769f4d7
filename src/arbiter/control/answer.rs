//! The `data` of the answers to read-only commands, with the keys and value
//! types of Gunicorn 27's `CommandHandlers`, so `gunicornc` formats them.
//! ferrocorn adds keys of its own (requests, in-flight, RSS...), which
//! Gunicorn's client ignores and `ferrocornc` shows.

use super::super::dirty::DirtyView;
use super::super::observe::{Snapshot, WorkerView};
use super::super::stats::{Cause, STATUS_CLASSES};
use super::command::HELP;
use crate::net::listener::Address;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;

/// Seconds rounded to two decimals, as Gunicorn's `round(x, 2)`.
fn secs2(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn worker(w: &WorkerView) -> Value {
    json!({
        "pid": w.pid,
        "age": w.age,
        "booted": w.booted,
        "aborted": w.aborted,
        "last_heartbeat": secs2(w.silent),
        // ferrocorn's own
        "requests": w.requests,
        "in_flight": w.in_flight,
        "rss": w.rss,
        "pss": w.sharing.map(|m| m.pss),
        "uss": w.sharing.map(|m| m.uss),
        "uptime": secs2(w.uptime),
        "retiring": w.retiring,
    })
}

pub fn show_workers(s: &Snapshot<'_>) -> Value {
    let workers: Vec<Value> = s.workers.iter().map(worker).collect();
    json!({"workers": workers, "count": s.workers.len()})
}

pub fn show_all(s: &Snapshot<'_>) -> Value {
    let web: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            json!({"pid": w.pid, "type": "web", "age": w.age, "booted": w.booted, "last_heartbeat": secs2(w.silent)})
        })
        .collect();
    json!({
        "arbiter": {"pid": s.pid, "type": "arbiter", "role": "master"},
        "web_workers": web,
        "web_worker_count": s.workers.len(),
        "dirty_arbiter": s.dirty.as_ref().map(|d| json!({"pid": d.pid, "type": "dirty_arbiter", "role": "dirty master"})),
        "dirty_workers": dirty_workers(s.dirty.as_ref()),
        "dirty_worker_count": s.dirty.as_ref().map_or(0, |d| d.workers.len()),
    })
}

/// Gunicorn's dirty worker entries (its status answer's), then ferrocorn's.
fn dirty_workers(d: Option<&DirtyView>) -> Vec<Value> {
    let Some(d) = d else { return Vec::new() };
    d.workers
        .iter()
        .map(|w| {
            json!({
                "pid": w.pid,
                "age": w.age,
                "apps": w.apps,
                "booted": w.booted,
                "last_heartbeat": secs2(w.silent),
                // ferrocorn's own
                "calls": w.calls,
                "in_flight": w.in_flight,
                "retiring": w.retiring,
            })
        })
        .collect()
}

/// Gunicorn's `show dirty`: `enabled: false` while no dirty arbiter runs.
pub fn show_dirty(d: Option<&DirtyView>) -> Value {
    let Some(view) = d else { return json!({"enabled": false, "pid": null, "workers": [], "apps": []}) };
    let apps: Vec<Value> = view
        .apps
        .iter()
        .map(|a| {
            json!({
                "import_path": a.path,
                "worker_count": a.worker_count,
                "current_workers": a.worker_pids.len(),
                "worker_pids": a.worker_pids,
                // ferrocorn's own
                "calls": a.calls,
                "errors": a.errors,
                "timeouts": a.timeouts,
                "in_flight": a.in_flight,
            })
        })
        .collect();
    json!({
        "enabled": true,
        "pid": view.pid,
        "workers": dirty_workers(d),
        "apps": apps,
        // ferrocorn's own
        "target_workers": view.target,
        "queued": view.queued,
        "clients": view.clients,
        "arbiter_restarts": view.arbiter_restarts,
    })
}

/// What the dirty arbiter answered a MANAGE message (`dirty add/remove`).
pub fn tlv_json(v: &crate::dirty::wire::tlv::Value) -> Value {
    use crate::dirty::wire::tlv::Value as T;
    match v {
        T::None => Value::Null,
        T::Bool(b) => (*b).into(),
        T::Int(n) => (*n).into(),
        T::Float(x) => (*x).into(),
        T::Bytes(b) => String::from_utf8_lossy(b).into_owned().into(),
        T::Str(s) => s.clone().into(),
        T::List(items) => Value::Array(items.iter().map(tlv_json).collect()),
        T::Dict(pairs) => Value::Object(pairs.iter().map(|(k, v)| (k.clone(), tlv_json(v))).collect()),
    }
}

pub fn dirty_not_running() -> Value {
    json!({"success": false, "error": "Dirty arbiter not running"})
}

/// Gunicorn's keys, in its order, then ferrocorn's extensions. The worker
/// class is the name ferrocorn runs (Gunicorn shows its class object).
pub fn show_config(s: &Snapshot<'_>, worker_class: &str, proc_name: &str) -> Value {
    let c = s.settings;
    json!({
        "bind": c.bind,
        "workers": c.workers,
        "worker_class": worker_class,
        "threads": c.threads,
        "timeout": c.timeout.as_secs(),
        "graceful_timeout": c.graceful_timeout.as_secs(),
        "keepalive": c.keepalive.as_secs(),
        "max_requests": c.max_requests,
        "max_requests_jitter": c.max_requests_jitter,
        "worker_connections": c.worker_connections,
        "preload_app": c.preload_app,
        "daemon": c.daemon,
        "pidfile": c.pidfile,
        "proc_name": proc_name,
        "reload": c.reload,
        "dirty_workers": c.dirty_workers,
        "dirty_apps": c.dirty_apps,
        "dirty_timeout": c.dirty_timeout,
        "control_socket": c.control_socket,
        "control_socket_disable": c.control_socket_disable,
        "metrics_bind": c.metrics_bind,
        "max_worker_memory": c.max_worker_memory,
        "preload_freeze": c.preload_freeze,
        "memory_merge": c.memory_merge,
    })
}

pub fn show_stats(s: &Snapshot<'_>) -> Value {
    let mut by_status = Map::new();
    for (i, class) in STATUS_CLASSES.iter().enumerate() {
        by_status.insert((*class).to_owned(), s.requests.status[i].into());
    }
    let mut restarts = Map::new();
    for cause in Cause::ALL {
        restarts.insert(cause.label().to_owned(), s.stats.restarts(cause).into());
    }
    json!({
        "uptime": secs2(s.stats.uptime()),
        "pid": s.pid,
        "workers_current": s.workers.len(),
        "workers_target": s.target,
        "workers_spawned": s.stats.spawned,
        "workers_killed": super::super::stats::workers_killed(),
        "reloads": s.stats.reloads,
        "dirty_arbiter_pid": s.dirty.as_ref().map(|d| d.pid),
        // ferrocorn's own
        "requests": s.requests.count(),
        "requests_by_status": by_status,
        "in_flight": s.in_flight(),
        "restarts": restarts,
    })
}

pub fn show_listeners(s: &Snapshot<'_>) -> Value {
    let listeners: Vec<Value> = s
        .listeners
        .iter()
        .map(|l| {
            let kind = match &l.address {
                Address::Unix(_) => "unix",
                Address::Tcp(SocketAddr::V4(_)) => "tcp",
                Address::Tcp(SocketAddr::V6(_)) => "tcp6",
            };
            json!({"address": l.to_string(), "fd": l.fd(), "type": kind})
        })
        .collect();
    json!({"listeners": listeners, "count": s.listeners.len()})
}

pub fn help() -> Value {
    let mut commands = Map::new();
    for (cmd, desc) in HELP {
        commands.insert((*cmd).to_owned(), (*desc).into());
    }
    json!({ "commands": commands })
}
