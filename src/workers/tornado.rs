//! The `tornado` worker: Tornado applications on the asgi worker's engine.
//! The Rust engine (`workers/asgi/`) owns sockets, parsing, framing,
//! keep-alive, deadlines and the WebSocket protocol on the asyncio loop,
//! which is Tornado's IOLoop on Python 3; `ferrocorn/_tornado.py` drives
//! Tornado's HTTP delegate interface (`start_request`, `headers_received`,
//! `data_received`, `finish`) from it, and gives `WebSocketHandler`s a
//! protocol over the engine's WebSocket messages. A WSGI app is served
//! through Tornado's `WSGIContainer`, as Gunicorn's tornado worker does.

use super::core::signals::Wakeup;
use super::WorkerCtx;
use crate::http::policy::HttpPolicy;
use pyo3::prelude::*;

pub fn serve(py: Python<'_>, ctx: &WorkerCtx, app: Py<PyAny>, policy: HttpPolicy, wakeup: Wakeup) -> PyResult<()> {
    let adapted = py.import("ferrocorn._tornado")?.call_method1("adapt", (app,))?;
    super::asgi::serve(py, ctx, adapted.unbind(), policy, wakeup)
}
