//! `--request-timeout`: a deadline per request that interrupts the handler
//! where it is and lets the worker go on serving, unlike `--timeout` (the
//! worker heartbeat). How the handler is reached depends on where it runs:
//!
//! - a WSGI handler on the sync worker's main thread: a signal whose Python
//!   handler raises `ferrocorn.RequestTimeout` (so a blocking `sleep` or
//!   socket read is interrupted too, by EINTR);
//! - on a gthread worker's thread: `PyThreadState_SetAsyncExc`, seen at the
//!   thread's next bytecode (a call blocked in C is not interrupted);
//! - in a gevent or eventlet greenlet: thrown in by the hub, or as an
//!   asynchronous exception when the greenlet holds the thread in a Python
//!   loop;
//! - an asyncio task (asgi): cancelled by the engine's own timers.
//!
//! A handler that has still not ended a grace period later cannot be
//! reached: the worker asks the master to replace it (`arbiter::stuck`).
//!
//! - `watchdog.rs`: the deadlines, and the one thread per worker that
//!   watches them (none with `--request-timeout 0`).
//! - `interrupt.rs`: the Python side of an interruption.

mod interrupt;
mod watchdog;

pub use watchdog::Armed;

use crate::http::request::RequestHead;
use crate::scoreboard::SlotHandle;
use crate::settings::Settings;
use crate::workers::WorkerKind;
use pyo3::prelude::*;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use watchdog::{Target, Watchdog};

/// The worker's watchdog, when `--request-timeout` is on; a worker is one
/// process, so one per process.
static WATCHDOG: OnceLock<Arc<Watchdog>> = OnceLock::new();

