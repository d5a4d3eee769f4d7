//! The Python side of an interruption: where the handler is (for the log),
//! raising `ferrocorn.RequestTimeout` in it, and taking that back when the
//! request ended before the handler saw it.

use super::watchdog::{Style, Target};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// The sync worker's main thread has a timeout to raise.
static MAIN_PENDING: AtomicBool = AtomicBool::new(false);

/// An interruption on its way to a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Nothing,
    /// The main thread's signal handler will raise it.
    Signal,
    /// An asynchronous exception set on this thread.
    Async(libc::pthread_t),
    /// The hub will throw it, if the request is still armed by then.
    Hub,
}

/// The signal that interrupts the sync worker's main thread: a real-time
/// one, which nothing else in a worker uses (SIGALRM is the app's).
fn signal_number() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

pub fn this_thread() -> libc::pthread_t {
    // SAFETY: pthread_self cannot fail.
    unsafe { libc::pthread_self() }
}

#[pyfunction]
fn on_request_timeout(py: Python<'_>, _sig: i32, _frame: &Bound<'_, PyAny>) -> PyResult<()> {
    // A signal that arrives after its request ended finds nothing to raise.
    if MAIN_PENDING.swap(false, Ordering::Relaxed) {
        return Err(PyErr::from_value(super::exception(py)?.call0()?));
    }
    Ok(())
}

/// The handler is Python's, so it runs on the main thread as soon as a
/// blocking call returns EINTR or the next bytecode runs.
pub fn install_main_handler(py: Python<'_>) -> PyResult<()> {
    let signal = py.import("signal")?;
    let sig = signal_number();
    signal.call_method1("signal", (sig, wrap_pyfunction!(on_request_timeout, py)?))?;
    signal.call_method1("siginterrupt", (sig, true))?;
    Ok(())
}

/// The green worker's hub, reached from the worker's main thread (a hub
/// is per thread).
pub struct GreenHub {
    /// `hand_over(greenlet, still_armed, exc)`, safe from any thread.
    hand_over: Py<PyAny>,
    getcurrent: Py<PyAny>,
    main: libc::pthread_t,
}

impl GreenHub {
    pub fn new(py: Python<'_>, flavour: &str) -> PyResult<GreenHub> {
        let hand_over = py.import("ferrocorn._timeout")?.call_method1("green_hand_over", (flavour,))?.unbind();
        let getcurrent = py.import("greenlet")?.getattr("getcurrent")?.unbind();
        Ok(GreenHub { hand_over, getcurrent, main: this_thread() })
    }

    pub fn current(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.getcurrent.bind(py).call0()?.unbind())
    }
}

/// Text from one of `ferrocorn._timeout`'s functions; the error's text if
/// it failed (the log line is written anyway).
pub fn call_text<'py>(py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> String {
    let text = py
        .import(pyo3::intern!(py, "ferrocorn._timeout"))
        .and_then(|m| m.getattr(name))
        .and_then(|f| f.call1(args))
        .and_then(|t| t.extract::<String>());
    text.unwrap_or_else(|e| format!("  (stack unavailable: {})\n", crate::python::exception_text(py, &e)))
}

pub fn stack(py: Python<'_>, target: &Target, style: &Style) -> String {
    match (target, style) {
        (Target::Thread { id, .. }, _) => call_text(py, "thread_stack", (*id,)),
        (Target::Greenlet(g), Style::Greenlets(hub)) => call_text(py, "greenlet_stack", (g.bind(py), hub.main)),
        _ => String::new(),
    }
}

/// Interrupts the handler if that takes no Python code: the watchdog's
/// lock is held, and running Python could hand the GIL to a thread that
/// waits for that lock. `Pending::Hub`: the caller, once the lock is
/// released, hands the interruption to the hub (`hand_to_hub`).
pub fn raise_now(py: Python<'_>, target: &Target, style: &Style, exc: &Bound<'_, PyAny>) -> Pending {
    match (target, style) {
        (Target::Thread { id, main: true }, _) => {
            MAIN_PENDING.store(true, Ordering::Relaxed);
            // SAFETY: the thread is this process's main thread, alive while
            // the worker is; the signal has a handler.
            unsafe { libc::pthread_kill(*id, signal_number()) };
            Pending::Signal
        }
        (Target::Thread { id, main: false }, _) => set_async(*id, exc),
        (Target::Greenlet(g), Style::Greenlets(hub)) if greenlet_running(py, g.bind(py)) => {
            // A loop that never yields to the hub: the exception goes to the
            // thread, where that greenlet runs now.
            set_async(hub.main, exc)
        }
        (Target::Greenlet(_), Style::Greenlets(_)) => Pending::Hub,
        _ => Pending::Nothing,
    }
}

/// The greenlet holds its thread now. Its attributes are C getters: no
/// Python code runs.
fn greenlet_running(py: Python<'_>, g: &Bound<'_, PyAny>) -> bool {
    let frame_is_none = g.getattr(pyo3::intern!(py, "gr_frame")).is_ok_and(|f| f.is_none());
    let active = g.is_truthy().unwrap_or(false);
    let dead = g.getattr(pyo3::intern!(py, "dead")).and_then(|d| d.is_truthy()).unwrap_or(true);
    frame_is_none && active && !dead
}

/// The hub raises `exc` in the parked greenlet later, if its request is
/// still in progress by then.
pub fn hand_to_hub(
    py: Python<'_>,
    g: &Bound<'_, PyAny>,
    style: &Style,
    id: u64,
    exc: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Style::Greenlets(hub) = style {
        let armed = Py::new(py, StillArmed { id })?;
        hub.hand_over.bind(py).call1((g, armed, exc))?;
    }
    Ok(())
}

fn set_async(thread: libc::pthread_t, exc: &Bound<'_, PyAny>) -> Pending {
    // SAFETY: the GIL is held (`exc` is bound to it); `exc` is a live
    // exception class (the call takes its own reference).
    unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(thread as libc::c_long, exc.as_ptr()) };
    Pending::Async(thread)
}

/// The request ended: an interruption it has not seen must not hit the
/// next one (with the GIL held).
pub fn withdraw(_py: Python<'_>, pending: Pending) {
    match pending {
        Pending::Signal => MAIN_PENDING.store(false, Ordering::Relaxed),
        // SAFETY: the GIL is held; NULL clears the thread's pending exception.
        Pending::Async(thread) => unsafe {
            pyo3::ffi::PyThreadState_SetAsyncExc(thread as libc::c_long, std::ptr::null_mut());
        },
        Pending::Nothing | Pending::Hub => {}
    }
}

/// Asked by the hub before it throws: is the request still in progress?
#[pyclass(module = "ferrocorn._ferrocorn")]
struct StillArmed {
    id: u64,
}

#[pymethods]
impl StillArmed {
    fn __call__(&self) -> bool {
        super::watchdog::still_armed(self.id)
    }
}
