//! The deadlines of the requests in progress and the thread that watches
//! them: it sleeps until the nearest deadline (a request costs a lock and
//! a push, no thread and no timer of its own), interrupts a handler that
//! passed it, and asks for the worker's replacement when one is still
//! running a grace period later.

use super::interrupt::{self, GreenHub, Pending};
use crate::scoreboard::SlotHandle;
use pyo3::prelude::*;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where this worker's handlers run.
pub(super) enum Style {
    /// The sync worker: its main thread.
    MainThread,
    /// gthread: the pool's threads.
    Threads,
    Greenlets(GreenHub),
    /// asgi: tasks on the worker's event loop, which cancels them itself.
    Tasks,
}

pub(super) enum Target {
    Thread {
        id: libc::pthread_t,
        main: bool,
    },
    Greenlet(Py<PyAny>),
    /// Cancelled by the event loop running on `thread`.
    Task {
        thread: libc::pthread_t,
    },
}

impl Target {
    fn clone_ref(&self, py: Python<'_>) -> Target {
        match self {
            Target::Thread { id, main } => Target::Thread { id: *id, main: *main },
            Target::Greenlet(g) => Target::Greenlet(g.clone_ref(py)),
            Target::Task { thread } => Target::Task { thread: *thread },
        }
    }
}

struct Entry {
    id: u64,
    deadline: Instant,
    target: Target,
    /// `METHOD URI`, for the log.
    what: String,
    /// The deadline passed (the handler was, or is being, interrupted).
    fired: bool,
    /// The grace period passed too: the replacement was asked for.
    overdue: bool,
    /// An interruption the handler may not have seen yet.
    pending: Pending,
    /// A task the event loop cancelled (and logged) itself.
    loop_fired: bool,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: Vec<Entry>,
    /// The thread waits with no deadline: a new request must wake it.
    idle: bool,
    /// The worker is exiting: the interpreter may be finalizing, the
    /// thread must not enter Python any more.
    stopped: bool,
}

pub struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
    pub(super) limit: Duration,
    grace: Duration,
    slot: SlotHandle,
    style: Style,
    /// `ferrocorn.RequestTimeout`.
    exc: Py<PyAny>,
}

/// A request's deadline, until [`Watchdog::disarm`].
#[must_use]
pub struct Armed(u64);

