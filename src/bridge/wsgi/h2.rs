//! `wsgi.input` and the response sink for a request on an HTTP/2 stream:
//! both go through the stream's [`StreamShared`], which the worker's engine
//! moves to and from the connection. A thread waits (without the GIL) for
//! body bytes that have not come, and for a client that is slow to take
//! the response; the wait wakes every second for Python's signal handlers
//! (the gthread worker's main thread runs requests too).

use super::input::{BodyError, BodySource};
use super::response::{Sink, SinkError};
use crate::http::error::HttpError;
use crate::http2::stream::{Gone, Head, Out, Read, StreamShared, OUT_HIGH};
use bytes::Bytes;
use pyo3::prelude::*;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One slice of a wait, between looks at Python's signal handlers.
const WAIT_SLICE: Duration = Duration::from_secs(1);

fn gone_error(g: Gone) -> io::Error {
    let what = match g {
        Gone::Reset(code) => format!("HTTP/2 stream reset by the client (error code {code})"),
        Gone::Connection => "HTTP/2 connection closed".to_owned(),
        Gone::Stalled => "HTTP/2 stream stalled: the client gave the response no window".to_owned(),
    };
    io::Error::new(io::ErrorKind::BrokenPipe, what)
}

/// The request body of a stream.
pub struct H2Body {
    stream: Arc<StreamShared>,
    /// How long a read waits for body bytes before the client counts as
    /// gone (as a socket read would time out).
    wait: Duration,
    /// `Expect: 100-continue`, not answered yet: the first read does.
    expect_continue: bool,
}

impl H2Body {
    pub fn new(stream: Arc<StreamShared>, wait: Duration, expect_continue: bool) -> H2Body {
        H2Body { stream, wait, expect_continue }
    }
}

impl BodySource for H2Body {
    fn fill(&mut self, py: Python<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, BodyError> {
        let deadline = Instant::now() + self.wait;
        loop {
            match self.stream.read(want.max(16 * 1024)) {
                Read::Data(data) => {
                    out.extend_from_slice(&data);
                    return Ok(true);
                }
                Read::End => return Ok(false),
                Read::Gone(_) => return Err(BodyError::Http(HttpError::NoMoreData)),
                Read::Empty => {}
            }
            if std::mem::take(&mut self.expect_continue) {
                let hundred = Head { status: 100, fields: Vec::new() };
                if self.stream.send([Out::Informational(hundred)]).is_err() {
                    return Err(BodyError::Http(HttpError::NoMoreData));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(BodyError::Http(HttpError::NoMoreData));
            }
            let stream = &self.stream;
            py.detach(|| stream.wait_readable(left.min(WAIT_SLICE)));
            py.check_signals().map_err(BodyError::Interrupted)?;
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// The response of a stream.
pub struct H2Sink {
    stream: Arc<StreamShared>,
    /// How long a write waits for a client that takes nothing.
    stall: Duration,
}

impl H2Sink {
    pub fn new(stream: Arc<StreamShared>, stall: Duration) -> H2Sink {
        H2Sink { stream, stall }
    }

    fn queue(&self, parts: Vec<Out>) -> Result<usize, SinkError> {
        self.stream.send(parts).map_err(|g| SinkError::Io(gone_error(g)))
    }

    /// Waits (GIL released, waking for signals) until the stream's queue
    /// is low again.
    fn wait_room(&self, py: Python<'_>) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.stall;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let stream = &self.stream;
            match py.detach(|| stream.wait_writable(left.min(WAIT_SLICE))) {
                Ok(()) => return Ok(()),
                Err(Gone::Stalled) if !left.is_zero() => {
                    py.check_signals().map_err(SinkError::Interrupted)?;
                }
                Err(g) => return Err(SinkError::Io(gone_error(g))),
            }
        }
    }
}

fn joined(bufs: &[&[u8]]) -> Bytes {
    match bufs.iter().filter(|b| !b.is_empty()).count() {
        0 => Bytes::new(),
        1 => bufs.iter().find(|b| !b.is_empty()).map(|b| Bytes::copy_from_slice(b)).unwrap_or_default(),
        _ => Bytes::from(bufs.concat()),
    }
}

impl Sink for H2Sink {
    fn write_all(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        let queued = self.queue(vec![Out::Data(joined(bufs))])?;
        if queued > OUT_HIGH {
            self.wait_room(py)?;
        }
        Ok(())
    }

    fn write_final(&mut self, _py: Python<'_>, bufs: &[&[u8]]) -> Result<(), SinkError> {
        // The engine sends the rest; the thread is free.
        self.queue(vec![Out::Data(joined(bufs)), Out::End(None)]).map(|_| ())
    }

    fn can_sendfile(&self) -> bool {
        // sendfile(2) would bypass the HTTP/2 framing.
        false
    }

    fn sendfile(&mut self, _py: Python<'_>, _fd: i32, _offset: u64, _count: u64) -> Result<(), SinkError> {
        Err(SinkError::Io(io::Error::new(io::ErrorKind::Unsupported, "sendfile on an HTTP/2 stream")))
    }

    fn takes_fields(&self) -> bool {
        true
    }

    fn head(&mut self, status: u16, fields: Vec<(Vec<u8>, Vec<u8>)>) {
        // A gone stream is found out by the next write.
        let _ = self.stream.send([Out::Head(Head { status, fields })]);
    }

    fn informational(&mut self, status: u16, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), SinkError> {
        self.queue(vec![Out::Informational(Head { status, fields })]).map(|_| ())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}
