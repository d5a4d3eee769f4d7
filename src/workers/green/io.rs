//! The green worker's `wsgi.input` source and response sink. A request's
//! greenlet owns its connection while the app runs, so both read and write
//! the socket directly without blocking; where the gthread worker would
//! release the GIL and poll, they wait on the hub instead (gevent's
//! `wait_read`/`wait_write`, eventlet's `trampoline`), so the other
//! greenlets run meanwhile.

use crate::bridge::wsgi::input::{BodyError, BodySource};
use crate::bridge::wsgi::response::{Sink, SinkError};
use crate::http::conn::ServerConn;
use crate::http::error::HttpError;
use crate::net::stream::Stream;
use crate::workers::core::output::OutQueue;
use crate::workers::core::sock;
use crate::workers::wsgi_request::fill_body;
use pyo3::prelude::*;
use std::io;
use std::sync::Arc;

const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 1024 * 1024;

/// The hub's waits for one fd: each parks the calling greenlet until the
/// socket is ready, and raises what the hub throws in (a kill, SystemExit).
#[derive(Debug)]
pub struct HubWaits {
    pub read: Py<PyAny>,
    pub write: Py<PyAny>,
}

impl HubWaits {
    pub fn clone_ref(&self, py: Python<'_>) -> HubWaits {
        HubWaits { read: self.read.clone_ref(py), write: self.write.clone_ref(py) }
    }
}

/// Parks the greenlet on the hub until `fd` is ready for `wait`.
fn park(py: Python<'_>, wait: &Py<PyAny>, fd: i32) -> PyResult<()> {
    wait.bind(py).call1((fd,)).map(|_| ())
}

/// The body: what the engine read ahead, then the rest from the socket
/// through the connection's HTTP state, which goes back to the connection
/// after the request.
pub struct GreenBody {
    ahead: Vec<u8>,
    error: Option<HttpError>,
    pub http: ServerConn,
    stream: Arc<Stream>,
    wait_read: Py<PyAny>,
    /// Bytes were read from the socket here: the engine's idea of whether
    /// it is drained no longer holds.
    pub read_socket: bool,
}

impl GreenBody {
    /// `ahead`/`error` are what the engine read ahead (`core::conn::Inbound`).
    pub fn new(
        http: ServerConn,
        ahead: Vec<u8>,
        error: Option<HttpError>,
        stream: Arc<Stream>,
        wait_read: Py<PyAny>,
    ) -> GreenBody {
        GreenBody { ahead, error, http, stream, wait_read, read_socket: false }
    }
}

impl BodySource for GreenBody {
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError> {
        if !self.ahead.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut self.ahead);
            } else {
                out.append(&mut self.ahead);
            }
            return Ok(true);
        }
        if let Some(e) = self.error.take() {
            return Err(BodyError::Http(e));
        }
        let (fd, read_socket, wait) = (self.stream.fd(), &mut self.read_socket, &self.wait_read);
        fill_body(&mut self.http, out, |http| {
            let size = http.read_hint(want.max(MIN_READ), MAX_READ);
            *read_socket = true;
            match sock::recv_into(fd, http.buffer(), size, false) {
                Ok(0) => http.received_eof(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    park(py, wait, fd).map_err(BodyError::Interrupted)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BodyError::Io(e)),
            }
            Ok(())
        })
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// The response: written straight to the socket. What the client is not
/// ready for when the app has finished (up to `cap`) is left to the engine,
/// so a slow reader does not hold the greenlet.
pub struct GreenSink {
    stream: Arc<Stream>,
    pub pending: OutQueue,
    cap: usize,
    sendfile: bool,
    wait_write: Py<PyAny>,
}

impl GreenSink {
    pub fn new(stream: Arc<Stream>, cap: usize, sendfile: bool, wait_write: Py<PyAny>) -> GreenSink {
        GreenSink { stream, pending: OutQueue::default(), cap, sendfile, wait_write }
    }

    /// Waits on the hub until at most `limit` bytes are pending.
    fn wait_below(&mut self, py: Python<'_>, limit: usize) -> Result<(), SinkError> {
        while self.pending.len() > limit {
            park(py, &self.wait_write, self.stream.fd()).map_err(SinkError::Interrupted)?;
            self.pending.flush(&self.stream).map_err(SinkError::Io)?;
        }
        Ok(())
    }
}

impl Sink for GreenSink {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.pending.send(&self.stream, bufs, true).map_err(SinkError::Io)?;
        self.wait_below(py, 0)
    }

    fn write_final(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.pending.send(&self.stream, bufs, true).map_err(SinkError::Io)?;
        self.wait_below(py, self.cap)
    }

    fn can_sendfile(&self) -> bool {
        self.sendfile
    }

    fn sendfile(&mut self, py: Python<'_>, fd: i32, offset: u64, count: u64) -> Result<(), SinkError> {
        self.wait_below(py, 0)?;
        sendfile_green(py, &self.stream, &self.wait_write, fd, offset, count)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// sendfile(2), parking on the hub while the socket is full. Accepted
/// sockets are in blocking mode (every other call on them asks for
/// MSG_DONTWAIT), and sendfile has no such flag: the socket is non-blocking
/// for the call's duration, so a full socket parks the greenlet instead of
/// the whole worker.
fn sendfile_green(
    py: Python<'_>,
    stream: &Stream,
    wait_write: &Py<PyAny>,
    fd: i32,
    offset: u64,
    count: u64,
) -> Result<(), SinkError> {
    let sock = stream.fd();
    let _nonblocking = NonBlocking::set(sock).map_err(SinkError::Io)?;
    sendfile_loop(py, sock, wait_write, fd, offset, count)
}

/// O_NONBLOCK on an fd while this lives; the flags it had come back after.
struct NonBlocking {
    fd: i32,
    flags: libc::c_int,
}

impl NonBlocking {
    fn set(fd: i32) -> io::Result<NonBlocking> {
        // SAFETY: fcntl on an fd we hold, no pointers.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlocking { fd, flags })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: restores the flags read in `set` on the same fd.
        unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
    }
}

fn sendfile_loop(
    py: Python<'_>,
    sock: i32,
    wait_write: &Py<PyAny>,
    fd: i32,
    offset: u64,
    count: u64,
) -> Result<(), SinkError> {
    let mut off = libc::off_t::try_from(offset).map_err(|_| SinkError::Io(io::ErrorKind::InvalidInput.into()))?;
    let mut left = count;
    while left > 0 {
        // At most 1 GiB per call, as the other workers send.
        let step = left.min(0x3FFF_FFFF) as usize;
        // SAFETY: sendfile between two fds we hold; `off` is ours.
        let n = unsafe { libc::sendfile(sock, fd, &mut off, step) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => park(py, wait_write, sock).map_err(SinkError::Interrupted)?,
                io::ErrorKind::Interrupted => {}
                _ => return Err(SinkError::Io(e)),
            }
            continue;
        }
        if n == 0 {
            // The file is shorter than it said: nothing more will come.
            return Err(SinkError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "file ended early")));
        }
        left -= (n.unsigned_abs() as u64).min(left);
    }
    Ok(())
}
