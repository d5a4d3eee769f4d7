//! `start_response`, `write` and `wsgi.early_hints` for one request, over
//! the HTTP layer's [`ResponseState`] (Gunicorn's Response rules) and a
//! [`Sink`] that puts bytes on the wire. Output is coalesced: the head goes
//! out with the first body bytes, and a list result leaves in one write.

use crate::http::response::{RequestInfo, ResponseError, ResponseState};
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use std::sync::Mutex;

pyo3::create_exception!(
    _ferrocorn,
    InvalidResponseHeader,
    PyValueError,
    "A header value the application tried to send is not valid (the response is a 500)."
);
pyo3::create_exception!(
    _ferrocorn,
    InvalidResponseHeaderName,
    PyValueError,
    "A header name the application tried to send is not valid (the response is a 500)."
);

#[derive(Debug)]
pub enum SinkError {
    Io(std::io::Error),
    /// A signal handler raised while the sink waited for the socket.
    Interrupted(PyErr),
}

impl SinkError {
    pub fn into_pyerr(self) -> PyErr {
        match self {
            SinkError::Io(e) => PyErr::from(e),
            SinkError::Interrupted(e) => e,
        }
    }
}

/// Where response bytes go.
pub trait Sink: Send + 'static {
    /// Writes all of `bufs`, in order, before returning (PEP 3333: a block
    /// the app produced must not wait for the next one). Called with the
    /// GIL held; blocking implementations release it only to wait.
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError>;
    /// The response's last bytes: the app is done, so a sink may keep what
    /// the client is not ready for and send it later without the thread.
    fn write_final(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.write_all(py, bufs)
    }
    /// For a worker taking its sink back after the request.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
    /// Whether `sendfile` can be used (plain sockets, sendfile not disabled).
    fn can_sendfile(&self) -> bool;
    /// Sends `count` bytes of `fd` from `offset` with sendfile(2).
    fn sendfile(&mut self, py: Python<'_>, fd: i32, offset: u64, count: u64) -> Result<(), SinkError>;
}

/// What a response writes to once its worker has taken the real sink back.
struct ClosedSink;

