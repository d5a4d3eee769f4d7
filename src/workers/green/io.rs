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
use crate::workers::core::output::{OutQueue, Sent};
use crate::workers::wsgi_request::fill_body;
use pyo3::prelude::*;
use std::io::{self, IoSlice};
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

/// Parks the greenlet until `stream` may have input. Over TLS, what is
/// encrypted and not written yet goes out first (parked while the socket is
/// full): the peer may be waiting for it, a handshake answer, before it
/// sends anything more.
fn park_for_input(py: Python<'_>, stream: &Stream, waits: &HubWaits) -> Result<(), BodyError> {
    while !stream.flush_pending().map_err(BodyError::Io)? {
        park(py, &waits.write, stream.fd()).map_err(BodyError::Interrupted)?;
    }
    park(py, &waits.read, stream.fd()).map_err(BodyError::Interrupted)
}

/// Parks the greenlet until what TLS has encrypted is written (nothing to
/// do on a plain socket).
fn park_until_flushed(py: Python<'_>, stream: &Stream, wait_write: &Py<PyAny>) -> Result<(), SinkError> {
    while !stream.flush_pending().map_err(SinkError::Io)? {
        park(py, wait_write, stream.fd()).map_err(SinkError::Interrupted)?;
    }
    Ok(())
}

/// The body: what the engine read ahead, then the rest from the socket
/// through the connection's HTTP state, which goes back to the connection
/// after the request.
pub struct GreenBody {
    ahead: Vec<u8>,
    error: Option<HttpError>,
    pub http: ServerConn,
    stream: Arc<Stream>,
    waits: HubWaits,
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
        waits: HubWaits,
    ) -> GreenBody {
        GreenBody { ahead, error, http, stream, waits, read_socket: false }
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
        let (stream, read_socket, waits) = (&self.stream, &mut self.read_socket, &self.waits);
        fill_body(&mut self.http, out, |http| {
            let size = http.read_hint(want.max(MIN_READ), MAX_READ);
            *read_socket = true;
            match stream.recv_into(http.buffer(), size) {
                Ok(got) if got.n == 0 => http.received_eof(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => park_for_input(py, stream, waits)?,
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

/// The response: written straight from the app's buffers to the socket,
/// the greenlet parked on the hub while the socket is full. Nothing is
/// copied while the client is behind, so a client that does not read a
/// large response costs the worker no copy of it (the greenlet waits with
/// the app's own bytes). Only the last `cap` bytes of a finished response
/// may be copied and left to the engine, so a slow reader does not hold
/// the greenlet for them.
pub struct GreenSink {
    stream: Arc<Stream>,
    pub pending: OutQueue,
    cap: usize,
    sendfile: bool,
    wait_write: Py<PyAny>,
}

impl GreenSink {
    /// `sendfile`: the setting, and the connection is not TLS (sendfile(2)
    /// would bypass the encryption).
    pub fn new(stream: Arc<Stream>, cap: usize, sendfile: bool, wait_write: Py<PyAny>) -> GreenSink {
        GreenSink { stream, pending: OutQueue::default(), cap, sendfile, wait_write }
    }

    /// Waits on the hub until nothing is pending (over TLS, nothing
    /// encrypted either).
    fn drain(&mut self, py: Python<'_>) -> Result<(), SinkError> {
        while !self.pending.is_empty() {
            if self.pending.flush(&self.stream).map_err(SinkError::Io)? == Sent::All {
                break;
            }
            park(py, &self.wait_write, self.stream.fd()).map_err(SinkError::Interrupted)?;
        }
        park_until_flushed(py, &self.stream, &self.wait_write)
    }

    /// Sends `bufs` in order, parking while the socket is full and more
    /// than `keep` bytes of them are left; once the socket is full with at
    /// most `keep` left, those are copied into `pending` for the engine.
    fn send(&mut self, py: Python<'_>, bufs: &[&[u8]], keep: usize) -> Result<(), SinkError> {
        self.drain(py)?;
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
        let mut left: usize = slices.iter().map(|s| s.len()).sum();
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while left > 0 {
            match self.stream.send_nonblocking(rest) {
                Ok(n) => {
                    left -= n.min(left);
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if left <= keep {
                        break;
                    }
                    park(py, &self.wait_write, self.stream.fd()).map_err(SinkError::Interrupted)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SinkError::Io(e)),
            }
        }
        for s in rest.iter() {
            self.pending.push(s);
        }
        if keep == 0 {
            // Over TLS the bytes were taken, not all written yet.
            park_until_flushed(py, &self.stream, &self.wait_write)?;
        }
        Ok(())
    }
}

impl Sink for GreenSink {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.send(py, bufs, 0)
    }

    fn write_final(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.send(py, bufs, self.cap)
    }

    fn can_sendfile(&self) -> bool {
        self.sendfile
    }

    fn sendfile(&mut self, py: Python<'_>, fd: i32, offset: u64, count: u64) -> Result<(), SinkError> {
        self.drain(py)?;
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