/// The longest a handler may stay out of reach past its deadline before
/// its worker is replaced: the timeout itself, at most 5 seconds (at least
/// one, so a handler caught just before it returns is not judged stuck).
pub fn grace(limit: Duration) -> Duration {
    limit.clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Worker types `--request-timeout` cannot honour: refused at start-up
/// rather than accepted and ignored.
pub fn refused(kind: WorkerKind) -> Option<String> {
    let why = match kind {
        WorkerKind::Sync | WorkerKind::Gthread | WorkerKind::Asgi | WorkerKind::Gevent | WorkerKind::Eventlet => {
            return None
        }
        WorkerKind::Tornado => {
            "Tornado runs each handler in a task of its own, which cancelling the engine's task for the request \
             would not stop"
        }
        WorkerKind::Python => "a Python worker class runs requests its own way",
    };
    Some(format!("--request-timeout is not supported with the {kind} worker: {why}"))
}

/// A sync worker does not beat while its app runs: with `--timeout` no
/// longer than the request timeout, the master kills the worker first.
pub fn warning(settings: &Settings, kind: WorkerKind) -> Option<String> {
    let (limit, heartbeat) = (settings.request_timeout, settings.timeout);
    (kind == WorkerKind::Sync && !limit.is_zero() && !heartbeat.is_zero() && limit >= heartbeat).then(|| {
        format!(
            "--request-timeout {}s is not below --timeout {}s: a sync worker whose request runs that long is killed \
             by the heartbeat timeout first",
            limit.as_secs(),
            heartbeat.as_secs()
        )
    })
}

/// Starts the watchdog of this worker (from its main thread, before it
/// serves), when the setting is on.
pub fn start(py: Python<'_>, kind: WorkerKind, settings: &Settings, slot: &SlotHandle) -> PyResult<()> {
    let limit = settings.request_timeout;
    if limit.is_zero() || refused(kind).is_some() {
        return Ok(());
    }
    let style = match kind {
        WorkerKind::Sync => {
            interrupt::install_main_handler(py)?;
            watchdog::Style::MainThread
        }
        WorkerKind::Gevent => watchdog::Style::Greenlets(interrupt::GreenHub::new(py, "gevent")?),
        WorkerKind::Eventlet => watchdog::Style::Greenlets(interrupt::GreenHub::new(py, "eventlet")?),
        WorkerKind::Asgi => watchdog::Style::Tasks,
        _ => watchdog::Style::Threads,
    };
    let dog = Watchdog::spawn(py, limit, grace(limit), slot.clone(), style)?;
    let _ = WATCHDOG.set(dog);
    Ok(())
}

/// The worker is about to exit: the watchdog leaves Python alone.
pub fn stop() {
    if let Some(dog) = WATCHDOG.get() {
        dog.stop();
    }
}

/// The limit, when on (the asgi engine keeps its own deadlines).
pub fn limit() -> Option<Duration> {
    WATCHDOG.get().map(|d| d.limit)
}

/// Starts the clock of a WSGI request about to be handed to the app, from
/// the thread or greenlet that runs it. None (one branch) when off.
pub fn arm(py: Python<'_>, head: &RequestHead) -> Option<Armed> {
    let dog = WATCHDOG.get()?;
    let target = match dog.style() {
        watchdog::Style::MainThread => Target::Thread { id: interrupt::this_thread(), main: true },
        watchdog::Style::Threads => Target::Thread { id: interrupt::this_thread(), main: false },
        watchdog::Style::Greenlets(hub) => match hub.current(py) {
            Ok(g) => Target::Greenlet(g),
            Err(e) => {
                crate::log::error!("--request-timeout: {}", crate::python::format_exception(py, &e));
                return None;
            }
        },
        watchdog::Style::Tasks => Target::Task { thread: interrupt::this_thread() },
    };
    Some(dog.arm(target, describe(head)))
}

/// Watches an asyncio task that the engine itself cancels at the deadline:
/// the watchdog only sees to one the loop never gets back to.
pub fn arm_task(head: &RequestHead) -> Option<Armed> {
    WATCHDOG.get().map(|dog| dog.arm(Target::Task { thread: interrupt::this_thread() }, describe(head)))
}

/// The engine cancelled the task at its deadline: the watchdog has no
/// stack of its own to log for it.
pub fn task_fired(armed: &Armed) {
    if let Some(dog) = WATCHDOG.get() {
        dog.mark_fired(armed);
    }
}

/// The request ended: its deadline goes, and an interruption not yet
/// delivered is withdrawn. True when the deadline had passed.
pub fn disarm(py: Python<'_>, armed: Armed) -> bool {
    WATCHDOG.get().is_some_and(|dog| dog.disarm(py, armed))
}

/// One timeout counted and logged by the asgi engine.
pub fn count(slot: &SlotHandle) {
    slot.count_request_timeout();
    crate::log::statsd::increment("ferrocorn.request_timeout", 1);
}

pub fn describe(head: &RequestHead) -> String {
    format!("{} {}", head.method, head.uri)
}

/// The exception an interrupted WSGI handler sees.
pub fn exception(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import(pyo3::intern!(py, "ferrocorn.errors"))?.getattr(pyo3::intern!(py, "RequestTimeout"))
}

/// The request failed with `ferrocorn.RequestTimeout`.
pub fn is_timeout(py: Python<'_>, err: &PyErr) -> bool {
    if WATCHDOG.get().is_none() {
        return false;
    }
    exception(py).is_ok_and(|cls| err.get_type(py).is_subclass(&cls).unwrap_or(false))
}

/// Where a task was when it timed out, for the error log.
pub fn task_stack(py: Python<'_>, task: &Bound<'_, PyAny>) -> String {
    interrupt::call_text(py, "task_stack", (task,))
}

pub fn log_timeout(what: &str, limit: Duration, stack: &str) {
    crate::log::error!(
        "Request timeout: {what} ran past --request-timeout {}s (pid: {}); its handler was at:\n{}",
        limit.as_secs(),
        std::process::id(),
        stack.trim_end()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_is_the_timeout_within_one_and_five_seconds() {
        let s = Duration::from_secs;
        assert_eq!(grace(s(1)), s(1));
        assert_eq!(grace(s(3)), s(3));
        assert_eq!(grace(s(60)), s(5));
    }

    #[test]
    fn refused_where_a_handler_cannot_be_reached() {
        for kind in [WorkerKind::Sync, WorkerKind::Gthread, WorkerKind::Asgi, WorkerKind::Gevent, WorkerKind::Eventlet]
        {
            assert_eq!(refused(kind), None);
        }
        for kind in [WorkerKind::Tornado, WorkerKind::Python] {
            let why = refused(kind).unwrap_or_default();
            assert!(why.starts_with(&format!("--request-timeout is not supported with the {kind} worker: ")), "{why}");
        }
    }
}
