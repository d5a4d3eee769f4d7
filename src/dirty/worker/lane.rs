//! One of a dirty worker's lanes: a socket to the dirty arbiter on which
//! one thread of the worker takes calls, one at a time, and answers them.
//! A worker has `dirty_threads` lanes, so the arbiter never sends a lane a
//! call before the previous one is answered, and a slow caller of a stream
//! slows only the thread producing it (its writes wait on the socket).
//!
//! Python's lane loop (`ferrocorn/dirty/_worker.py`) calls these methods;
//! each waits with the GIL released.

use crate::dirty::wire::frame::{Header, Kind, HEADER_LEN};
use crate::dirty::wire::py as wire;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

#[pyclass(module = "ferrocorn._ferrocorn", frozen)]
pub struct DirtyLane {
    fd: OwnedFd,
    /// The arbiter's number for the call in progress (0: none).
    current: AtomicU64,
}

impl DirtyLane {
    pub fn new(fd: OwnedFd) -> DirtyLane {
        DirtyLane { fd, current: AtomicU64::new(0) }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn read_exact(&self, buf: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: reads into the unfilled tail of `buf`.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
            match n {
                0 if got == 0 => return Ok(false),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => got += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(true)
    }

    fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: sends from `buf`; MSG_NOSIGNAL turns a gone arbiter
            // into EPIPE instead of a signal.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }

    /// The next frame: None when the arbiter closed the lane (or this
    /// worker is stopping and shut its reading side).
    fn next_frame(&self) -> io::Result<Option<(Header, Vec<u8>)>> {
        let mut head = [0u8; HEADER_LEN];
        if !self.read_exact(&mut head)? {
            return Ok(None);
        }
        let header =
            Header::parse(&head, true).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut payload = vec![0u8; header.len];
        if !self.read_exact(&mut payload)? && header.len > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Some((header, payload)))
    }

    fn send(&self, py: Python<'_>, kind: Kind, id: u64, payload: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let bytes = wire::frame(kind, id, payload).map_err(|e| e.into_py(py))?;
        py.detach(|| self.write_all(&bytes)).map_err(PyErr::from)
    }

    /// A cancel for the call in progress waiting on the lane (the caller
    /// went away). Nothing else arrives while a call runs: the arbiter
    /// sends the next call only after this one is answered.
    fn cancelled(&self) -> bool {
        let mut head = [0u8; HEADER_LEN];
        // SAFETY: peeks into `head` without blocking.
        let n = unsafe {
            libc::recv(self.fd.as_raw_fd(), head.as_mut_ptr().cast(), HEADER_LEN, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        };
        if n != HEADER_LEN as isize {
            return false;
        }
        match Header::parse(&head, true) {
            Ok(h) if h.kind == Kind::Cancel => {
                // Taken off the lane: it is about this call only.
                let _ = self.read_exact(&mut head);
                h.id == self.current.load(Ordering::Relaxed)
            }
            _ => false,
        }
    }
}

fn payload<'py>(py: Python<'py>, key: &str, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(PyString::intern(py, key), value)?;
    Ok(d)
}

#[pymethods]
impl DirtyLane {
    /// Tells the arbiter this lane's thread takes calls.
    fn ready(&self, py: Python<'_>) -> PyResult<()> {
        self.send(py, Kind::Ready, 0, None)
    }

    /// The next call: `(call_id, message)` with the request's payload dict,
    /// or None once the lane is closed.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Option<(u64, Bound<'py, PyAny>)>> {
        loop {
            let frame = py.detach(|| self.next_frame());
            let (header, body) = match frame {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            match header.kind {
                Kind::Request => {
                    self.current.store(header.id, Ordering::Relaxed);
                    let message = wire::decode(py, &body).map_err(|e| e.into_py(py))?;
                    return Ok(Some((header.id, message)));
                }
                // A cancel that came after its call had been answered.
                Kind::Cancel => continue,
                other => {
                    let text = format!("unexpected {} frame from the dirty arbiter", other.name());
                    return Err(wire::protocol_error(py, &text));
                }
            }
        }
    }

    /// The call's result.
    fn respond(&self, py: Python<'_>, call_id: u64, result: &Bound<'_, PyAny>) -> PyResult<()> {
        self.send(py, Kind::Response, call_id, Some(payload(py, "result", result)?.as_any()))
    }

    /// The call failed: `error` is the dict of a DirtyError (`to_dict()`).
    fn fail(&self, py: Python<'_>, call_id: u64, error: &Bound<'_, PyAny>) -> PyResult<()> {
        self.send(py, Kind::Error, call_id, Some(payload(py, "error", error)?.as_any()))
    }

    /// One item of a streamed result; False when the caller has gone and
    /// the stream should stop.
    fn chunk(&self, py: Python<'_>, call_id: u64, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.send(py, Kind::Chunk, call_id, Some(payload(py, "data", data)?.as_any()))?;
        Ok(!self.cancelled())
    }

    /// The end of a streamed result.
    fn end(&self, py: Python<'_>, call_id: u64) -> PyResult<()> {
        self.send(py, Kind::End, call_id, None)
    }
}
