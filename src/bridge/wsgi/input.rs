//! `wsgi.input`: the request body as a Python file-like object, implemented
//! in Rust over a [`BodySource`] (a socket for the sync worker, the engine's
//! channel for event-driven workers). A body that cannot be framed raises
//! here, so the app never mistakes a cut-short body for a whole one.

use crate::http::error::HttpError;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::sync::Mutex;

pyo3::create_exception!(
    _ferrocorn,
    ParseException,
    pyo3::exceptions::PyException,
    "A request body that cannot be framed (bad chunk size, missing terminator, forbidden trailer)."
);
pyo3::create_exception!(
    _ferrocorn,
    NoMoreData,
    PyOSError,
    "The client closed the connection before the request body was complete."
);

#[derive(Debug)]
pub enum BodyError {
    Http(HttpError),
    Io(std::io::Error),
    /// A signal handler raised (SystemExit on QUIT/ABRT) while we waited.
    Interrupted(PyErr),
}

impl BodyError {
    fn into_pyerr(self) -> PyErr {
        match self {
            BodyError::Http(HttpError::NoMoreData) => NoMoreData::new_err("No more data after: b''"),
            BodyError::Http(e) => ParseException::new_err(e.to_string()),
            BodyError::Io(e) => PyErr::from(e),
            BodyError::Interrupted(e) => e,
        }
    }
}

/// Where decoded body bytes come from.
pub trait BodySource: Send + 'static {
    /// Appends the next decoded bytes to `out` (about `want`, possibly more)
    /// and returns false once the body has ended and nothing was added.
    /// Called with the GIL held; blocking implementations release it to wait.
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError>;

    /// For a worker taking its source back after the request (to reuse the
    /// connection's buffered bytes).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// A source for requests without a body, and what a taken source leaves.
pub struct EmptyBody;

