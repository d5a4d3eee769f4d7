//! Dirty arbiters (Gunicorn 27's `gunicorn/dirty`): a pool of processes,
//! apart from the HTTP workers, for long, blocking or stateful work, called
//! from request handlers over a Unix socket.
//!
//! ```text
//! master ──fork──► dirty arbiter ──fork──► dirty worker × dirty_workers
//!   │ binds the dirty socket          │ routes calls, relays answers,
//!   │ (GUNICORN_DIRTY_SOCKET),        │ keeps the stash, enforces
//!   │ respawns the arbiter,           │ dirty_timeout, replaces workers
//!   │ reads the board                 └─ lanes: one socket per worker thread
//!   └─ HTTP workers ── calls ──► dirty socket
//! ```
//!
//! Rust: the processes (fork, reap, signals, timeouts, heartbeats), the
//! socket protocol and the relaying. Python: loading and calling the apps
//! (`ferrocorn/dirty/_worker.py`), the stash's tables, the hooks, and the
//! `ferrocorn.dirty` client API.

pub mod arbiter;
pub mod board;
pub mod hooks;
pub mod pidfile;
pub mod spec;
pub mod wire;
pub mod worker;

use crate::settings::Settings;

/// Where HTTP workers (and the stash in dirty workers) find the dirty
/// socket: Gunicorn's variable, so its client works unchanged.
pub const SOCKET_ENV: &str = "GUNICORN_DIRTY_SOCKET";

/// Gunicorn starts a dirty arbiter when both are set.
pub fn enabled(s: &Settings) -> bool {
    s.dirty_workers > 0 && !s.dirty_apps.is_empty()
}

/// The Python half of the codec, for `ferrocorn.dirty`.
pub fn register(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    use pyo3::types::PyModuleMethods;
    wire::py::register(m)?;
    m.add_class::<worker::lane::DirtyLane>()?;
    Ok(())
}