impl Watchdog {
    pub(super) fn spawn(
        py: Python<'_>,
        limit: Duration,
        grace: Duration,
        slot: SlotHandle,
        style: Style,
    ) -> PyResult<Arc<Watchdog>> {
        // Imported now, on the main thread: the watchdog must not be the
        // one to import it while the app holds the import lock.
        py.import("ferrocorn._timeout")?;
        let exc = super::exception(py)?.unbind();
        let dog = Arc::new(Watchdog { state: Mutex::default(), wake: Condvar::new(), limit, grace, slot, style, exc });
        let watched = dog.clone();
        std::thread::Builder::new()
            .name("request-timeout".into())
            .spawn(move || watched.watch())
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("--request-timeout: no watchdog thread: {e}")))?;
        Ok(dog)
    }

    pub(super) fn style(&self) -> &Style {
        &self.style
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn arm(&self, target: Target, what: String) -> Armed {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        // Every request has the same limit, so a new deadline is never
        // nearer than one the thread already waits for.
        st.entries.push(Entry {
            id,
            deadline: Instant::now() + self.limit,
            target,
            what,
            fired: false,
            overdue: false,
            pending: Pending::Nothing,
            loop_fired: false,
        });
        if st.idle {
            st.idle = false;
            self.wake.notify_one();
        }
        Armed(id)
    }

    /// With the GIL held, so that it cannot cross an interruption being
    /// delivered (`fire` holds it too).
    pub(super) fn disarm(&self, py: Python<'_>, armed: Armed) -> bool {
        let entry = {
            let mut st = self.lock();
            let Some(i) = st.entries.iter().position(|e| e.id == armed.0) else { return false };
            st.entries.swap_remove(i)
        };
        // Out of the table, so `fire` cannot interrupt it any more; the
        // entry (a greenlet reference) is dropped with the lock released.
        interrupt::withdraw(py, entry.pending);
        entry.fired
    }

    fn watch(&self) {
        let mut st = self.lock();
        loop {
            if st.stopped {
                return;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            let mut overdue = Vec::new();
            let mut next: Option<Instant> = None;
            for e in &mut st.entries {
                let at = if e.fired { e.deadline + self.grace } else { e.deadline };
                if e.overdue {
                    continue;
                }
                if at > now {
                    next = Some(next.map_or(at, |n| n.min(at)));
                } else if !e.fired {
                    e.fired = true;
                    if !matches!(e.target, Target::Task { .. }) {
                        due.push(e.id);
                    }
                    let again = e.deadline + self.grace;
                    next = Some(next.map_or(again, |n| n.min(again)));
                } else {
                    e.overdue = true;
                    // A loop that never got to the deadline logged nothing:
                    // where it is stuck is logged from here.
                    let blocked_loop = match e.target {
                        Target::Task { thread } if !e.loop_fired => Some(thread),
                        _ => None,
                    };
                    overdue.push((e.what.clone(), blocked_loop));
                }
            }
            if due.is_empty() && overdue.is_empty() {
                st.idle = next.is_none();
                st = match next {
                    Some(at) => match self.wake.wait_timeout(st, at.saturating_duration_since(now)) {
                        Ok((st, _)) => st,
                        Err(e) => e.into_inner().0,
                    },
                    None => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                };
                continue;
            }
            drop(st);
            for (what, _) in &overdue {
                crate::log::error!(
                    "Request {what} is still running {}s after --request-timeout {}s: its handler cannot be \
                     interrupted (blocked outside Python code?); the worker will be replaced",
                    self.grace.as_secs(),
                    self.limit.as_secs()
                );
                self.slot.ask_replacement();
            }
            for (what, thread) in overdue {
                if let Some(thread) = thread.filter(|_| !self.lock().stopped) {
                    // After the replacement was asked for: a loop that holds
                    // the GIL for good keeps this thread waiting here.
                    Python::attach(|py| {
                        let stack = interrupt::call_text(py, "thread_stack", (thread,));
                        super::log_timeout(&what, self.limit, &stack);
                        super::count(&self.slot);
                    });
                }
            }
            for id in due {
                if self.lock().stopped {
                    break;
                }
                Python::attach(|py| self.fire(py, id));
            }
            st = self.lock();
        }
    }

    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    pub(super) fn mark_fired(&self, armed: &Armed) {
        if let Some(e) = self.lock().entries.iter_mut().find(|e| e.id == armed.0) {
            e.loop_fired = true;
        }
    }

    /// Logs where the handler is and interrupts it, if its request is still
    /// in progress now that the GIL is held.
    ///
    /// The lock is never held while Python code runs: that code could hand
    /// the GIL to a thread (arming, disarming) that then waits for the lock.
    fn fire(&self, py: Python<'_>, id: u64) {
        let (target, what) = {
            let st = self.lock();
            let Some(entry) = st.entries.iter().find(|e| e.id == id) else { return };
            (entry.target.clone_ref(py), entry.what.clone())
        };
        let stack = interrupt::stack(py, &target, &self.style);
        super::log_timeout(&what, self.limit, &stack);
        super::count(&self.slot);
        let exc = self.exc.bind(py);
        let pending = {
            let mut st = self.lock();
            // Still in progress (no Python code ran on the way here).
            let Some(entry) = st.entries.iter_mut().find(|e| e.id == id) else { return };
            entry.pending = interrupt::raise_now(py, &entry.target, &self.style, exc);
            entry.pending
        };
        if let (Pending::Hub, Target::Greenlet(g)) = (pending, &target) {
            if let Err(e) = interrupt::hand_to_hub(py, g.bind(py), &self.style, id, exc) {
                crate::log::error!("--request-timeout: {}", crate::python::format_exception(py, &e));
            }
        }
    }
}

/// Whether a request is still in progress, for an interruption delivered
/// later by the green worker's hub.
pub(super) fn still_armed(id: u64) -> bool {
    super::WATCHDOG.get().is_some_and(|d| d.lock().entries.iter().any(|e| e.id == id))
}