impl BodySource for EmptyBody {
    fn fill(&mut self, _: Python<'_>, _: &mut Vec<u8>, _: usize) -> Result<bool, BodyError> {
        Ok(false)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// Gunicorn's Body asks its reader for at most 1 MiB at a time.
const MAX_STEP: usize = 1024 * 1024;

struct Core {
    source: Box<dyn BodySource>,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
    /// The framing error the body hit, kept for the worker: the request gets
    /// Gunicorn's error status even if the app swallowed the exception.
    failure: Option<HttpError>,
}

impl Core {
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads until `n` bytes are buffered or the body ends.
    fn fill_to(&mut self, py: Python<'_>, n: usize) -> PyResult<()> {
        while !self.ended && self.buffered() < n {
            // Drop what was already handed out before reading more, so the
            // buffer never holds more than one read ahead of the app.
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let want = (n - self.buffered()).clamp(1024, MAX_STEP);
            match self.source.fill(py, &mut self.buf, want) {
                Ok(true) => {}
                Ok(false) => self.ended = true,
                Err(e) => {
                    if let BodyError::Http(h) = &e {
                        self.failure = Some(h.clone());
                    }
                    self.ended = true;
                    return Err(e.into_pyerr());
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, py: Python<'_>, n: usize) -> Py<PyBytes> {
        let n = n.min(self.buffered());
        let out = PyBytes::new(py, &self.buf[self.pos..self.pos + n]).unbind();
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        out
    }

    fn read(&mut self, py: Python<'_>, size: Option<usize>) -> PyResult<Py<PyBytes>> {
        match size {
            Some(0) => Ok(PyBytes::new(py, b"").unbind()),
            Some(n) => {
                self.fill_to(py, n)?;
                Ok(self.take(py, n))
            }
            None => {
                self.fill_to(py, usize::MAX)?;
                Ok(self.take(py, usize::MAX))
            }
        }
    }

    fn readline(&mut self, py: Python<'_>, limit: Option<usize>) -> PyResult<Py<PyBytes>> {
        let limit = limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(PyBytes::new(py, b"").unbind());
        }
        let mut scanned = 0;
        loop {
            let window = &self.buf[self.pos + scanned..];
            if let Some(i) = memchr::memchr(b'\n', window) {
                let end = scanned + i + 1;
                return Ok(self.take(py, end.min(limit)));
            }
            scanned = self.buffered();
            if scanned >= limit || self.ended {
                return Ok(self.take(py, limit));
            }
            let before = self.buffered();
            self.fill_to(py, before + 1)?;
        }
    }
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct InputStream {
    core: Mutex<Core>,
}

impl InputStream {
    pub fn new(source: Box<dyn BodySource>) -> InputStream {
        InputStream { core: Mutex::new(Core { source, buf: Vec::new(), pos: 0, ended: false, failure: None }) }
    }

    pub fn failure(&self) -> Option<HttpError> {
        self.lock().failure.clone()
    }

    /// Takes the source back after the request; the object (which the app
    /// may still hold) then reads as an ended body.
    pub fn take_source(&self) -> Box<dyn BodySource> {
        let mut core = self.lock();
        core.ended = true;
        core.buf.clear();
        core.pos = 0;
        std::mem::replace(&mut core.source, Box::new(EmptyBody))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Gunicorn's `Body.getsize`: None or a negative size means everything.
fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) if s.is_instance_of::<pyo3::types::PyInt>() => {
            let n: i64 = s.extract()?;
            Ok(usize::try_from(n).ok())
        }
        Some(_) => Err(PyTypeError::new_err("size must be an integral type")),
    }
}

#[pymethods]
impl InputStream {
    #[pyo3(signature = (size=None))]
    fn read(&self, py: Python<'_>, size: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyBytes>> {
        let size = size_arg(size)?;
        self.lock().read(py, size)
    }

    #[pyo3(signature = (size=None))]
    fn readline(&self, py: Python<'_>, size: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyBytes>> {
        let size = size_arg(size)?;
        self.lock().readline(py, size)
    }

    /// Gunicorn reads the whole body and splits it, ignoring the hint.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<&Bound<'_, PyAny>>) -> PyResult<Bound<'py, PyList>> {
        let _ = hint;
        let all = self.lock().read(py, None)?;
        let data = all.bind(py).as_bytes();
        let list = PyList::empty(py);
        let mut rest = data;
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).map(|i| i + 1).unwrap_or(rest.len());
            list.append(PyBytes::new(py, &rest[..end]))?;
            rest = &rest[end..];
        }
        Ok(list)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let line = self.lock().readline(py, None)?;
        Ok(if line.bind(py).as_bytes().is_empty() { None } else { Some(line) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out fixed pieces, then an optional error.
    struct Pieces(Vec<Vec<u8>>, Option<HttpError>);

    impl BodySource for Pieces {
        fn fill(&mut self, _: Python<'_>, out: &mut Vec<u8>, _: usize) -> Result<bool, BodyError> {
            if self.0.is_empty() {
                return match self.1.take() {
                    Some(e) => Err(BodyError::Http(e)),
                    None => Ok(false),
                };
            }
            out.extend_from_slice(&self.0.remove(0));
            Ok(true)
        }

        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
            self
        }
    }

    fn stream(pieces: &[&[u8]], err: Option<HttpError>) -> InputStream {
        InputStream::new(Box::new(Pieces(pieces.iter().map(|p| p.to_vec()).collect(), err)))
    }

    #[test]
    fn read_readline_and_iteration() {
        Python::initialize();
        Python::attach(|py| {
            let s = stream(&[b"ab", b"c\nde", b"f\n", b"tail"], None);
            let mut core = s.lock();
            assert_eq!(core.read(py, Some(1)).unwrap().bind(py).as_bytes(), b"a");
            assert_eq!(core.readline(py, None).unwrap().bind(py).as_bytes(), b"bc\n");
            assert_eq!(core.readline(py, Some(2)).unwrap().bind(py).as_bytes(), b"de");
            assert_eq!(core.readline(py, None).unwrap().bind(py).as_bytes(), b"f\n");
            assert_eq!(core.read(py, None).unwrap().bind(py).as_bytes(), b"tail");
            assert_eq!(core.read(py, None).unwrap().bind(py).as_bytes(), b"");
            assert_eq!(core.readline(py, None).unwrap().bind(py).as_bytes(), b"");
        });
    }

    #[test]
    fn framing_error_raises_and_is_remembered() {
        Python::initialize();
        Python::attach(|py| {
            let s = stream(&[b"hello"], Some(HttpError::InvalidChunkSize("zz".into())));
            let err = s.lock().read(py, None).unwrap_err();
            assert!(err.is_instance_of::<ParseException>(py));
            assert!(matches!(s.failure(), Some(HttpError::InvalidChunkSize(_))));
            let s = stream(&[b"hel"], Some(HttpError::NoMoreData));
            let err = s.lock().read(py, Some(10)).unwrap_err();
            assert!(err.is_instance_of::<NoMoreData>(py));
        });
    }
}
