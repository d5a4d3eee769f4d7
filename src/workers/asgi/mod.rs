//! The `asgi` worker (also what `-k uvicorn.workers.UvicornWorker` and the
//! other uvicorn class paths run): the asyncio (or uvloop) loop on the
//! worker's main thread, with the HTTP/1.1 and WebSocket engine in Rust
//! beside it on the same thread.
//!
//! - `engine.rs`: listeners, connections, timers and the stop; the loop
//!   calls it when its epoll fd is readable.
//! - `exec.rs`: the application calls, one asyncio task each, and their end.
//! - `io.rs`: an HTTP call's `receive` and `send`, and output to a slow
//!   client.
//! - `websocket.rs`: the `websocket` scope.
//! - `h2.rs`: HTTP/2 connections, each stream a call of its own.
//!
//! The Python side (`ferrocorn/_asgi.py`) owns the loop, lifespan and the
//! ticker that calls `tick()`. (`crate::bridge::asgi` is the protocol bridge:
//! scopes, messages and response rules, with no I/O.)

mod engine;
mod exec;
mod h2;
mod io;
mod websocket;

pub use engine::AsgiServer;
pub use exec::{AppCall, Cycle};

use super::core::signals::Wakeup;
use super::WorkerCtx;
use crate::http::policy::HttpPolicy;
use pyo3::prelude::*;

pub fn serve(py: Python<'_>, ctx: &WorkerCtx, app: Py<PyAny>, mut policy: HttpPolicy, wakeup: Wakeup) -> PyResult<()> {
    let s = &ctx.settings;
    // Gunicorn's asgi worker closes on a packet it refuses, with no page.
    if let Some(uwsgi) = policy.uwsgi.as_mut() {
        uwsgi.answer_errors = false;
    }
    if s.threads > 1 {
        crate::log::warning!("ASGI worker does not use threads configuration. Use worker_connections instead.");
    }
    let server = Bound::new(py, AsgiServer::new(py, ctx, app.clone_ref(py), policy, wakeup)?)?;
    let run = py.import("ferrocorn._asgi")?.getattr("run")?;
    let uvicorn_lines = crate::workers::WorkerKind::alias_note(&s.worker_class).is_some();
    run.call1((server, app, s.asgi_loop.as_str(), s.asgi_lifespan.as_str(), uvicorn_lines))?;
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AsgiServer>()?;
    m.add_class::<Cycle>()?;
    m.add_class::<AppCall>()?;
    m.add_class::<crate::bridge::asgi::awaitable::Done>()?;
    m.add_class::<crate::bridge::asgi::awaitable::Ready>()?;
    Ok(())
}
