//! A worker's signals, handled the way Gunicorn's Worker.init_signals sets
//! them up: Python-level handlers (so a QUIT or ABRT can interrupt app code
//! with SystemExit), a wakeup fd so the Rust accept loop notices them, and
//! TERM/USR1 marked restartable so they never break a request's I/O.

use pyo3::prelude::*;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static ALIVE: AtomicBool = AtomicBool::new(true);
/// QUIT, INT or ABRT: stop now, not after the requests in progress.
static FAST: AtomicBool = AtomicBool::new(false);
/// The exit status the fast stop asked for (ABRT: 1, as Gunicorn's).
static FAST_STATUS: AtomicI32 = AtomicI32::new(0);

pub fn alive() -> bool {
    ALIVE.load(Ordering::Relaxed)
}

pub fn fast_exit() -> bool {
    FAST.load(Ordering::Relaxed)
}

pub fn fast_exit_status() -> i32 {
    FAST_STATUS.load(Ordering::Relaxed)
}

/// Stop after the current request (TERM, max-requests, parent gone).
pub fn stop() {
    ALIVE.store(false, Ordering::Relaxed);
}

#[pyfunction]
fn handle_exit(_sig: i32, _frame: &Bound<'_, PyAny>) {
    stop();
}

#[pyfunction]
fn handle_quit(py: Python<'_>, _sig: i32, _frame: &Bound<'_, PyAny>) -> PyResult<()> {
    stop();
    FAST.store(true, Ordering::Relaxed);
    crate::hooks::worker_int(py)?;
    py.import("time")?.call_method1("sleep", (0.1,))?;
    Err(pyo3::exceptions::PySystemExit::new_err(0))
}

#[pyfunction]
fn handle_abort(py: Python<'_>, _sig: i32, _frame: &Bound<'_, PyAny>) -> PyResult<()> {
    stop();
    FAST_STATUS.store(1, Ordering::Relaxed);
    FAST.store(true, Ordering::Relaxed);
    crate::hooks::worker_abort(py)?;
    Err(pyo3::exceptions::PySystemExit::new_err(1))
}

#[pyfunction]
fn handle_usr1(_sig: i32, _frame: &Bound<'_, PyAny>) {
    if let Err(e) = crate::log::reopen() {
        crate::log::error!("reopening log files failed: {e}");
    }
}

#[pyfunction]
fn handle_winch(_sig: i32, _frame: &Bound<'_, PyAny>) {
    crate::log::debug!("worker: SIGWINCH ignored.");
}

/// The read end of the wakeup pipe Python's signal module writes to: a
/// worker's loop polls it to learn that handlers are due.
#[derive(Debug, Clone, Copy)]
pub struct Wakeup {
    pub read_fd: RawFd,
}

impl Wakeup {
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking reads into a local buffer.
        while unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

pub fn install(py: Python<'_>) -> PyResult<Wakeup> {
    let signal = py.import("signal")?;
    let sig = |name: &str| -> PyResult<Bound<'_, PyAny>> { signal.getattr(name) };
    for name in ["SIGABRT", "SIGHUP", "SIGQUIT", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCHLD"] {
        signal.call_method1("signal", (sig(name)?, sig("SIG_DFL")?))?;
    }
    let set = |name: &str, f: Bound<'_, PyAny>| -> PyResult<()> {
        signal.call_method1("signal", (sig(name)?, f))?;
        Ok(())
    };
    set("SIGQUIT", wrap_pyfunction!(handle_quit, py)?.into_any())?;
    set("SIGTERM", wrap_pyfunction!(handle_exit, py)?.into_any())?;
    set("SIGINT", wrap_pyfunction!(handle_quit, py)?.into_any())?;
    set("SIGWINCH", wrap_pyfunction!(handle_winch, py)?.into_any())?;
    set("SIGUSR1", wrap_pyfunction!(handle_usr1, py)?.into_any())?;
    set("SIGABRT", wrap_pyfunction!(handle_abort, py)?.into_any())?;
    signal.call_method1("siginterrupt", (sig("SIGTERM")?, false))?;
    signal.call_method1("siginterrupt", (sig("SIGUSR1")?, false))?;

    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    signal.call_method1("set_wakeup_fd", (fds[1],))?;
    ALIVE.store(true, Ordering::Relaxed);
    Ok(Wakeup { read_fd: fds[0] })
}
