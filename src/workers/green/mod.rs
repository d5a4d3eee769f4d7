//! The green worker types, `gevent` and `eventlet`: the Rust engine owns
//! sockets, parsing and framing; each request runs in a greenlet on the
//! library's hub, up to `--worker-connections` at once, so application
//! code that waits on patched I/O (sleep, sockets, HTTP clients, database
//! drivers) lets the other requests run.
//!
//! - `engine.rs`: listeners, connections, deadlines and the stop; the hub
//!   watches its epoll fd and calls it, and a hub timer ticks it.
//! - `exec.rs`: one greenlet per request, through the shared WSGI path.
//! - `io.rs`: `wsgi.input` and the response, parking the greenlet on the
//!   hub while the socket is not ready.
//! - `h2.rs`: HTTP/2 streams, each in a greenlet, parked on the hub while
//!   its stream cannot move.
//!
//! The Python side (`ferrocorn/_green.py`) patches the standard library
//! before the app is imported (`prepare`), and owns the hub's watchers.

mod engine;
mod exec;
mod h2;
mod io;

pub use engine::GreenServer;
pub use exec::Job;

use super::core::signals::Wakeup;
use super::{WorkerCtx, WorkerKind};
use crate::http::policy::HttpPolicy;
use pyo3::prelude::*;

/// The green library a worker type runs on (`_green.py` knows each one).
fn flavour(kind: WorkerKind) -> &'static str {
    match kind {
        WorkerKind::Eventlet => "eventlet",
        _ => "gevent",
    }
}

/// Before the app is imported: the library's monkey patching, as
/// Gunicorn's workers do in `init_process`. The first worker (age 1) also
/// says once that eventlet is deprecated.
pub fn prepare(py: Python<'_>, kind: WorkerKind, age: u64) -> PyResult<()> {
    if kind == WorkerKind::Eventlet && age == 1 {
        crate::log::warning!(
            "The eventlet worker is deprecated (Gunicorn 27 removed it and eventlet itself is unmaintained): \
             use -k gevent, the supported green worker"
        );
    }
    py.import("ferrocorn._green")?.getattr("prepare")?.call1((flavour(kind),))?;
    Ok(())
}

pub fn serve(py: Python<'_>, ctx: &WorkerCtx, app: Py<PyAny>, policy: HttpPolicy, wakeup: Wakeup) -> PyResult<()> {
    let server = Bound::new(py, GreenServer::new(py, ctx, app, policy, wakeup)?)?;
    let run = py.import("ferrocorn._green")?.getattr("run")?;
    run.call1((server, flavour(ctx.kind)))?;
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GreenServer>()?;
    m.add_class::<Job>()?;
    m.add_class::<h2::Resume>()?;
    Ok(())
}
