//! The gthread worker's `wsgi.input` source and response sink. A request's
//! thread owns its connection, so both read and write the socket directly,
//! without blocking while data flows and releasing the GIL only to wait.

use crate::bridge::wsgi::input::{BodyError, BodySource};
use crate::bridge::wsgi::response::{Sink, SinkError};
use crate::http::conn::ServerConn;
use crate::http::error::HttpError;
use crate::net::stream::Stream;
use crate::workers::core::blocking;
use crate::workers::core::output::OutQueue;
use crate::workers::core::sock::{self, wait_fd};
use crate::workers::wsgi_request::fill_body;
use pyo3::prelude::*;
use std::io;
use std::sync::Arc;

const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 1024 * 1024;

/// The body: what the engine read ahead, then the rest from the socket
/// through the connection's HTTP state, which goes back to the connection
/// after the request.
pub struct ConnBody {
    ahead: Vec<u8>,
    error: Option<HttpError>,
    pub http: ServerConn,
    stream: Arc<Stream>,
    /// Bytes were read from the socket here: the engine's idea of whether
    /// it is drained no longer holds.
    pub read_socket: bool,
}

impl ConnBody {
    /// `ahead`/`error` are what the engine read ahead (`core::conn::Inbound`).
    pub fn new(http: ServerConn, ahead: Vec<u8>, error: Option<HttpError>, stream: Arc<Stream>) -> ConnBody {
        ConnBody { ahead, error, http, stream, read_socket: false }
    }
}

impl BodySource for ConnBody {
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
        let (stream, read_socket) = (&self.stream, &mut self.read_socket);
        fill_body(&mut self.http, out, |http| {
            let size = http.read_hint(want.max(MIN_READ), MAX_READ);
            *read_socket = true;
            match stream.recv_into(http.buffer(), size) {
                Ok(got) if got.n == 0 => http.received_eof(),
                Ok(_) => {}
                // A signal meant for another thread (TERM, USR1) may end the
                // wait early: the wait goes on.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match py.detach(|| sock::wait_input(stream, None)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    waited => {
                        waited.map_err(BodyError::Io)?;
                    }
                },
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
/// ready for when the app has finished (up to `cap`) is kept for the
/// engine to send, so a slow reader does not hold the thread.
pub struct ConnSink {
    stream: Arc<Stream>,
    pub pending: OutQueue,
    cap: usize,
    sendfile: bool,
}

impl ConnSink {
    pub fn new(stream: Arc<Stream>, cap: usize, sendfile: bool) -> ConnSink {
        ConnSink { stream, pending: OutQueue::default(), cap, sendfile }
    }

    /// Waits (without the GIL) until at most `limit` bytes are pending.
    fn wait_below(&mut self, py: Python<'_>, limit: usize) -> Result<(), SinkError> {
        while self.pending.len() > limit {
            let fd = self.stream.fd();
            py.detach(|| wait_fd(fd, libc::POLLOUT, None)).map_err(SinkError::Io)?;
            self.pending.flush(&self.stream).map_err(SinkError::Io)?;
        }
        Ok(())
    }
}

impl Sink for ConnSink {
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
        blocking::sendfile_all(py, &self.stream, fd, offset, count)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}
