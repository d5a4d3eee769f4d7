//! A dirty worker process, forked by the dirty arbiter: it loads its apps
//! (Python, `ferrocorn/dirty/_worker.py`), then runs calls on one thread
//! per lane while its main thread (here) beats its heartbeat, watches its
//! parent and handles signals. It never forks.
//!
//! Signals: TERM stops it gracefully (calls in progress finish, then the
//! apps' `close()`), INT and QUIT at once (with `close()`), ABRT (the
//! arbiter's timeout) at once without it; USR1 reopens the logs.

pub mod lane;

use crate::arbiter::signals::SignalQueue;
use crate::dirty::board::Board;
use crate::settings::Settings;
use lane::DirtyLane;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Exit status of a worker that could not load its apps (Gunicorn's).
pub const BOOT_ERROR: i32 = 3;

const SIGNALS: &[libc::c_int] =
    &[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGABRT, libc::SIGUSR1, libc::SIGHUP];

/// What a dirty worker takes from the dirty arbiter across fork.
pub struct WorkerCtx {
    pub settings: Arc<Settings>,
    pub board: Board,
    pub slot: usize,
    /// The dirty arbiter.
    pub ppid: i32,
    /// Its ends of the lanes, one per thread.
    pub lanes: Vec<OwnedFd>,
    /// The hooks' `worker` object (made before the fork).
    pub worker: Py<PyAny>,
    pub proc_name: String,
}

enum Stop {
    Graceful,
    Quick,
    Abort,
}

/// Runs the worker; the process ends here (`_exit`, as Gunicorn's dirty
/// workers end: the lane threads may be inside app code that will never
/// return, and interpreter shutdown would wait for them).
pub fn run(py: Python<'_>, ctx: WorkerCtx) -> ! {
    let pid = std::process::id();
    crate::util::proctitle::set(&format!("ferrocorn: dirty-worker [{}]", ctx.proc_name));
    // SAFETY: prctl with plain integer arguments. The kernel signals us
    // when the dirty arbiter dies, whatever we are doing.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let status = match boot_and_serve(py, ctx) {
        Ok(status) => status,
        Err(e) => {
            crate::log::exception!("Exception in dirty worker process\n{}", crate::python::format_exception(py, &e));
            1
        }
    };
    crate::log::info!("Dirty worker {pid} exiting");
    for stream in ["stdout", "stderr"] {
        let _ = py.import("sys").and_then(|s| s.getattr(stream)).and_then(|s| s.call_method0("flush"));
    }
    // SAFETY: ends the process without unwinding into the interpreter,
    // whose other threads may hold what shutdown would wait for.
    unsafe { libc::_exit(status) }
}

fn boot_and_serve(py: Python<'_>, mut ctx: WorkerCtx) -> PyResult<i32> {
    let signals = SignalQueue::install_for(SIGNALS)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot install signal handlers: {e}")))?;
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != ctx.ppid {
        return Ok(0);
    }
    let s = &ctx.settings;
    if let Err(e) = crate::util::owner::set_owner_process(s.user, s.group, s.initgroups) {
        crate::log::error!("Dirty worker cannot switch user: {e}");
        return Ok(BOOT_ERROR);
    }
    let slot = ctx.board.worker(ctx.slot).ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no slot"))?;
    let worker = ctx.worker.bind(py);
    worker.setattr("pid", std::process::id())?;
    worker.setattr("_beat", Bound::new(py, Beat { board: ctx.board.clone(), slot: ctx.slot })?)?;
    let module = py.import("ferrocorn.dirty._worker")?;
    if let Err(e) = module.call_method1("boot", (worker,)) {
        if crate::workers::is_exit(py, &e) {
            return Ok(exit_code(py, &e));
        }
        crate::log::exception!("Exception in dirty worker process\n{}", crate::python::format_exception(py, &e));
        return Ok(BOOT_ERROR);
    }
    if let Err(exit) = super::hooks::dirty_worker_init(py, s, worker) {
        return Ok(exit.status);
    }
    worker.setattr("booted", true)?;
    slot.mark_booted();
    slot.beat();

    let lanes: Vec<Bound<'_, DirtyLane>> = std::mem::take(&mut ctx.lanes)
        .into_iter()
        .map(|fd| Bound::new(py, DirtyLane::new(fd)))
        .collect::<PyResult<_>>()?;
    let fds: Vec<RawFd> = lanes.iter().map(|l| l.get().raw_fd()).collect();
    let running = module.getattr("Lanes")?.call1((worker, PyList::new(py, &lanes)?))?;
    crate::log::debug!("Dirty worker {} serving with {} threads", std::process::id(), lanes.len());

    let beat = beat_interval(s.dirty_timeout);
    let stop = loop {
        let queued = py.detach(|| signals.wait(beat));
        slot.beat();
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } != ctx.ppid {
            crate::log::warning!("Parent changed, shutting down dirty worker");
            break Stop::Quick;
        }
        let mut stop = None;
        for sig in queued {
            match sig {
                libc::SIGTERM => stop = stop.or(Some(Stop::Graceful)),
                libc::SIGINT | libc::SIGQUIT => stop = Some(Stop::Quick),
                libc::SIGABRT => {
                    stop = Some(Stop::Abort);
                    break;
                }
                libc::SIGUSR1 => {
                    if let Err(e) = crate::log::reopen() {
                        crate::log::error!("reopening log files failed: {e}");
                    }
                }
                _ => {}
            }
        }
        if let Some(stop) = stop {
            break stop;
        }
        if !running.call_method0("alive")?.is_truthy()? {
            // Every lane closed: the arbiter is gone or let us go.
            break Stop::Quick;
        }
    };
    let _ = worker.setattr("alive", false);
    match stop {
        Stop::Abort => {
            let _ = worker.setattr("aborted", true);
            crate::log::warning!("Dirty worker {} aborted", std::process::id());
            return Ok(1);
        }
        Stop::Graceful => {
            // No more calls; those in progress finish and are answered.
            for fd in &fds {
                // SAFETY: the lanes' fds stay open while `lanes` lives.
                unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
            }
            running.call_method1("join", (s.dirty_graceful_timeout.as_secs_f64(),))?;
        }
        Stop::Quick => {}
    }
    running.call_method0("close_apps")?;
    drop(lanes);
    Ok(0)
}

/// `sys.exit(n)` from a hook or an app's `init()`: n.
fn exit_code(py: Python<'_>, e: &PyErr) -> i32 {
    e.value(py).getattr("code").ok().and_then(|c| if c.is_none() { Some(0) } else { c.extract().ok() }).unwrap_or(1)
}

/// Gunicorn beats every `dirty_timeout / 2`; at most a second apart here,
/// so the parent check is prompt too.
fn beat_interval(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        return Duration::from_secs(1);
    }
    (timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// `worker.notify()`: a heartbeat from app code.
#[pyclass(module = "ferrocorn._ferrocorn", frozen)]
struct Beat {
    board: Board,
    slot: usize,
}

#[pymethods]
impl Beat {
    fn __call__(&self) {
        if let Some(s) = self.board.worker(self.slot) {
            s.beat();
        }
    }
}