impl Sink for ClosedSink {
    fn write_all(&mut self, _: Python<'_>, _: &[&[u8]]) -> Result<(), SinkError> {
        Err(SinkError::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, "the response is over")))
    }

    fn can_sendfile(&self) -> bool {
        false
    }

    fn sendfile(&mut self, py: Python<'_>, _: i32, _: u64, _: u64) -> Result<(), SinkError> {
        self.write_all(py, &[])
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// Bodies larger than this are written from the Python bytes object itself
/// instead of being copied next to the head.
const COPY_LIMIT: usize = 16 * 1024;
/// Coalesced output is flushed once it grows past this.
const FLUSH_AT: usize = 256 * 1024;

pub struct Core {
    req: RequestInfo,
    state: Option<ResponseState>,
    headers_sent: bool,
    must_close: bool,
    pending: Vec<u8>,
    sink: Box<dyn Sink>,
    date: Vec<u8>,
    /// Set when writing to the client failed, so the worker can tell a gone
    /// client (logged at debug, as Gunicorn does) from an app error.
    pub io_failed: bool,
    warned_omitted_body: bool,
}

impl Core {
    pub fn started(&self) -> bool {
        self.state.is_some()
    }

    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }

    pub fn state(&self) -> Option<&ResponseState> {
        self.state.as_ref()
    }

    pub fn should_close(&self) -> bool {
        self.must_close || self.state.as_ref().is_none_or(ResponseState::should_close)
    }

    fn head_if_needed(&mut self) {
        if self.headers_sent {
            return;
        }
        if let Some(state) = self.state.as_mut() {
            if self.must_close {
                state.force_close();
            }
            state.write_head(&mut self.pending, crate::SERVER_HEADER.as_bytes(), &self.date);
            self.headers_sent = true;
        }
    }

    /// Frames `data` as body bytes; `flush` when the app may take a while to
    /// produce more (PEP 3333: a yielded block must not wait for the next).
    pub fn push_body(&mut self, py: Python<'_>, data: &[u8], flush: bool) -> PyResult<()> {
        if self.state.is_none() {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        }
        self.head_if_needed();
        let Some(state) = self.state.as_mut() else { return Ok(()) };
        if state.omits_body() {
            if !data.is_empty() && !self.warned_omitted_body {
                self.warned_omitted_body = true;
                crate::log::warning!(
                    "WSGI app sent body bytes on a no-body response (status={}); dropping per RFC 9110.",
                    state.status_code()
                );
            }
        } else if data.len() <= COPY_LIMIT {
            state.frame_body(data, &mut self.pending);
        } else {
            let plan = state.plan_body(data.len() as u64);
            self.pending.extend_from_slice(plan.prefix());
            let body = &data[plan.data_range(data.len())];
            let result = self.sink.write_all(py, &[&self.pending, body, plan.suffix]);
            self.pending.clear();
            return self.check(result);
        }
        if flush || self.pending.len() >= FLUSH_AT {
            return self.flush(py);
        }
        Ok(())
    }

    pub fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.sink.write_all(py, &[&self.pending]);
        self.pending.clear();
        self.check(result)
    }

    /// Ends the response: the head if nothing was sent yet, the last chunk.
    pub fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        self.head_if_needed();
        if let Some(state) = self.state.as_mut() {
            state.finish(&mut self.pending);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.sink.write_final(py, &[&self.pending]);
        self.pending.clear();
        self.check(result)
    }

    /// Bytes that are not part of the response (an error page that replaces
    /// it), written through the sink as they are.
    pub fn write_raw(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.sink.write_all(py, bufs)
    }

    /// Takes the sink back after the request; later writes from the app
    /// (which may still hold `write`) fail.
    pub fn take_sink(&mut self) -> Box<dyn Sink> {
        std::mem::replace(&mut self.sink, Box::new(ClosedSink))
    }

    pub fn can_sendfile(&self) -> bool {
        self.sink.can_sendfile()
    }

    /// `wsgi.file_wrapper` over a real file, with sendfile(2); callers check
    /// `can_sendfile` first.
    pub fn send_file(&mut self, py: Python<'_>, fd: i32, offset: u64, size: u64) -> PyResult<()> {
        let Some(state) = self.state.as_mut() else {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        };
        let count = state.content_length().unwrap_or(size).min(size);
        if state.omits_body() {
            self.head_if_needed();
            return self.flush(py);
        }
        self.head_if_needed();
        let Some(state) = self.state.as_mut() else { return Ok(()) };
        let plan = state.plan_body(count);
        self.pending.extend_from_slice(plan.prefix());
        self.flush(py)?;
        if plan.data_len > 0 {
            let result = self.sink.sendfile(py, fd, offset, plan.data_len);
            self.check(result)?;
        }
        self.pending.extend_from_slice(plan.suffix);
        self.flush(py)
    }

    fn check<T>(&mut self, r: Result<T, SinkError>) -> PyResult<T> {
        r.map_err(|e| {
            if matches!(e, SinkError::Io(_)) {
                self.io_failed = true;
            }
            e.into_pyerr()
        })
    }
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct WsgiResponse {
    core: Mutex<Core>,
}

