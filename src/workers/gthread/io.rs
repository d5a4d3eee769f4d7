//! The gthread worker's `wsgi.input` source and response sink. A request's
//! thread owns its connection, so both read and write the socket directly,
//! without blocking while data flows and releasing the GIL only to wait.

use crate::http::body::BodyDecoder;
use crate::http::error::HttpError;
use crate::net::stream::Stream;
use crate::workers::conn::{take_buffered_body, wait_fd, ReadBuf};
use crate::wsgi::input::{BodyError, BodySource};
use crate::wsgi::response::{Sink, SinkError};
use pyo3::prelude::*;
use std::io::{self, IoSlice};
use std::sync::Arc;

/// The body: what the engine prebuffered, then the rest from the socket.
pub struct ConnBody {
    pre: Vec<u8>,
    error: Option<HttpError>,
    pub decoder: BodyDecoder,
    pub buf: ReadBuf,
    stream: Arc<Stream>,
    pub eof: bool,
    pub failed: bool,
    /// Bytes were read from the socket here: the engine's idea of whether
    /// it is drained no longer holds.
    pub read_socket: bool,
}

impl ConnBody {
    /// `pre`/`error` are what the engine prebuffered (see [`Pending`]).
    pub fn new(
        decoder: BodyDecoder,
        pre: Vec<u8>,
        error: Option<HttpError>,
        buf: ReadBuf,
        stream: Arc<Stream>,
        eof: bool,
    ) -> ConnBody {
        ConnBody { pre, error, decoder, buf, stream, eof, failed: false, read_socket: false }
    }
}

impl BodySource for ConnBody {
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError> {
        if !self.pre.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut self.pre);
            } else {
                out.append(&mut self.pre);
            }
            return Ok(true);
        }
        if let Some(e) = self.error.take() {
            self.failed = true;
            return Err(BodyError::Http(e));
        }
        loop {
            let taken = take_buffered_body(&mut self.decoder, &mut self.buf, out).map_err(|e| {
                self.failed = true;
                BodyError::Http(e)
            })?;
            if let Some(more) = taken {
                return Ok(more);
            }
            if self.eof {
                self.failed = true;
                self.decoder.at_eof().map_err(BodyError::Http)?;
                return Ok(false);
            }
            let hint = self.decoder.remaining_hint().unwrap_or(want as u64);
            let size = (hint.max(want as u64) as usize).clamp(16 * 1024, 1024 * 1024);
            self.read_socket = true;
            match self.buf.recv_nonblocking(self.stream.fd(), size) {
                Ok((0, _)) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.stream.fd();
                    py.detach(|| wait_fd(fd, libc::POLLIN, None)).map_err(BodyError::Io)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BodyError::Io(e)),
            }
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// The response: written straight to the socket. What the client is not
/// ready for when the app has finished (up to `cap`) is kept for the
/// engine to send, so a slow reader does not hold the thread.
pub struct ConnSink {
    stream: Arc<Stream>,
    pub pending: Vec<u8>,
    cap: usize,
    sendfile: bool,
}

impl ConnSink {
    pub fn new(stream: Arc<Stream>, cap: usize, sendfile: bool) -> ConnSink {
        ConnSink { stream, pending: Vec::new(), cap, sendfile }
    }

    /// Sends as much of `pending` + `bufs` as the socket takes now; the
    /// rest is appended to `pending`.
    fn try_send(&mut self, bufs: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(bufs.len() + 1);
        if !self.pending.is_empty() {
            slices.push(IoSlice::new(&self.pending));
        }
        slices.extend(bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)));
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut sent = 0;
        while sent < total {
            let mut rest: Vec<IoSlice<'_>> = Vec::new();
            let mut skip = sent;
            for s in &slices {
                if skip >= s.len() {
                    skip -= s.len();
                } else {
                    rest.push(IoSlice::new(&s[skip..]));
                    skip = 0;
                }
            }
            match self.stream.send_nonblocking(&rest) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Keep what did not leave, in order.
        let from_pending = self.pending.len();
        if sent >= from_pending {
            let mut skip = sent - from_pending;
            self.pending.clear();
            for b in bufs {
                if skip >= b.len() {
                    skip -= b.len();
                } else {
                    self.pending.extend_from_slice(&b[skip..]);
                    skip = 0;
                }
            }
        } else {
            self.pending.drain(..sent);
            for b in bufs {
                self.pending.extend_from_slice(b);
            }
        }
        Ok(())
    }

    /// Waits (without the GIL) until `pending` is at most `limit`.
    fn wait_below(&mut self, py: Python<'_>, limit: usize) -> Result<(), SinkError> {
        while self.pending.len() > limit {
            let fd = self.stream.fd();
            py.detach(|| wait_fd(fd, libc::POLLOUT, None)).map_err(SinkError::Io)?;
            self.try_send(&[]).map_err(SinkError::Io)?;
        }
        Ok(())
    }
}

impl Sink for ConnSink {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.try_send(bufs).map_err(SinkError::Io)?;
        self.wait_below(py, 0)
    }

    fn write_final(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        self.try_send(bufs).map_err(SinkError::Io)?;
        self.wait_below(py, self.cap)
    }

    fn can_sendfile(&self) -> bool {
        self.sendfile
    }

    fn sendfile(&mut self, py: Python<'_>, fd: i32, offset: u64, count: u64) -> Result<(), SinkError> {
        self.wait_below(py, 0)?;
        let sock = self.stream.fd();
        let mut off = offset as libc::off_t;
        let mut left = count;
        while left > 0 {
            let step = left.min(0x3FFF_FFFF) as usize;
            // SAFETY: sendfile between two fds we hold; `off` is ours. The
            // socket is blocking, but the GIL is released while it waits.
            let n = py.detach(|| unsafe { libc::sendfile(sock, fd, &mut off, step) });
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SinkError::Io(e));
            }
            if n == 0 {
                return Err(SinkError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "file ended early")));
            }
            left -= n as u64;
        }
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}
