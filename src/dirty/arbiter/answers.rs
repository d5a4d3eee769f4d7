//! What the dirty arbiter says itself, as Gunicorn 27's arbiter says it:
//! errors (`{"error_type", "message", "details"}`, which the client raises
//! as that class), the status answer and the management answers.

use super::Arbiter;
use crate::dirty::wire::tlv::Value;
use std::sync::atomic::Ordering;

pub const MANAGE_ADD: i64 = 1;
pub const MANAGE_REMOVE: i64 = 2;

fn error(kind: &str, message: String, details: Vec<(String, Value)>) -> Value {
    Value::dict([("error_type", Value::str(kind)), ("message", Value::Str(message)), ("details", Value::Dict(details))])
}

/// `{"error": err}`, an ERROR message's payload.
pub fn error_payload(err: Value) -> Value {
    Value::dict([("error", err)])
}

/// `{"result": value}`, a RESPONSE message's payload.
pub fn result_payload(value: Value) -> Value {
    Value::dict([("result", value)])
}

pub fn dirty_error(message: &str) -> Value {
    error("DirtyError", message.to_owned(), Vec::new())
}

/// No dirty worker runs at all.
pub fn no_workers() -> Value {
    dirty_error("No dirty workers available")
}

/// No running worker loads this app (or it is not configured).
pub fn no_workers_for(app: &str) -> Value {
    error(
        "DirtyNoWorkersAvailableError",
        format!("No workers available for app: {app}"),
        vec![("app_path".into(), Value::str(app))],
    )
}

/// A request that names no app.
pub fn app_not_found(app: Option<&str>) -> Value {
    let details = app.map(|a| vec![("app_path".into(), Value::str(a))]).unwrap_or_default();
    error("DirtyAppNotFoundError", format!("Dirty app not found: {}", app.unwrap_or("None")), details)
}

/// The call outlived `dirty_timeout`.
pub fn timed_out(app: &str, action: &str, secs: u64) -> Value {
    let details = vec![("timeout".into(), Value::Int(i64::try_from(secs).unwrap_or(i64::MAX)))];
    error("DirtyTimeoutError", format!("Execution of {app}.{action} timed out"), details)
}

/// The worker running the call failed (exited, broke its socket).
pub fn worker_failed(pid: i32, what: &str) -> Value {
    error(
        "DirtyWorkerError",
        format!("Worker communication failed: {what}"),
        vec![("worker_id".into(), Value::Int(i64::from(pid)))],
    )
}

/// A caller sent a worker's kind of message.
pub fn unknown_type(kind: &str) -> Value {
    error("DirtyWorkerError", format!("Unknown message type: {kind}"), Vec::new())
}

pub fn shutting_down() -> Value {
    dirty_error("Dirty arbiter is shutting down")
}

fn int(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

pub fn added(requested: usize, spawned: usize, total: usize, target: usize) -> Value {
    let mut pairs = vec![
        ("success".to_owned(), Value::Bool(true)),
        ("operation".to_owned(), Value::str("add")),
        ("requested".to_owned(), int(requested)),
        ("spawned".to_owned(), int(spawned)),
    ];
    if spawned == 0 {
        pairs.push(("reason".to_owned(), Value::str("All apps have reached their worker limits")));
    }
    pairs.push(("total_workers".to_owned(), int(total)));
    pairs.push(("target_workers".to_owned(), int(target)));
    Value::Dict(pairs)
}

pub fn removed(requested: usize, removed: usize, total: usize, target: usize) -> Value {
    Value::dict([
        ("success", Value::Bool(true)),
        ("operation", Value::str("remove")),
        ("requested", int(requested)),
        ("removed", int(removed)),
        ("total_workers", int(total)),
        ("target_workers", int(target)),
    ])
}

/// Seconds rounded to two decimals, as Gunicorn's `round(x, 2)`.
fn secs2(ms: u64) -> Value {
    Value::Float((ms as f64 / 10.0).round() / 100.0)
}

impl Arbiter {
    /// Gunicorn's status answer: the arbiter, its workers (oldest first)
    /// and its apps.
    pub(super) fn status(&self) -> Value {
        let now = crate::scoreboard::now_ms();
        let workers = self
            .worker_pids_by_age()
            .into_iter()
            .filter_map(|pid| self.workers.get(&pid).map(|w| (pid, w)))
            .map(|(pid, w)| {
                let slot = self.board.worker(w.slot);
                Value::dict([
                    ("pid", Value::Int(i64::from(pid))),
                    ("age", Value::Int(i64::try_from(w.age).unwrap_or(i64::MAX))),
                    ("apps", Value::List(w.apps.iter().map(Value::str).collect())),
                    ("booted", Value::Bool(w.lanes.iter().any(|l| l.ready))),
                    ("last_heartbeat", slot.map_or(Value::None, |s| secs2(s.silent_for_ms(now)))),
                ])
            })
            .collect::<Vec<_>>();
        let count = workers.len();
        Value::dict([
            ("arbiter_pid", Value::Int(i64::from(self.pid))),
            ("workers", Value::List(workers)),
            ("worker_count", int(count)),
            ("apps", Value::List(self.apps.iter().map(|a| Value::str(&a.path)).collect())),
            ("queued", Value::Int(i64::try_from(self.board.head().queued.load(Ordering::Relaxed)).unwrap_or(0))),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirty::wire::tlv;

    #[test]
    fn errors_as_gunicorn_sends_them() {
        let e = no_workers_for("m:A");
        assert_eq!(e.get("error_type").and_then(Value::as_str), Some("DirtyNoWorkersAvailableError"));
        assert_eq!(e.get("message").and_then(Value::as_str), Some("No workers available for app: m:A"));
        assert_eq!(e.get("details").and_then(|d| d.get("app_path")).and_then(Value::as_str), Some("m:A"));
        let round = tlv::decode(&error_payload(timed_out("m:A", "run", 3)).encode()).expect("decodes");
        assert_eq!(
            round.get("error").and_then(|e| e.get("details")).and_then(|d| d.get("timeout")),
            Some(&Value::Int(3))
        );
        assert_eq!(app_not_found(None).get("message").and_then(Value::as_str), Some("Dirty app not found: None"));
        assert!(added(2, 0, 1, 1).get("reason").is_some());
        assert!(added(2, 1, 2, 2).get("reason").is_none());
    }
}
