//! Building the `worker`, `req` and `resp` objects hooks receive (the
//! classes are in `ferrocorn/_hooks.py`), and the live half of a worker
//! object in its own process.

use crate::bridge::wsgi::response::WsgiResponse;
use crate::http::request::RequestHead;
use crate::net::stream::Peer;
use crate::scoreboard::SlotHandle;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use std::cell::Cell;
use std::sync::atomic::Ordering;

thread_local! {
    /// Set while this thread runs a `pre_request` hook.
    pub static IN_PRE_REQUEST: Cell<bool> = const { Cell::new(false) };
}

/// `worker.alive`, `worker.nr` and `worker.notify()` in the worker process
/// itself, read from the worker's run state and scoreboard slot.
#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct LiveWorker {
    slot: SlotHandle,
}

#[pymethods]
impl LiveWorker {
    #[getter]
    fn alive(&self) -> bool {
        crate::workers::core::signals::alive()
    }

    /// `worker.alive = False` asks the worker to stop after the current
    /// request; a worker that is stopping cannot be revived.
    #[setter]
    fn set_alive(&self, value: bool) {
        if !value {
            crate::workers::core::signals::stop();
        }
    }

    /// Requests taken so far. The workers count a request before
    /// `pre_request` runs; Gunicorn counts it after, so during that hook
    /// the current one is left out.
    #[getter]
    fn nr(&self) -> u64 {
        let n = self.slot.requests.load(Ordering::Relaxed);
        if IN_PRE_REQUEST.with(Cell::get) {
            n.saturating_sub(1)
        } else {
            n
        }
    }

    fn notify(&self) {
        self.slot.beat();
    }
}

pub fn live_worker(py: Python<'_>, slot: SlotHandle) -> PyResult<Bound<'_, LiveWorker>> {
    Bound::new(py, LiveWorker { slot })
}

fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // Latin-1 maps every byte to the code point of the same value.
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    PyString::new(py, &text)
}

/// Gunicorn's `Request` as hooks see it.
pub fn request<'py>(py: Python<'py>, head: &RequestHead, peer: Peer) -> PyResult<Bound<'py, PyAny>> {
    let headers = PyList::empty(py);
    for h in &head.headers {
        headers.append(PyTuple::new(py, [PyString::new(py, &h.name), latin1(py, &h.value)])?)?;
    }
    let version = PyTuple::new(py, [head.version.0, head.version.1])?;
    let peer_addr = match peer {
        Peer::Tcp(a) => {
            PyTuple::new(py, [a.ip().to_string().into_bound_py_any(py)?, a.port().into_bound_py_any(py)?])?.into_any()
        }
        Peer::Unix => PyString::new(py, "").into_any(),
    };
    let cls = py.import(pyo3::intern!(py, "ferrocorn._hooks"))?.getattr(pyo3::intern!(py, "Request"))?;
    cls.call1((
        head.method.as_str(),
        head.uri.as_str(),
        head.path.as_str(),
        head.query.as_str(),
        head.fragment.as_str(),
        version,
        headers,
        head.scheme.as_str(),
        peer_addr,
    ))
}

/// Gunicorn's `Response` after the request, as `post_request` sees it.
pub fn response<'py>(py: Python<'py>, response: &Bound<'py, WsgiResponse>) -> PyResult<Bound<'py, PyAny>> {
    let resp = response.borrow();
    let core = resp.lock();
    let headers = PyList::empty(py);
    let (status, sent, chunked, length) = match core.state() {
        Some(state) => {
            for (n, v) in state.headers() {
                headers.append(PyTuple::new(py, [latin1(py, n), latin1(py, v)])?)?;
            }
            let status = latin1(py, state.status()).into_any();
            (status, state.sent(), state.is_chunked(), state.content_length())
        }
        None => (py.None().into_bound(py), 0, false, None),
    };
    let cls = py.import(pyo3::intern!(py, "ferrocorn._hooks"))?.getattr(pyo3::intern!(py, "Response"))?;
    cls.call1((status, headers, sent, core.headers_sent(), chunked, length))
}
