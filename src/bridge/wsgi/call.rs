//! Running the application for one request: call it, send what it returns,
//! always call `close()` on the result, and say how it went so the worker
//! can answer errors as Gunicorn does.

use super::file_wrapper::FileWrapper;
use super::input::InputStream;
use super::response::WsgiResponse;
use crate::http::error::HttpError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

/// How a request ended, beyond what the response itself says.
pub enum Failure {
    /// The request body could not be framed: the request gets that error's
    /// status (or, for a truncated body, no answer).
    Body(HttpError),
    /// The client went away while we wrote (EPIPE, ECONNRESET).
    ClientGone,
    /// The app raised; `headers_sent` says whether a 500 can still be sent.
    /// This includes SystemExit from the worker's QUIT/ABRT handlers, which
    /// Gunicorn answers like any app error before the worker stops.
    App { err: PyErr, headers_sent: bool },
}

pub fn run(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: &Bound<'_, PyDict>,
    response: &Bound<'_, WsgiResponse>,
    input: &Bound<'_, InputStream>,
) -> Result<(), Failure> {
    let result = app.call1((environ, response));
    let outcome = match &result {
        Ok(iterable) => send(py, iterable, response),
        Err(_) => Ok(()),
    };
    // close() runs whatever happened (PEP 3333), before errors are judged.
    let close_err = match &result {
        Ok(iterable) => close(py, iterable).err(),
        Err(_) => None,
    };
    let err = match (result, outcome) {
        (Err(e), _) | (Ok(_), Err(e)) => Some(e),
        (Ok(_), Ok(())) => close_err,
    };
    match err {
        None => Ok(()),
        Some(err) => Err(classify(err, response, input)),
    }
}

fn send(py: Python<'_>, iterable: &Bound<'_, PyAny>, response: &Bound<'_, WsgiResponse>) -> PyResult<()> {
    let resp = response.borrow();
    if let Ok(wrapper) = iterable.cast::<FileWrapper>() {
        let position = wrapper.borrow().file_position(py);
        if let Some((fd, offset, size)) = position {
            let mut core = resp.lock();
            if core.started() && core.can_sendfile() {
                core.send_file(py, fd, offset, size)?;
                // Gunicorn leaves the file where it found it.
                // SAFETY: lseek on the file's own fd.
                unsafe { libc::lseek(fd, offset as libc::off_t, libc::SEEK_SET) };
                return core.finish(py);
            }
        }
    }
    // A list or tuple is already complete: its parts leave in one write.
    if let Ok(list) = iterable.cast::<PyList>() {
        for item in list.iter() {
            push(py, &resp, &item, false)?;
        }
    } else if let Ok(tuple) = iterable.cast::<PyTuple>() {
        for item in tuple.iter() {
            push(py, &resp, &item, false)?;
        }
    } else {
        for item in iterable.try_iter()? {
            push(py, &resp, &item?, true)?;
        }
    }
    let finished = resp.lock().finish(py);
    finished
}

fn push(py: Python<'_>, resp: &WsgiResponse, item: &Bound<'_, PyAny>, flush: bool) -> PyResult<()> {
    let bytes = item.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{} is not a byte",
            item.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    resp.lock().push_body(py, bytes.as_bytes(), flush)
}

fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    let name = pyo3::intern!(py, "close");
    if iterable.hasattr(name)? {
        iterable.call_method0(name)?;
    }
    Ok(())
}

fn classify(err: PyErr, response: &Bound<'_, WsgiResponse>, input: &Bound<'_, InputStream>) -> Failure {
    let (headers_sent, io_failed) = {
        let resp = response.borrow();
        let core = resp.lock();
        (core.headers_sent(), core.io_failed)
    };
    if let Some(body_error) = input.borrow().failure() {
        return Failure::Body(body_error);
    }
    if io_failed {
        return Failure::ClientGone;
    }
    Failure::App { err, headers_sent }
}
