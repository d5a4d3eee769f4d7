//! The sync worker's `wsgi.input` source and response sink: the request's
//! own blocking socket, read and written with the GIL released to wait.

use crate::bridge::wsgi::input::{BodyError, BodySource};
use crate::bridge::wsgi::response::{Sink, SinkError};
use crate::http::conn::ServerConn;
use crate::net::stream::Stream;
use crate::workers::core::blocking::{self, WaitError};
use crate::workers::core::sock;
use crate::workers::wsgi_request::fill_body;
use pyo3::prelude::*;
use std::sync::Arc;

/// Reads larger than this gain nothing and hold memory per request.
const MAX_READ: usize = 1024 * 1024;
const MIN_READ: usize = 8192;

/// The body: what the connection buffered after the head, then further
/// reads, through the connection's body decoder.
pub struct SocketBody {
    stream: Arc<Stream>,
    http: ServerConn,
}

impl SocketBody {
    pub fn new(stream: Arc<Stream>, http: ServerConn) -> SocketBody {
        SocketBody { stream, http }
    }
}

impl BodySource for SocketBody {
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError> {
        let stream = &self.stream;
        fill_body(&mut self.http, out, |http| {
            let size = http.read_hint(want.max(MIN_READ), MAX_READ);
            match stream.recv_into(http.buffer(), size) {
                Ok(got) if got.n == 0 => http.received_eof(),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match blocking::blocking(py, || sock::wait_input(stream, None)) {
                        Ok(_) => {}
                        Err(WaitError::Io(e)) => return Err(BodyError::Io(e)),
                        Err(WaitError::Interrupted(e)) => return Err(BodyError::Interrupted(e)),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BodyError::Io(e)),
            }
            Ok(())
        })
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// The response, written to the socket as the app produces it.
pub struct SocketSink {
    stream: Arc<Stream>,
    sendfile: bool,
}

impl SocketSink {
    pub fn new(stream: Arc<Stream>, sendfile: bool) -> SocketSink {
        SocketSink { stream, sendfile }
    }
}

impl Sink for SocketSink {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        Ok(blocking::write_all(py, &self.stream, bufs)?)
    }

    fn can_sendfile(&self) -> bool {
        self.sendfile
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn sendfile(&mut self, py: Python<'_>, fd: i32, offset: u64, count: u64) -> Result<(), SinkError> {
        blocking::sendfile_all(py, &self.stream, fd, offset, count)
    }
}
