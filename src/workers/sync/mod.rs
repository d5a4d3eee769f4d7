//! The `sync` worker (Gunicorn's default): one connection at a time on the
//! worker's main thread, `Connection: close` after every response. The GIL
//! is held only to run the app and its I/O callbacks.
//!
//! - `engine.rs`: accepting, reading request heads, the graceful close.
//! - `exec.rs`: the application, one request per connection.
//! - `io.rs`: `wsgi.input` and the response, on the blocking socket.

mod engine;
mod exec;
mod io;

use super::core::signals::Wakeup;
use super::WorkerCtx;
use crate::http::policy::HttpPolicy;
use pyo3::prelude::*;

pub fn serve(py: Python<'_>, ctx: &WorkerCtx, app: Py<PyAny>, policy: HttpPolicy, wakeup: Wakeup) -> PyResult<()> {
    let exec = exec::Exec::new(py, ctx, app)?;
    engine::Engine::new(ctx, policy, exec).run(py, &wakeup)
}
