//! Waiting on a socket from a thread that holds the GIL (the sync worker,
//! a gthread request thread): the GIL is released for every wait, and an
//! interrupted wait runs Python's signal handlers, which may raise
//! SystemExit (QUIT, ABRT) and so end the request.

use super::sock::wait_fd;
use crate::bridge::wsgi::response::SinkError;
use crate::net::stream::Stream;
use pyo3::prelude::*;
use std::io::{self, IoSlice};

#[derive(Debug)]
pub enum WaitError {
    Io(io::Error),
    /// A signal handler raised while we waited.
    Interrupted(PyErr),
}

impl From<WaitError> for SinkError {
    fn from(e: WaitError) -> SinkError {
        match e {
            WaitError::Io(e) => SinkError::Io(e),
            WaitError::Interrupted(e) => SinkError::Interrupted(e),
        }
    }
}

/// Runs `op` with the GIL released; on EINTR runs the signal handlers and
/// tries again.
pub fn blocking<T, F>(py: Python<'_>, mut op: F) -> Result<T, WaitError>
where
    F: FnMut() -> io::Result<T> + Send,
    T: Send,
{
    loop {
        match py.detach(&mut op) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                py.check_signals().map_err(WaitError::Interrupted)?;
            }
            Err(e) => return Err(WaitError::Io(e)),
            Ok(v) => return Ok(v),
        }
    }
}

/// Writes all of `bufs`: without blocking while the socket takes them (the
/// common case costs no GIL release), waiting for room otherwise.
pub fn write_all(py: Python<'_>, stream: &Stream, bufs: &[&[u8]]) -> Result<(), WaitError> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        match stream.send_nonblocking(rest) {
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let fd = stream.fd();
                blocking(py, || wait_fd(fd, libc::POLLOUT, None).map(|_| ()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                py.check_signals().map_err(WaitError::Interrupted)?;
            }
            Err(e) => return Err(WaitError::Io(e)),
        }
    }
    // Over TLS, taken is not yet written.
    loop {
        match stream.flush_pending() {
            Ok(true) => return Ok(()),
            Ok(false) => {
                let fd = stream.fd();
                blocking(py, || wait_fd(fd, libc::POLLOUT, None).map(|_| ()))?;
            }
            Err(e) => return Err(WaitError::Io(e)),
        }
    }
}

/// Sends `count` bytes of the file `fd` from `offset` with sendfile(2),
/// waiting (GIL released) while the socket is full.
pub fn sendfile_all(py: Python<'_>, stream: &Stream, fd: i32, offset: u64, count: u64) -> Result<(), SinkError> {
    let sock = stream.fd();
    let mut off = libc::off_t::try_from(offset).map_err(|_| SinkError::Io(io::ErrorKind::InvalidInput.into()))?;
    let mut left = count;
    while left > 0 {
        // Gunicorn sends at most 1 GiB per call; some kernels choke above 2 GiB.
        let step = left.min(0x3FFF_FFFF) as usize;
        let sent = blocking(py, || {
            // SAFETY: sendfile between two fds we hold; `off` is ours.
            let n = unsafe { libc::sendfile(sock, fd, &mut off, step) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    // A socket another thread made non-blocking: wait.
                    wait_fd(sock, libc::POLLOUT, None)?;
                    return Ok(None);
                }
                Err(e)
            } else {
                Ok(Some(n.unsigned_abs() as u64))
            }
        })?;
        match sent {
            None => {}
            // The file is shorter than it said: nothing more will come.
            Some(0) => return Err(SinkError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "file ended early"))),
            Some(n) => left -= n.min(left),
        }
    }
    Ok(())
}