impl WsgiResponse {
    pub fn new(req: RequestInfo, must_close: bool, sink: Box<dyn Sink>, date: &[u8]) -> WsgiResponse {
        WsgiResponse {
            core: Mutex::new(Core {
                req,
                state: None,
                headers_sent: false,
                must_close,
                pending: Vec::with_capacity(512),
                sink,
                date: date.to_vec(),
                io_failed: false,
                warned_omitted_body: false,
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A str the app gave for the status or a header, as the latin-1 bytes that
/// go on the wire; characters past U+00FF are refused by the caller's rules.
fn latin1(s: &Bound<'_, PyString>) -> PyResult<Vec<u8>> {
    let text = crate::stable_abi::utf8(s)?;
    if text.is_ascii() {
        return Ok(text.as_bytes().to_vec());
    }
    Ok(text.chars().map(|c| if (c as u32) <= 0xff { c as u32 as u8 } else { 0 }).collect())
}

fn has_wide_chars(s: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(crate::stable_abi::utf8(s)?.chars().any(|c| (c as u32) > 0xff))
}

#[pymethods]
impl WsgiResponse {
    /// PEP 3333 `start_response(status, response_headers, exc_info=None)`.
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.borrow();
        let mut core = this.lock();
        let exc_info = exc_info.filter(|e| e.is_truthy().unwrap_or(false));
        if let Some(info) = exc_info {
            if core.state.is_some() && core.headers_sent {
                drop(core);
                return Err(reraise(info));
            }
        } else if core.state.is_some() {
            return Err(PyAssertionError::new_err("Response headers already set!"));
        }
        let status = status.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{} is not a string",
                status.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
        let status_bytes = latin1(status)?;
        if has_wide_chars(status)? {
            return Err(PyValueError::new_err(format!("Invalid status {}", status.repr()?)));
        }
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for item in headers.try_iter()? {
            let item = item?;
            let tuple = item
                .cast::<PyTuple>()
                .map_err(|_| PyTypeError::new_err("headers must be a list of (name, value) tuples"))?;
            if tuple.len() != 2 {
                return Err(PyTypeError::new_err("headers must be a list of (name, value) tuples"));
            }
            let name = tuple.get_item(0)?;
            let value = tuple.get_item(1)?;
            let name = name.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{} is not a string",
                    name.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
            let value_s = value.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{} is not a string",
                    value.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
            if has_wide_chars(name)? {
                return Err(InvalidResponseHeaderName::new_err(name.repr()?.to_string()));
            }
            if has_wide_chars(value_s)? {
                return Err(InvalidResponseHeader::new_err(name.repr()?.to_string()));
            }
            pairs.push((latin1(name)?, latin1(value_s)?));
        }
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
        let state = ResponseState::start(&core.req, &status_bytes, &refs).map_err(|e| match e {
            ResponseError::InvalidStatus(_) => PyValueError::new_err(format!(
                "Invalid status {}",
                status.repr().map(|r| r.to_string()).unwrap_or_default()
            )),
            ResponseError::InvalidHeaderName(n) => InvalidResponseHeaderName::new_err(format!("'{n}'")),
            ResponseError::InvalidHeaderValue(n) => InvalidResponseHeader::new_err(format!("'{n}'")),
            ResponseError::InvalidContentLength(v) => {
                PyValueError::new_err(format!("invalid literal for int() with base 10: '{v}'"))
            }
        })?;
        core.state = Some(state);
        drop(core);
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// The `write()` callable start_response returns: sends at once.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("{} is not a byte", data.repr().map(|r| r.to_string()).unwrap_or_default()))
        })?;
        self.lock().push_body(py, bytes.as_bytes(), true)
    }

    /// `wsgi.early_hints(headers)`: a 103 response before the final one, for
    /// HTTP/1.1 clients, ignored once the final response has started.
    fn early_hints(&self, py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut core = self.lock();
        if core.headers_sent || core.req.version < (1, 1) {
            return Ok(());
        }
        let mut out = b"HTTP/1.1 103 Early Hints\r\n".to_vec();
        for item in headers.try_iter()? {
            let item = item?;
            let tuple =
                item.cast::<PyTuple>().map_err(|_| PyTypeError::new_err("headers must be (name, value) tuples"))?;
            let text = |o: Bound<'_, PyAny>| -> PyResult<Vec<u8>> {
                if let Ok(b) = o.cast::<PyBytes>() {
                    return Ok(b.as_bytes().to_vec());
                }
                let s = o.cast::<PyString>().map_err(|_| PyTypeError::new_err("header must be str or bytes"))?;
                if has_wide_chars(s)? {
                    return Ok(vec![0]);
                }
                latin1(s)
            };
            let name = text(tuple.get_item(0)?)?;
            let value = text(tuple.get_item(1)?)?;
            let shown = String::from_utf8_lossy(&name).into_owned();
            if !crate::http::text::is_token(&name) {
                return Err(InvalidResponseHeaderName::new_err(format!("'{shown}'")));
            }
            if !value.iter().all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80) {
                return Err(InvalidResponseHeader::new_err(format!("'{shown}'")));
            }
            out.extend_from_slice(&name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(crate::http::text::trim_sp_tab(&value));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let result = core.sink.write_all(py, &[&out]);
        core.check(result)
    }
}

/// `raise exc_info[1].with_traceback(exc_info[2])`.
fn reraise(info: &Bound<'_, PyAny>) -> PyErr {
    let parts = (|| -> PyResult<PyErr> {
        let value = info.get_item(1)?;
        let tb = info.get_item(2)?;
        let value = if tb.is_none() { value } else { value.call_method1("with_traceback", (tb,))? };
        Ok(PyErr::from_value(value))
    })();
    parts.unwrap_or_else(|e| e)
}
